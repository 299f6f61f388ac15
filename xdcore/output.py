"""Event consumers of the headless front end: the human printer, `--json`, the progress file.

All three take events and nothing else; the console is a fourth consumer of
the same stream (live, or read back from the progress file).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from .events import (
    Event,
    GateFinished,
    GateWaiting,
    GroupStarted,
    GuestFinished,
    GuestSkipped,
    LockHeld,
    MessageLogged,
    RunFinished,
    RunStarted,
    StageDowngraded,
    StageFinished,
    StageStarted,
)
from .model import NAMELESS
from .pipeline.stages import STAGES


class PipeSafeStdout:
    """sys.stdout for a command whose reader may go away (`xendomains status | head -1`).

    The first write that meets a closed pipe (EPIPE) points file descriptor 1
    at /dev/null and drops that and every later line quietly: no traceback,
    and a `stop | head` keeps evacuating (SIGPIPE's default would kill it half
    way).  `broken` tells whether it happened.
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.broken = False

    def _closed(self) -> None:
        self.broken = True
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError, AttributeError):
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)  # what is still buffered goes nowhere, and so does the interpreter's last flush
            os.close(devnull)
        except OSError:
            pass

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

_MARK = {"done": ".", "failed": "!", "timeout": "!", "cancelled": "-", "skipped": "-"}
_HEADINGS = {
    ("stop", "select"): "Shutting down Xen domains:",
    ("start", "restore"): "Restoring Xen domains:",
    ("start", "create"): "Starting auto Xen domains:",
}


def shown_name(name: str) -> str:
    """A guest name for a line of text: control characters and line separators escaped (\\n, \\x0b …),
    so that a name holding a newline never makes a line that looks like another guest's."""
    if not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in name):
        return name
    return "".join(c.encode("unicode_escape").decode("ascii") if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F
                   or c in "\u2028\u2029" else c for c in name)


class HumanPrinter:
    """Classic-style progress: a heading per phase, then one line per guest as it finishes.

    `web01(SR-s)(migr!)(save). saved 3.2s` — the classic tags, '.' for done and
    '!' for failed, so that a run in parallel still reads one guest per line.
    Warnings and errors go to `err` as they happen.
    """

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None, verbose: bool = False):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.verbose = verbose
        self.verb = ""
        self.tags: dict[str, list[str]] = {}

    def _p(self, text: str, stream: IO[str] | None = None) -> None:
        s = stream or self.out
        s.write(text + "\n")
        s.flush()

    def __call__(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            self.verb = e.verb
        elif isinstance(e, StageStarted) and not e.guest:
            heading = _HEADINGS.get((self.verb, e.stage))
            if heading:
                self._p(heading)
        elif isinstance(e, StageFinished) and e.guest:
            st = STAGES.get(e.stage)
            label = st.label if st else e.stage
            if e.stage == "sysrq" and e.detail and e.outcome == "done":
                label = "SR-" + e.detail.replace(" ", ",")
            self.tags.setdefault(e.guest, []).append(f"({label}){_MARK.get(e.outcome, '?')}")
        elif isinstance(e, StageFinished) and e.stage == "shutdown_all":
            self._p(f" SHUTDOWN_ALL {e.outcome}{': ' + e.detail if e.detail else ''}")
        elif isinstance(e, GroupStarted):
            self._p(f" group {e.index + 1}/{e.of} ({e.label}): {' '.join(e.guests)}")
        elif isinstance(e, GateWaiting):
            self._p(f" {e.guest}: waiting until {'ready' if e.gate == 'ready' else e.gate}"
                    + (f" (at most {e.timeout:g}s)" if e.timeout else ""))
        elif isinstance(e, GateFinished):
            word = {"open": "ready", "timeout": "up, not ready"}.get(e.outcome, e.outcome)
            self._p(f" {e.guest}: {word} after {e.elapsed:.1f}s{': ' + e.detail if e.detail else ''}")
        elif isinstance(e, StageDowngraded):
            self._p(f" {shown_name(e.guest)}: {e.from_stage} → {e.to_stage} ({e.reason})")
        elif isinstance(e, GuestSkipped):
            self._p(f" {shown_name(e.guest)}(skip): {e.reason}")
        elif isinstance(e, GuestFinished):
            tags = "".join(self.tags.pop(e.guest, []))
            if e.outcome == "zombie":
                tags = "(zomb)"
            tail = f" {e.outcome}"
            if e.guest == NAMELESS and e.domid >= 0:  # several zombies are all "(null)": tell them apart
                tail += f", domid {e.domid}"
            if e.elapsed:
                tail += f" {e.elapsed:.1f}s"
            self._p(f" {shown_name(e.guest)}{tags}{tail}")
        elif isinstance(e, MessageLogged):
            if e.level == "info":
                self._p(e.text)
            else:
                self._p(f"xendomains: {e.level}: {e.text}", self.err)
        elif isinstance(e, LockHeld):
            pass  # the service logs "xendomains already running (lockfile exists)"
        elif isinstance(e, RunFinished):
            if e.verb in ("start", "stop"):
                word = "done" if e.exit_code == 0 else "failed"
                self._p(f"{e.verb}: {e.summary or 'nothing to do'}  [{word}]")


class JsonWriter:
    """`--json`: one JSON object per event on stdout."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out or sys.stdout

    def __call__(self, e: Event) -> None:
        self.out.write(e.to_json() + "\n")
        self.out.flush()


class ProgressFile:
    """One run's events, one JSON object a line, readable while the run goes on.

    A new run replaces the file atomically (a fresh inode) when it emits
    RunStarted — that is, once it holds the lock, so a `start` that finds the
    service running never clobbers the file of the run in progress.  A
    follower notices a new run by the inode change and never sees two runs mixed.

    The file is a witness, never a reason to fail: a write that fails (a full
    /run, a read-only file system) is recorded in `error` — the caller warns —
    and the run goes on without it.  Lines go straight to the descriptor
    (no buffer that a later close would try, and fail, to flush), and a
    temporary file that could not be completed is removed.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.size = 0
        self.error: str | None = None
        self.buffer: list[str] = []

    def _fail(self, what: str, exc: OSError) -> None:
        if self.error is None:
            self.error = f"cannot {what} the progress file {self.path}: {exc.strerror or exc}; the run goes on without it"
        self.buffer.clear()

    def open(self) -> bool:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            data = "".join(self.buffer).encode("utf-8")
            _write_all(fd, data)
            os.replace(tmp, self.path)
        except OSError as exc:
            if fd is not None:
                _close_quietly(fd)
                _unlink_quietly(tmp)
            self._fail("write", exc)
            return False
        self.fd = fd
        self.size = len(data)
        self.buffer.clear()
        return True

    def __call__(self, e: Event) -> None:
        line = e.to_json() + "\n"
        if self.fd is None:
            if self.error is not None:
                return
            self.buffer.append(line)
            if isinstance(e, RunStarted):  # emitted once the run holds the lock: now replace the file
                self.open()
            return
        data = line.encode("utf-8")
        try:
            _write_all(self.fd, data)
            self.size += len(data)
        except OSError as exc:
            try:  # a line half written is taken back: a follower only ever reads whole lines
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            self._fail("write", exc)
            self.close()
            return
        if isinstance(e, RunFinished):
            self.close()

    def close(self) -> None:
        """Close the file; never raises."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            _close_quietly(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
