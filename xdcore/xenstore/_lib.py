"""Loading libxenstore.so.4 through ctypes, with every prototype declared once.

Memory rule (xen-reference §6.4): every char*, void* and char** libxenstore
returns is one malloc'd block that the caller frees exactly once with libc
free().  Those functions are therefore declared to return `c_void_p` (never
`c_char_p`, which would copy and lose the pointer) and all frees go through
`Lib.free`, the single choke point the tests instrument.

The library is looked up as `libxenstore.so.4` by the dynamic loader, then at
the Debian multiarch path; `XD_LIBXENSTORE` names another file (tests use it
to prove the missing-library error).
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import POINTER, Structure, c_bool, c_char_p, c_int, c_uint, c_uint32, c_ulong, c_void_p

from .errors import LibraryMissingError

SONAME = "libxenstore.so.4"
DEBIAN_PATHS = ("/usr/lib/x86_64-linux-gnu/libxenstore.so.4", "/usr/lib/aarch64-linux-gnu/libxenstore.so.4")
ENV_OVERRIDE = "XD_LIBXENSTORE"

XBT_NULL = 0
XS_PERM_NONE, XS_PERM_READ, XS_PERM_WRITE = 0, 1, 2


class XsPermissions(Structure):
    """struct xs_permissions { unsigned int id; enum xs_perm_type perms; }"""

    _fields_ = [("id", c_uint), ("perms", c_uint)]


class Lib:
    """The loaded library: `xs` (prototyped functions) and `free` (libc's, counted by tests)."""

    def __init__(self, xs: ctypes.CDLL, libc: ctypes.CDLL, where: str):
        self.xs = xs
        self._libc_free = libc.free
        self.where = where

    def free(self, ptr: int | None) -> None:
        if ptr:
            self._libc_free(c_void_p(ptr))


_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    "xs_open": (c_void_p, [c_ulong]),
    "xs_close": (None, [c_void_p]),
    "xs_fileno": (c_int, [c_void_p]),
    "xs_read": (c_void_p, [c_void_p, c_uint32, c_char_p, POINTER(c_uint)]),
    "xs_write": (c_bool, [c_void_p, c_uint32, c_char_p, c_char_p, c_uint]),
    "xs_mkdir": (c_bool, [c_void_p, c_uint32, c_char_p]),
    "xs_rm": (c_bool, [c_void_p, c_uint32, c_char_p]),
    "xs_directory": (c_void_p, [c_void_p, c_uint32, c_char_p, POINTER(c_uint)]),
    "xs_get_permissions": (c_void_p, [c_void_p, c_uint32, c_char_p, POINTER(c_uint)]),
    "xs_set_permissions": (c_bool, [c_void_p, c_uint32, c_char_p, POINTER(XsPermissions), c_uint]),
    "xs_watch": (c_bool, [c_void_p, c_char_p, c_char_p]),
    "xs_unwatch": (c_bool, [c_void_p, c_char_p, c_char_p]),
    "xs_check_watch": (c_void_p, [c_void_p]),
    "xs_read_watch": (c_void_p, [c_void_p, POINTER(c_uint)]),
    "xs_transaction_start": (c_uint32, [c_void_p]),
    "xs_transaction_end": (c_bool, [c_void_p, c_uint32, c_bool]),
    "xs_get_domain_path": (c_void_p, [c_void_p, c_uint]),
    "xs_is_domain_introduced": (c_bool, [c_void_p, c_uint]),
    "xs_daemon_socket": (c_char_p, []),  # static storage: never freed
}

_lock = threading.Lock()
_loaded: Lib | None = None


def _candidates() -> list[str]:
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return [override]
    return [SONAME, *DEBIAN_PATHS]


def load() -> Lib:
    """The library, loaded once per process; LibraryMissingError says what to install."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        errors: list[str] = []
        for name in _candidates():
            try:
                xs = ctypes.CDLL(name, use_errno=True)
            except OSError as exc:
                errors.append(str(exc))
                continue
            try:
                for fn, (restype, argtypes) in _PROTOTYPES.items():
                    func = getattr(xs, fn)
                    func.restype = restype
                    func.argtypes = argtypes
            except AttributeError as exc:
                errors.append(f"{name}: {exc}")
                continue
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            _loaded = Lib(xs, libc, name)
            return _loaded
        raise LibraryMissingError(
            f"{SONAME} could not be loaded ({'; '.join(errors)}): "
            "install the Debian package libxenstore4 (apt-get install libxenstore4)"
        )


def available() -> bool:
    """True when libxenstore can be loaded (never raises)."""
    try:
        load()
    except LibraryMissingError:
        return False
    return True
