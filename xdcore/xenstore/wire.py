"""The xs_wire protocol as data: message types, the 16-byte header, errno names, paths.

One module that both sides read — the simulated xenstored (`xdcore.sim.xenstored`),
its pure request handler (`xdcore.xenstore.store`) and the tests — so that the
numbers in xen/include/public/io/xs_wire.h live in exactly one place.  Pure:
no sockets, no files.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

HEADER = struct.Struct("<IIII")  # type, req_id, tx_id, len — host byte order (x86: little)
PAYLOAD_MAX = 4096  # XENSTORE_PAYLOAD_MAX: xenstored drops a connection that sends more
ABS_PATH_MAX = 3072  # XENSTORE_ABS_PATH_MAX
REL_PATH_MAX = 2048  # XENSTORE_REL_PATH_MAX
WATCH_PATH = 0  # XS_WATCH_PATH: index into xs_read_watch's result
WATCH_TOKEN = 1  # XS_WATCH_TOKEN
INTRODUCE_DOMAIN = "@introduceDomain"
RELEASE_DOMAIN = "@releaseDomain"
SPECIAL_PATHS = (INTRODUCE_DOMAIN, RELEASE_DOMAIN)


class Op(enum.IntEnum):
    """enum xsd_sockmsg_type (Xen 4.17: XS_TYPE_COUNT = 23)."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


#: xsd_errors[] in table order: the names xenstored sends in an ERROR reply.
ERRNO_NAMES = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Message:
    """One framed message, request or reply."""

    op: int
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return HEADER.pack(self.op, self.req_id, self.tx_id, len(self.payload)) + self.payload


def encode(op: int, payload: bytes, req_id: int = 0, tx_id: int = 0) -> bytes:
    return HEADER.pack(int(op), req_id, tx_id, len(payload)) + payload


def error_payload(name: str) -> bytes:
    return name.encode("ascii") + b"\0"


class Oversize(Exception):
    """The peer announced a payload over PAYLOAD_MAX: xenstored drops such a connection."""


class Framer:
    """Cuts a byte stream into Messages; pure and incremental (feed what arrived, take what is whole)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Messages completed by `data`; raises Oversize as soon as a header announces too much."""
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            op, req_id, tx_id, length = HEADER.unpack_from(self._buf)
            if length > PAYLOAD_MAX:
                raise Oversize(f"payload of {length} bytes announced (max {PAYLOAD_MAX})")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append(Message(op, req_id, tx_id, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return out

    @property
    def pending(self) -> int:
        """Bytes of a message not yet complete (non-zero when a peer left mid-message)."""
        return len(self._buf)


_PATH_CHARS = re.compile(r"[A-Za-z0-9\-/_@]*")


def valid_path(path: str) -> bool:
    """A node path xenstored accepts: allowed characters, no '//', no trailing '/', bounded length.

    Relative paths (no leading '/') are accepted here; the caller makes them
    absolute against the connection's home.  '@…' paths are only for watches.
    """
    if not path or not _PATH_CHARS.fullmatch(path):
        return False
    if path.startswith("@"):
        return False
    if path == "/":
        return True
    if path.endswith("/") or "//" in path:
        return False
    limit = ABS_PATH_MAX if path.startswith("/") else REL_PATH_MAX
    return len(path) <= limit


def valid_watch_path(path: str) -> bool:
    return path in SPECIAL_PATHS or valid_path(path)


def is_child(child: str, parent: str) -> bool:
    """xenstored's is_child: `child` is `parent` or below it (string prefix on a '/' boundary)."""
    if child == parent:
        return True
    if parent == "/":
        return child.startswith("/")
    return child.startswith(parent) and child[len(parent) : len(parent) + 1] == "/"


def parent_of(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def split_strings(payload: bytes) -> list[bytes]:
    """NUL-terminated strings of a payload; a last unterminated piece is kept as is."""
    parts = payload.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts
