"""A terminal driver that survives the terminal going away (SSH drop, tmux killed).

Why: after a hangup every write to the tty fails with EIO.  Textual 8.2.8
writes through a thread fed by a bounded queue; the first failed write ends
that thread, the queue fills, and the event loop blocks on it forever — so a
run the console started would never reach its cleanup and the lock would stay.
This driver writes through a file that drops output once the tty is gone,
and treats the input side's EIO as a hangup (the app then aborts its run
cleanly and exits) instead of a crash.
"""

from __future__ import annotations

import errno
import sys
from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver

_GONE = {errno.EIO, errno.ENXIO, errno.EBADF, errno.EPIPE}


class TolerantOutput:
    """A file proxy whose write/flush never raise once the terminal is gone."""

    def __init__(self, file: IO[str]):
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if self.gone:
            return len(text)
        try:
            return self._file.write(text)
        except OSError as exc:
            if exc.errno in _GONE or isinstance(exc, BrokenPipeError):
                self.gone = True
                return len(text)
            raise

    def flush(self) -> None:
        if self.gone:
            return
        try:
            self._file.flush()
        except OSError:
            self.gone = True

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class HangupSafeDriver(LinuxDriver):
    """LinuxDriver whose output tolerates a vanished tty and whose input reports a hangup."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.output = TolerantOutput(sys.__stderr__)
        self._file = self.output

    def terminal_gone(self) -> None:
        """Stop reading and writing the terminal (called on SIGHUP)."""
        self.output.gone = True
        self.exit_event.set()

    def _run_input_thread(self) -> None:
        try:
            self.run_input_thread()
        except OSError as exc:
            if exc.errno in _GONE:
                self.output.gone = True
                self._app.call_later(getattr(self._app, "leave_cleanly", self._app.exit), "hangup")
                return
            self._panic()
        except BaseException:
            self._panic()

    def _panic(self) -> None:
        import rich.traceback

        self._app.call_later(self._app.panic, rich.traceback.Traceback())
