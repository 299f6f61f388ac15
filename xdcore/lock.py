"""The xendomains lock file: the classic "service started" marker, made race-free.

The file's presence means what it meant to the classic script (and to RHEL's
rc system): `start` ran and guests are up; `stop` always removes it.  On top
of that every run holds an exclusive `flock` on it for its whole duration, and
writes what it is doing ("starting PID", "started PID", "stopping PID").

The flock is the only judge of a run in progress: a lock whose flock can be
taken has no run behind it, whatever its text says.  "starting"/"stopping"
with a free flock is the lock of a run that died (SIGKILL, power loss) and
is taken over — the PID in it is never asked, since after a reboot it
names some other process (often PID 1).  "started" (or an empty file, as
`touch` leaves it) with a free flock is a started service.

A lock path that cannot hold a lock (a directory or a FIFO sits there, or
its directory cannot be made) raises LockUnusable: stop evacuates without
the lock, start refuses.

The path is never followed if it is a symlink (O_NOFOLLOW): a symlink planted
there is removed (unlink does not follow) and replaced by a regular file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LockError, LockUnusable

SUBSYS_DIR = Path("/var/lock/subsys")
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def default_lock_path(configured: Path | None = None) -> Path:
    if configured:
        return Path(configured)
    if SUBSYS_DIR.is_dir():
        return SUBSYS_DIR / "xendomains"
    return Path("/var/lock/xendomains")


@dataclass(frozen=True, slots=True)
class LockInfo:
    """What a lock file says about the run that wrote it."""

    state: str  # starting / started / stopping / "" (legacy, empty: written by `touch`)
    pid: int


def read_info(path: Path) -> LockInfo | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.read(fd, 256).decode(errors="replace").split()
    finally:
        os.close(fd)
    state = data[0] if data else ""
    try:
        pid = int(data[1]) if len(data) > 1 else 0
    except ValueError:
        pid = 0
    return LockInfo(state, pid)


class RunLock:
    """An flock-held lock file for one run (start or stop)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.notes: list[str] = []

    # -- inspection ------------------------------------------------------------

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def held_by_other(self) -> bool:
        """True when another process holds the flock (a run is in progress)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # -- taking it ----------------------------------------------------------------

    def _remove_symlink(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(self.path)
            os.unlink(self.path)
            self.notes.append(f"lock file {self.path} was a symlink to {target}: removed it, never followed")
        elif not stat.S_ISREG(st.st_mode):
            kind = next((w for t, w in _KINDS if t(st.st_mode)), "not a regular file")
            raise LockUnusable(f"the lock file {self.path} is {kind}, not a regular file; remove it by hand")

    def _open(self, create_excl: bool) -> int:
        self._remove_symlink()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise PermissionError(exc.errno, f"cannot create {self.path.parent}: {exc.strerror}") from exc
        except OSError as exc:
            raise LockUnusable(f"cannot create the directory of the lock file {self.path}: "
                               f"{exc.strerror or exc}") from exc
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        if create_excl:
            flags |= os.O_EXCL
        try:
            return os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # raced with a new symlink: refuse rather than follow
                raise LockError(f"lock file {self.path} became a symlink; refusing to follow it") from exc
            if isinstance(exc, (PermissionError, FileExistsError)):
                raise
            raise LockUnusable(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from exc

    def _flock(self, fd: int, blocking: bool, wait: float) -> bool:
        if not blocking:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.lstat(self.path)
        except FileNotFoundError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def _write(self, state: str) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{state} {os.getpid()}\n".encode(), 0)

    def acquire_for_start(self) -> str:
        """Take the lock for `start`.

        Returns "acquired", "acquired-stale" (a crashed run's lock was taken
        over), or "running" (the lock is present: a started service or a run in
        progress — start must not touch any guest).
        """
        while True:
            try:
                fd = self._open(create_excl=True)
                created = True
            except FileExistsError:
                fd = self._open(create_excl=False)
                created = False
            if not self._flock(fd, blocking=False, wait=0):
                os.close(fd)
                return "running"
            if not self._same_file(fd):  # removed/replaced between open and flock: retry
                os.close(fd)
                continue
            self.fd = fd
            if created:
                self._write("starting")
                return "acquired"
            info = read_info(self.path)
            if info and info.state in ("starting", "stopping"):  # we hold its flock: that run is gone
                what = {"starting": "start", "stopping": "stop"}[info.state]
                self.notes.append(f"stale lock from a {what} run (pid {info.pid}) that died before it finished "
                                  "(nobody holds its flock); taking it over")
                self._write("starting")
                return "acquired-stale"
            self.release(remove=False)
            return "running"

    def acquire_for_stop(self, wait: float = 600.0) -> None:
        """Take the lock for `stop` (creating it if absent), waiting for a run in progress."""
        deadline = time.monotonic() + wait
        while True:
            fd = self._open(create_excl=False)
            if not self._flock(fd, blocking=True, wait=max(0.0, deadline - time.monotonic())):
                os.close(fd)
                info = read_info(self.path)
                who = f" (pid {info.pid}, {info.state})" if info else ""
                raise LockError(f"another xendomains run holds {self.path}{who}; gave up after {wait:g}s")
            if self._same_file(fd):
                self.fd = fd
                self._write("stopping")
                return
            os.close(fd)

    def mark_started(self) -> None:
        self._write("started")

    def release(self, remove: bool) -> None:
        """Drop the flock; with remove=True unlink the file first (while still holding it)."""
        if remove:
            try:
                if self.fd is None or self._same_file(self.fd):
                    os.unlink(self.path)
                else:
                    self._remove_symlink()
            except FileNotFoundError:
                pass
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None
