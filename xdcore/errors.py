"""The one exception tree of xdcore.

Foreign errors (OSError from a spawn, a JSON decode error, a non-zero exit of
`xl`) are translated at the edge where they happen into one of these, each
carrying a human title and, for toolstack failures, the command that failed::

    XendomainsError
     ├── ConfigError            a bad value in the config file (FILE:LINE: KEY: …)
     ├── ConfigMissing          no config file found in the search order
     │    └── ConfigUnreadable  it exists but cannot be read (directory, FIFO, I/O error, too large)
     ├── LockError              the lock file could not be taken or is unsafe
     │    └── LockUnusable      the lock path is no regular file, or its directory cannot be made
     ├── UnsafePathError        a path would leave the directory it must stay in
     ├── GuestLeftSuspended     a save died after suspending its guest: not running, not saved
     ├── UnknownGuest           a guest named on the command line is not on this host
     ├── PlacementRefused       `--place GUEST=TARGET` cannot be honoured (no such target, no room, …)
     └── ToolstackError
          ├── ToolstackMissing  neither xl nor xm on PATH (or the chosen one absent)
          ├── ParseError        toolstack output we could not read (what, where)
          └── CommandFailed     a command exited non-zero (argv, rc, stderr)
               ├── CommandTimedOut   killed by the watchdog (process tree)
               └── CommandCancelled  killed because the run was aborted
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class XendomainsError(Exception):
    """Base of every error xdcore raises on purpose."""

    @property
    def title(self) -> str:
        return str(self)


class ConfigError(XendomainsError):
    """A config value that does not parse: reported as FILE:LINE: KEY: expected …, got '…'."""

    def __init__(self, file: str, line: int, key: str, expected: str, got: str):
        self.file, self.line, self.key, self.expected, self.got = file, line, key, expected, got
        super().__init__(f"{file}:{line}: {key}: expected {expected}, got {got!r}")

    def __str__(self) -> str:  # keep the quoting of the contract: got 'soon'
        return f"{self.file}:{self.line}: {self.key}: expected {self.expected}, got '{self.got}'"


class ConfigMissing(XendomainsError):
    """No config file in the search order (or the one named does not exist)."""


class ConfigUnreadable(ConfigMissing):
    """The config file exists but cannot be read as one: a directory, a FIFO, an I/O error, too large.

    Unlike a missing file this is a broken host, never a choice: `stop` evacuates
    with the documented defaults (and says so loudly), every other verb refuses.
    """


class LockError(XendomainsError):
    """The lock file could not be created, opened safely or flocked."""


class LockUnusable(LockError):
    """The lock path cannot hold a lock: a directory or FIFO sits there, or its directory cannot be made.

    Not a run in progress: `stop` evacuates without the lock (and says so), `start` refuses.
    """


class UnsafePathError(XendomainsError):
    """A computed path would escape the directory it must stay inside."""


class GuestLeftSuspended(XendomainsError):
    """`xl save` died after the suspend point: the guest is suspended (`---ss-`), neither running nor saved."""


class UnknownGuest(XendomainsError):
    """Guests named on the command line that are not on this host (as `xl`: "no such domain")."""

    def __init__(self, names: Sequence[str], known: Sequence[str]):
        self.names, self.known = tuple(names), tuple(known)
        listed = ", ".join(self.known[:20]) + (", …" if len(self.known) > 20 else "")
        super().__init__(f"no such guest: {', '.join(self.names)}"
                         f" (guests on this host: {listed or 'none'}); nothing done")


class PlacementRefused(XendomainsError):
    """The operator's placements (`--place GUEST=TARGET`) that cannot be honoured, each with why; nothing done."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems) + "; nothing done")


class ToolstackError(XendomainsError):
    """Anything that went wrong talking to xl / xm."""


class ToolstackMissing(ToolstackError):
    """The toolstack executable is not on PATH."""


class ParseError(ToolstackError):
    """Output of the toolstack that we could not understand."""

    def __init__(self, what: str, where: str, detail: str = ""):
        self.what, self.where, self.detail = what, where, detail
        msg = f"cannot parse {what} ({where})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class CommandFailed(ToolstackError):
    """A toolstack command exited non-zero; carries argv, exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str = "", title: str = ""):
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self._title = title or self.default_title()
        super().__init__(self._message())

    def default_title(self) -> str:
        return f"{' '.join(self.argv[:2])} failed (exit {self.returncode})"

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def title(self) -> str:
        return self._title

    def _message(self) -> str:
        last = self.stderr.strip().splitlines()[-1] if self.stderr.strip() else ""
        msg = f"{self._title}: {self.command}"
        return f"{msg}: {last}" if last else msg


class CommandTimedOut(CommandFailed):
    """The watchdog killed the command (and its whole process tree)."""

    def __init__(self, argv: Sequence[str], timeout: float, stderr: str = ""):
        self.timeout = timeout
        super().__init__(argv, None, stderr, title=f"{' '.join(argv[:2])} killed by the watchdog after {timeout:g}s")


class CommandCancelled(CommandFailed):
    """The command was killed because the run was aborted or the stage skipped."""

    def __init__(self, argv: Sequence[str], stderr: str = ""):
        super().__init__(argv, None, stderr, title=f"{' '.join(argv[:2])} cancelled")
