"""`Handle`: pyxenstore's API in Python 3, bound to the real libxenstore through ctypes.

pyxenstore 0.0.2 (PyPI) was a Python-2 C extension that also calls
`xs_perm_to_string`, which modern libxenstore no longer exports.  This keeps
its surface — `Handle()`, `entries`, `read`, `write`, `mkdir`, `rm`,
`permissions_get`, `permissions_set`, `transaction_start`, `transaction_end`
and its exception names — and its approach (the C library does the talking),
and adds what a long-running console needs: `close()` and `with`, watches with
an asyncio event stream on `xs_fileno` (`loop.add_reader`), and commits that
report a conflict (`TransactionConflictError`) plus `run_transaction` to retry.

The socket is libxenstore's choice: `$XENSTORED_PATH`, else
`$XENSTORED_RUNDIR/socket`, else /var/run/xenstored/socket.  `Handle(path=…)`
sets XENSTORED_PATH just for the `xs_open` call.

Like pyxenstore, a handle holds at most one transaction, which every call on
it uses implicitly until `transaction_end`.  Calls block on a round trip to
xenstored: from asyncio code, run them with `asyncio.to_thread` (a simulated
xenstored in the same event loop would otherwise never answer).  A handle is
not valid in a forked child; using one there raises PyXenStoreError.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno as _errno
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from ctypes import POINTER, byref, c_char_p, c_uint, cast
from dataclasses import dataclass
from typing import TypeVar

from . import _lib
from .errors import (
    InvalidArgError,
    NoPermissionError,
    NotFoundError,
    PyXenStoreError,
    TransactionConflictError,
    TransactionNotStartedError,
    TransactionStartedError,
    XenStoreUnreachable,
    from_errno,
)

T = TypeVar("T")

_PERM_LETTERS = {0: "n", 1: "r", 2: "w", 3: "b"}
_LETTER_PERMS = {v: k for k, v in _PERM_LETTERS.items()}
_env_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One fired watch: the node that changed (or the watched path) and the watch's token."""

    path: str
    token: str


def _b(text: str | bytes, what: str = "path") -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8")
    raise InvalidArgError(f"{what} must be str or bytes, got {type(text).__name__}")


