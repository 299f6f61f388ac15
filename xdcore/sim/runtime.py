"""What a simulated xl/xm command runs in: output streams, waits, and option parsing.

Commands are generator functions: they `yield` the number of seconds they
want to wait (``HANG``, infinity, for a hang) and `return` the exit code.  The
process driver (`tool.py`) sleeps with time.sleep, the in-process toolstack
(`inprocess.py`) with asyncio.sleep; so both run the very same code and
show the very same behaviour.  No state lock is ever held across a yield.

A command that must undo something if it is killed (a save resumes its
guest) registers an abort handler; the drivers run them when the command
is cancelled, timed out or signalled.  A SIGKILLed process cannot, which
is what `host.apply_transitions` catches through the busy marker's pid.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing and collections cost every simulated xl process ~4 ms
    from collections.abc import Callable, Generator
    from typing import TextIO

    from .simerrors import SimExit

    Command = Generator[float, None, int]

HANG = float("inf")


class Run:
    """One invocation: where the state is, where output goes, who we are."""

    def __init__(self, state_dir: str | os.PathLike[str], flavour: str, out: TextIO, err: TextIO,
                 pid: int | None = None):
        self.state_dir = os.fspath(state_dir)
        self.flavour = flavour
        self.out = out
        self.err = err
        self.pid = os.getpid() if pid is None else pid
        self.aborts: list[Callable[[], None]] = []
        self.verbose = 0
        self.dryrun = False
        self.force = False
        #: the command line and when it started: kept with a busy domain, so that a command the
        #: watchdog kills (SIGKILL: no handler runs) still reaches the history, as "killed"
        self.argv: list[str] = []
        self.started = 0.0
        #: the command is being killed (the in-process driver's watchdog or cancellation: what SIGKILL is to
        #: real xl), not interrupted: abort handlers then leave what a dead xl leaves (a save: `---ss-`)
        self.killed = False

    def busy(self, op: str, **extra) -> dict:
        """The `busy` record of a domain this command works on."""
        return {"op": op, "pid": self.pid, "argv": self.argv, "t": self.started, **extra}

    def stdout(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def stderr(self, text: str) -> None:
        self.err.write(text)
        self.err.flush()

    def on_abort(self, fn: Callable[[], None]) -> Callable[[], None]:
        self.aborts.append(fn)
        return fn

    def done_with(self, fn: Callable[[], None]) -> None:
        if fn in self.aborts:
            self.aborts.remove(fn)

    def run_aborts(self) -> None:
        while self.aborts:
            fn = self.aborts.pop()
            try:
                fn()
            except Exception:  # best effort while dying
                pass


def getopt(args: list[str], short: str, longs: dict[str, tuple[str, bool]],
           unknown: Callable[[str], SimExit]) -> tuple[list[tuple[str, str]], list[str]]:
    """GNU getopt_long with argument permutation.

    `short` like "f:nq"; `longs` maps a long name to (the short key it acts as, takes an argument).
    `unknown(c)` builds the error for an unknown option character (c == "\\0" for a long one).
    """
    opts: list[tuple[str, str]] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            rest.extend(args[i:])
            break
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            match = [n for n in longs if n == name] or [n for n in longs if n.startswith(name)]
            if len(match) != 1:
                raise unknown("\0")
            key, takes = longs[match[0]]
            if takes and not eq:
                if i >= len(args):
                    raise unknown("\0")
                val = args[i]
                i += 1
            elif not takes and eq:
                raise unknown("\0")
            opts.append((key, val))
            continue
        if a.startswith("-") and a != "-":
            j = 1
            while j < len(a):
                c = a[j]
                j += 1
                pos = short.find(c)
                if pos < 0 or c == ":":
                    raise unknown(c)
                if short[pos + 1 : pos + 2] == ":":
                    if j < len(a):
                        val = a[j:]
                    elif i < len(args):
                        val = args[i]
                        i += 1
                    else:
                        raise unknown(c)
                    opts.append((c, val))
                    break
                opts.append((c, ""))
            continue
        rest.append(a)
    return opts, rest


def drive_sync(cmd: Command, sleep: Callable[[float], None]) -> int:
    """Run a command generator to completion, sleeping with `sleep`."""
    try:
        delay = next(cmd)
        while True:
            if delay == HANG:
                while True:
                    sleep(3600.0)
            if delay > 0:
                sleep(delay)
            delay = cmd.send(None)
    except StopIteration as stop:
        return int(stop.value or 0)
