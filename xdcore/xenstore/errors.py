"""The pyxenstore exception names, rooted in xdcore's one exception tree.

pyxenstore made `PyXenStoreError` a plain Exception subclass; here it derives
from `XendomainsError` (itself an Exception), so `except PyXenStoreError`
code written for pyxenstore keeps working and xdcore's handlers see it too::

    XendomainsError
     └── PyXenStoreError              errno/path attributes when known
          ├── InvalidArgError         EINVAL
          ├── NotFoundError           ENOENT
          ├── NoPermissionError       EACCES / EPERM
          ├── TransactionStartedError     a second transaction_start on one handle
          ├── TransactionNotStartedError  transaction_end without a transaction
          ├── TransactionConflictError    commit refused with EAGAIN: run it again
          ├── XenStoreUnreachable     xs_open failed, or the connection was lost
          └── LibraryMissingError     libxenstore.so.4 cannot be loaded
"""

from __future__ import annotations

import errno as _errno

from ..errors import XendomainsError


class PyXenStoreError(XendomainsError):
    """Any XenStore failure; `errno` (int or None) and `path` (str or None) say which and where."""

    def __init__(self, message: str, *, errno: int | None = None, path: str | None = None):
        super().__init__(message)
        self.errno = errno
        self.path = path


class InvalidArgError(PyXenStoreError):
    """EINVAL: a malformed path, value or argument."""


class NotFoundError(PyXenStoreError):
    """ENOENT: the node (or its parent) does not exist."""


class NoPermissionError(PyXenStoreError):
    """EACCES/EPERM: the connection may not do this."""


class TransactionStartedError(PyXenStoreError):
    """The handle already holds a transaction."""


class TransactionNotStartedError(PyXenStoreError):
    """transaction_end was called without a transaction."""


class TransactionConflictError(PyXenStoreError):
    """The commit conflicted with another writer (EAGAIN); the whole transaction must be re-run."""


class XenStoreUnreachable(PyXenStoreError):
    """No xenstored could be reached, or the connection to it broke."""


class LibraryMissingError(PyXenStoreError):
    """libxenstore.so.4 (Debian package libxenstore4) is not installed or cannot be loaded."""


def from_errno(err: int, action: str, path: str) -> PyXenStoreError:
    """The pyxenstore exception for an errno set by a libxenstore call on `path`."""
    if err == _errno.ENOENT:
        return NotFoundError(f"Directory path '{path}' doesn't exist", errno=err, path=path)
    if err == _errno.EINVAL:
        return InvalidArgError("Invalid argument specified", errno=err, path=path)
    if err in (_errno.EACCES, _errno.EPERM):
        return NoPermissionError(f"No permission to {action} '{path}'", errno=err, path=path)
    if err == _errno.EAGAIN and action == "commit":
        return TransactionConflictError(
            "Transaction conflicted with another writer (EAGAIN): run it again", errno=err, path=path
        )
    if err in (_errno.EPIPE, _errno.ECONNRESET, _errno.EBADF, _errno.ENOTCONN):
        return XenStoreUnreachable(
            f"Connection to xenstored lost while trying to {action} '{path}': {_errno_text(err)}",
            errno=err,
            path=path,
        )
    return PyXenStoreError(f"Couldn't {action} '{path}': {_errno_text(err)}", errno=err, path=path)


def _errno_text(err: int) -> str:
    import os

    return os.strerror(err) if err else "unknown error"
