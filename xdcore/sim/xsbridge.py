"""Bridge from the simulator's xl/xm to a running simulated xenstored (owned by the XenStore work).

The simulated `xl shutdown` / `xl sysrq` call `write_control(state_dir, domid, key, value)`
to write `/local/domain/ID/control/KEY` as the real xl does.  It is a no-op when no
simulated xenstored is serving that state directory.

Kept import-cheap (socket and struct only) because every simulated `xl` process
imports it: a tiny blocking wire client with a short timeout, no libxenstore.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

_HEADER = struct.Struct("<IIII")
_XS_WRITE = 11
_TIMEOUT = 1.0


def _socket_path(state_dir: Path) -> Path | None:
    default = state_dir / "xenstored.sock"
    if default.exists():
        return default
    try:
        other = Path((state_dir / "xenstored.addr").read_text().strip())
    except OSError:
        return None
    return other if other.exists() else None


def write(state_dir: str | Path, path: str, value: str | bytes) -> bool:
    """WRITE path=value on the simulated xenstored of state_dir; True when it answered OK."""
    sock_path = _socket_path(Path(state_dir))
    if sock_path is None:
        return False
    data = value.encode() if isinstance(value, str) else value
    payload = path.encode() + b"\0" + data
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_TIMEOUT)
            sock.connect(str(sock_path))
            sock.sendall(_HEADER.pack(_XS_WRITE, 0, 0, len(payload)) + payload)
            head = b""
            while len(head) < _HEADER.size:
                chunk = sock.recv(_HEADER.size - len(head))
                if not chunk:
                    return False
                head += chunk
            op, _req, _tx, _len = _HEADER.unpack(head)
            return op == _XS_WRITE
    except OSError:
        return False


def write_control(state_dir: str | Path, domid: int, key: str, value: str) -> None:
    """Write /local/domain/<domid>/control/<key> = value if a simulated xenstored runs; never raises."""
    try:
        write(state_dir, f"/local/domain/{int(domid)}/control/{key}", value)
    except Exception:  # the contract: the simulator's xl never fails because of XenStore
        return None