class Handle:
    """A connection to xenstored (pyxenstore.Handle).  Constructor arguments are ignored, as there,
    except the keyword `path`: the xenstored socket to use instead of libxenstore's default."""

    def __init__(self, *_ignored: object, path: str | os.PathLike[str] | None = None, **_kw: object):
        self._lib = _lib.load()
        self._xs = self._lib.xs
        self._h: int | None = None
        self._pid = os.getpid()
        self._tx = _lib.XBT_NULL
        self._tx_started = False
        ctypes.set_errno(0)
        if path is None:
            h = self._xs.xs_open(0)
            err = ctypes.get_errno()
        else:
            with _env_lock:
                saved = os.environ.get("XENSTORED_PATH")
                os.environ["XENSTORED_PATH"] = os.fspath(path)
                try:
                    h = self._xs.xs_open(0)
                    err = ctypes.get_errno()
                finally:
                    if saved is None:
                        del os.environ["XENSTORED_PATH"]
                    else:
                        os.environ["XENSTORED_PATH"] = saved
        if not h:
            where = os.fspath(path) if path is not None else socket_path()
            if err in (_errno.EACCES, _errno.EPERM):
                raise NoPermissionError(f"No permission to open the xenstore at {where}", errno=err, path=where)
            if err == _errno.ENOMEM:
                raise MemoryError("xs_open: out of memory")
            raise XenStoreUnreachable(
                f"Couldn't open connection to the xenstore at {where}: {os.strerror(err) if err else 'failed'}",
                errno=err or None,
                path=where,
            )
        self._h = h

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (an open transaction is abandoned, i.e. aborted); idempotent."""
        h, self._h = self._h, None
        self._tx, self._tx_started = _lib.XBT_NULL, False
        if h and os.getpid() == self._pid:
            self._xs.xs_close(h)

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _handle(self) -> int:
        if self._h is None:
            raise PyXenStoreError("XenStore handle is closed")
        if os.getpid() != self._pid:
            raise PyXenStoreError(f"XenStore handle opened in process {self._pid} is not valid after fork")
        return self._h

    def _fail(self, action: str, path: str) -> PyXenStoreError:
        return from_errno(ctypes.get_errno(), action, path)

    # -- pyxenstore's methods ----------------------------------------------------

    def entries(self, path: str) -> list[str]:
        """Names of the children of `path` (xs_directory)."""
        h = self._handle()
        num = c_uint(0)
        ctypes.set_errno(0)
        ptr = self._xs.xs_directory(h, self._tx, _b(path), byref(num))
        if not ptr:
            raise self._fail("read entries from", str(path))
        try:
            vec = cast(ptr, POINTER(c_char_p))
            return [vec[i].decode("utf-8", "replace") for i in range(num.value)]
        finally:
            self._lib.free(ptr)

    def read(self, path: str) -> bytes:
        """The value of `path` as bytes (pyxenstore returned a Python 2 str, i.e. bytes)."""
        h = self._handle()
        length = c_uint(0)
        ctypes.set_errno(0)
        ptr = self._xs.xs_read(h, self._tx, _b(path), byref(length))
        if not ptr:
            raise self._fail("read from", str(path))
        try:
            return ctypes.string_at(ptr, length.value)
        finally:
            self._lib.free(ptr)

    def write(self, path: str, data: str | bytes) -> None:
        h = self._handle()
        raw = _b(data, "data")
        ctypes.set_errno(0)
        if not self._xs.xs_write(h, self._tx, _b(path), raw, len(raw)):
            raise self._fail("write to", str(path))

    def mkdir(self, path: str) -> None:
        h = self._handle()
        ctypes.set_errno(0)
        if not self._xs.xs_mkdir(h, self._tx, _b(path)):
            raise self._fail("create", str(path))

    def rm(self, path: str) -> None:
        h = self._handle()
        ctypes.set_errno(0)
        if not self._xs.xs_rm(h, self._tx, _b(path)):
            raise self._fail("remove", str(path))

    def permissions_get(self, path: str) -> list[tuple[int, str]]:
        """[(domid, 'n'|'r'|'w'|'b'), …], the owner first."""
        h = self._handle()
        num = c_uint(0)
        ctypes.set_errno(0)
        ptr = self._xs.xs_get_permissions(h, self._tx, _b(path), byref(num))
        if not ptr:
            raise self._fail("read permissions of", str(path))
        try:
            arr = cast(ptr, POINTER(_lib.XsPermissions))
            return [(int(arr[i].id), _PERM_LETTERS.get(arr[i].perms & 3, "n")) for i in range(num.value)]
        finally:
            self._lib.free(ptr)

    def permissions_set(self, path: str, perms: list[tuple[int, str]]) -> None:
        """Set [(domid, letter), …]; the first entry is the owner and the default for others."""
        if not isinstance(perms, list):
            raise InvalidArgError("Permissions must be a list", path=str(path))
        if not perms:
            raise InvalidArgError("Permission list is empty", path=str(path))
        arr = (_lib.XsPermissions * len(perms))()
        for i, item in enumerate(perms):
            if not isinstance(item, tuple):
                raise InvalidArgError(f"List element #{i} is not a tuple", path=str(path))
            if len(item) != 2:
                raise InvalidArgError(f"Tuple #{i} does not contain 2 elements", path=str(path))
            domid, letter = item
            if not isinstance(domid, int) or isinstance(domid, bool) or domid < 0:
                raise InvalidArgError(f"Tuple #{i}: first element is not a domain id", path=str(path))
            if letter not in _LETTER_PERMS:
                raise InvalidArgError(f"Tuple #{i}: permission must be one of n, r, w, b", path=str(path))
            arr[i].id, arr[i].perms = domid, _LETTER_PERMS[letter]
        h = self._handle()
        ctypes.set_errno(0)
        if not self._xs.xs_set_permissions(h, self._tx, _b(path), arr, len(perms)):
            raise self._fail("set permissions of", str(path))

    def transaction_start(self) -> None:
        if self._tx_started:
            raise TransactionStartedError("Transaction has already been started")
        h = self._handle()
        ctypes.set_errno(0)
        tx = self._xs.xs_transaction_start(h)
        if tx == _lib.XBT_NULL:
            raise self._fail("start a transaction on", "/")
        self._tx, self._tx_started = tx, True

    def transaction_end(self, abort: bool = False) -> None:
        """Commit (or abort) the handle's transaction; a conflicting commit raises TransactionConflictError."""
        if not isinstance(abort, bool):
            raise TypeError("abort must be a bool")
        if not self._tx_started:
            raise TransactionNotStartedError("Transaction hasn't been started")
        h = self._handle()
        tx, self._tx, self._tx_started = self._tx, _lib.XBT_NULL, False
        ctypes.set_errno(0)
        if not self._xs.xs_transaction_end(h, tx, abort):
            raise self._fail("abort" if abort else "commit", "/")

    # -- additions ---------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._tx_started

    def run_transaction(self, body: Callable[["Handle"], T], *, attempts: int = 16, backoff: float = 0.002) -> T:
        """Run body(handle) inside a transaction and commit; re-run it on a conflict (EAGAIN).

        body must be safe to repeat (read, decide, write).  An exception from
        body aborts the transaction and propagates.  After `attempts`
        conflicts the last TransactionConflictError propagates.
        """
        for attempt in range(1, attempts + 1):
            self.transaction_start()
            try:
                result = body(self)
            except BaseException:
                if self._tx_started:
                    try:
                        self.transaction_end(abort=True)
                    except PyXenStoreError:
                        pass
                raise
            try:
                self.transaction_end()
            except TransactionConflictError:
                if attempt == attempts:
                    raise
                time.sleep(backoff * attempt)
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def exists(self, path: str) -> bool:
        try:
            self.read(path)
        except NotFoundError:
            return False
        return True

    def get_domain_path(self, domid: int) -> str:
        h = self._handle()
        ctypes.set_errno(0)
        ptr = self._xs.xs_get_domain_path(h, domid)
        if not ptr:
            raise self._fail("get the domain path of", str(domid))
        try:
            return ctypes.string_at(ptr).decode()
        finally:
            self._lib.free(ptr)

    def is_domain_introduced(self, domid: int) -> bool:
        return bool(self._xs.xs_is_domain_introduced(self._handle(), domid))

    # -- watches -----------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """Watch `path` (or @introduceDomain / @releaseDomain); an event for `path` itself follows at once."""
        h = self._handle()
        ctypes.set_errno(0)
        if not self._xs.xs_watch(h, _b(path), _b(token, "token")):
            raise self._fail("watch", str(path))

    def unwatch(self, path: str, token: str) -> None:
        h = self._handle()
        ctypes.set_errno(0)
        if not self._xs.xs_unwatch(h, _b(path), _b(token, "token")):
            raise self._fail("unwatch", str(path))

    def fileno(self) -> int:
        """A pipe that is readable while watch events are queued (not the socket)."""
        fd = self._xs.xs_fileno(self._handle())
        if fd < 0:
            raise self._fail("get the watch descriptor of", "/")
        return fd

    def _event_from(self, ptr: int) -> WatchEvent:
        try:
            vec = cast(ptr, POINTER(c_char_p))
            path, token = vec[0], vec[1]
            return WatchEvent((path or b"").decode("utf-8", "replace"), (token or b"").decode("utf-8", "replace"))
        finally:
            self._lib.free(ptr)

    def check_watch(self) -> WatchEvent | None:
        """The next queued event, or None at once when there is none (xs_check_watch)."""
        h = self._handle()
        ctypes.set_errno(0)
        ptr = self._xs.xs_check_watch(h)
        if ptr:
            return self._event_from(ptr)
        err = ctypes.get_errno()
        if err in (0, _errno.EAGAIN):
            return None
        raise XenStoreUnreachable(f"Watch connection to xenstored lost: {os.strerror(err)}", errno=err)

    def read_watch(self) -> WatchEvent:
        """The next event, blocking the calling thread until one arrives (xs_read_watch)."""
        h = self._handle()
        num = c_uint(0)
        ctypes.set_errno(0)
        ptr = self._xs.xs_read_watch(h, byref(num))
        if not ptr:
            err = ctypes.get_errno()
            raise XenStoreUnreachable(f"Watch connection to xenstored lost: {os.strerror(err)}", errno=err)
        return self._event_from(ptr)

    async def watch_events(self, *, liveness: float = 1.0) -> AsyncIterator[WatchEvent]:
        """Events as an async stream, woken by `loop.add_reader(xs_fileno)`; never blocks the loop.

        Every `liveness` seconds without an event it checks the connection, so
        a vanished xenstored ends the stream with XenStoreUnreachable instead
        of a silent hang.
        """
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        while True:
            event = self.check_watch()
            if event is not None:
                yield event
                continue
            woken: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, lambda: woken.done() or woken.set_result(None))
            try:
                await asyncio.wait_for(woken, timeout=liveness)
            except asyncio.TimeoutError:
                pass
            finally:
                loop.remove_reader(fd)


def socket_path() -> str:
    """The socket libxenstore will use after environment overrides (xs_daemon_socket)."""
    env = os.environ.get("XENSTORED_PATH")
    if env:
        return env
    rundir = os.environ.get("XENSTORED_RUNDIR")
    if rundir:
        return os.path.join(rundir, "socket")
    try:
        raw = _lib.load().xs.xs_daemon_socket()
    except PyXenStoreError:
        raw = None
    return raw.decode() if raw else "/var/run/xenstored/socket"


def run_transaction(handle: Handle, body: Callable[[Handle], T], *, attempts: int = 16) -> T:
    """Module-level spelling of Handle.run_transaction."""
    return handle.run_transaction(body, attempts=attempts)


__all__ = ["Handle", "WatchEvent", "run_transaction", "socket_path", "TransactionConflictError"]
