"""Writing files so that a reader (or the next boot) never sees half of one.

One helper for every small file xdcore writes whole: run reports, measured
throughputs, installed unit and init-script files — and one for reading such
a file back without ever blocking on a FIFO or reading without bound.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: the largest state file (report, throughputs) read back; larger is not ours
MAX_STATE_BYTES = 16 << 20


def read_small(path: Path, limit: int = MAX_STATE_BYTES) -> str:
    """The UTF-8 text of a small regular file; OSError when it is anything else or larger than `limit`.

    Opened non-blocking, so a FIFO planted at the path is refused, never waited on.
    """
    return read_small_bytes(path, limit).decode("utf-8")


def read_small_bytes(path: Path, limit: int = MAX_STATE_BYTES) -> bytes:
    """The bytes of a small regular file (see read_small)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = read_at_most(fd, limit)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return data
    finally:
        os.close(fd)


def read_at_most(fd: int, limit: int) -> bytes:
    """At most `limit` + 1 bytes from `fd`: a result longer than `limit` means the file is larger."""
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def write_atomic(path: Path, text: str, mode: int = 0o644, tag: str = "", fsync: bool = True) -> None:
    """Write `text` to a temporary sibling, fsync it, and rename it over `path` (never follows a symlink).

    fsync=False: still atomic for readers, but not forced to the disk (a state that the next
    write replaces soon, where an fsync per write would slow the run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{tag + '.' if tag else ''}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(text)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
