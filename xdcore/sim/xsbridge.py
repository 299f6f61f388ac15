"""Bridge from the simulator's xl/xm to a running simulated xenstored (owned by the XenStore work).

The simulated `xl shutdown` / `xl sysrq` call `write_control(state_dir, domid, key, value)`
to write `/local/domain/ID/control/KEY` as the real xl does.  It is a no-op when no
simulated xenstored is serving that state directory.

Kept import-cheap because every simulated `xl shutdown` imports it: a tiny
blocking wire client with a short timeout, no libxenstore; socket and struct
are imported only once a xenstored socket is there (most simulated hosts have
none, and socket costs ~3 ms to import).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

_HEADER_FORMAT = "<IIII"
_HEADER_SIZE = 16
_XS_WRITE = 11
_TIMEOUT = 1.0


def _socket_path(state_dir: str) -> str | None:
    default = os.path.join(state_dir, "xenstored.sock")
    if os.path.exists(default):
        return default
    try:
        with open(os.path.join(state_dir, "xenstored.addr"), encoding="utf-8") as fh:
            other = fh.read().strip()
    except OSError:
        return None
    return other if os.path.exists(other) else None


def write(state_dir: str | Path, path: str, value: str | bytes) -> bool:
    """WRITE path=value on the simulated xenstored of state_dir; True when it answered OK."""
    sock_path = _socket_path(os.fspath(state_dir))
    if sock_path is None:
        return False
    import socket
    import struct

    data = value.encode() if isinstance(value, str) else value
    payload = path.encode() + b"\0" + data
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_TIMEOUT)
            sock.connect(sock_path)
            sock.sendall(struct.pack(_HEADER_FORMAT, _XS_WRITE, 0, 0, len(payload)) + payload)
            head = b""
            while len(head) < _HEADER_SIZE:
                chunk = sock.recv(_HEADER_SIZE - len(head))
                if not chunk:
                    return False
                head += chunk
            op, _req, _tx, _len = struct.unpack(_HEADER_FORMAT, head)
            return op == _XS_WRITE
    except OSError:
        return False


def write_control(state_dir: str | Path, domid: int, key: str, value: str) -> None:
    """Write /local/domain/<domid>/control/<key> = value if a simulated xenstored runs; never raises."""
    try:
        write(state_dir, f"/local/domain/{int(domid)}/control/{key}", value)
    except Exception:  # the contract: the simulator's xl never fails because of XenStore
        return None
