"""Following the progress file of a headless run (the one systemd started at shutdown).

The run writes one JSON event per line and replaces the file atomically (a new
inode) when a new run takes the lock.  So a follower polls `os.stat` (~5 times
a second: cheap, and no inotify dependency), reads only what was appended,
keeps a half-written last line until its newline arrives, and starts over when
the inode changes or the file shrinks.  No Textual here: the console wraps
this in a worker and turns each batch into a message.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from xdcore.events import Event, RunFinished, RunStarted, from_json


@dataclass(frozen=True, slots=True)
class Batch:
    """What a poll found: `reset` when a new file (new run) replaced the old one."""

    reset: bool
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class HeadlessRun:
    """A run found in the progress file that has not finished and whose process lives."""

    run: str
    verb: str
    pid: int
    started: float


def decode_lines(data: bytes) -> list[Event]:
    """Events of complete lines; lines that are not events (garbage, other kinds) are dropped."""
    out: list[Event] = []
    for raw in data.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        try:
            out.append(from_json(raw.decode("utf-8", errors="replace")))
        except (ValueError, TypeError):
            continue
    return out


class ProgressFollower:
    """Incremental reader of one progress-file path (synchronous and cheap: call it from a timer)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._ino: int | None = None
        self._dev: int | None = None
        self._pos = 0
        self._partial = b""

    def poll(self) -> Batch | None:
        """New events since the last call, or None when nothing changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        reset = False
        if (st.st_ino, st.st_dev) != (self._ino, self._dev) or st.st_size < self._pos:
            reset = self._ino is not None
            self._ino, self._dev, self._pos, self._partial = st.st_ino, st.st_dev, 0, b""
            if st.st_size == 0:
                return Batch(True, ()) if reset else None
        elif st.st_size == self._pos:
            return None
        try:
            with open(self.path, "rb") as fh:
                fst = os.fstat(fh.fileno())
                if (fst.st_ino, fst.st_dev) != (self._ino, self._dev):  # replaced between stat and open
                    self._ino, self._dev, self._pos, self._partial = fst.st_ino, fst.st_dev, 0, b""
                    reset = True
                fh.seek(self._pos)
                data = fh.read()
        except OSError:
            return None
        self._pos += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        events = decode_lines(data[:cut])
        if not events and not reset:
            return None
        return Batch(reset, tuple(events))


async def follow(path: Path, interval: float = 0.2) -> AsyncIterator[Batch]:
    """Batches as the file grows or is replaced, forever (cancel the consumer to stop)."""
    follower = ProgressFollower(path)
    while True:
        batch = follower.poll()
        if batch is not None:
            yield batch
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def headless_run_in_progress(path: Path, own_pid: int | None = None) -> HeadlessRun | None:
    """The unfinished run of the progress file, when its process is alive and is not us."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    started: RunStarted | None = None
    finished: set[str] = set()
    for e in decode_lines(data):
        if isinstance(e, RunStarted):
            started = e
        elif isinstance(e, RunFinished):
            finished.add(e.run)
    if started is None or started.run in finished:
        return None
    if started.pid == (os.getpid() if own_pid is None else own_pid) or not pid_alive(started.pid):
        return None
    return HeadlessRun(started.run, started.verb, started.pid, started.at)
