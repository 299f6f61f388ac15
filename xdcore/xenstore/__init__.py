"""XenStore for xdcore: pyxenstore's API on the real libxenstore, and a live domain watcher.

`Handle` (handle.py) binds libxenstore.so.4 through ctypes — loaded only when a
Handle is made, so importing this package costs nothing on hosts without it.
`watch_domains` (watcher.py) turns XenStore watches into domain-list changes
and falls back to polling the toolstack.  `wire` and `store` are the protocol
and the pure server rules used by the simulated xenstored.
"""

from __future__ import annotations

from .errors import (
    InvalidArgError,
    LibraryMissingError,
    NoPermissionError,
    NotFoundError,
    PyXenStoreError,
    TransactionConflictError,
    TransactionNotStartedError,
    TransactionStartedError,
    XenStoreUnreachable,
)
from .handle import Handle, WatchEvent, run_transaction, socket_path

__all__ = [
    "Handle",
    "WatchEvent",
    "run_transaction",
    "socket_path",
    "PyXenStoreError",
    "InvalidArgError",
    "NotFoundError",
    "NoPermissionError",
    "TransactionStartedError",
    "TransactionNotStartedError",
    "TransactionConflictError",
    "XenStoreUnreachable",
    "LibraryMissingError",
]
