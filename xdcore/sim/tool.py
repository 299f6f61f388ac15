"""Entry point of the `xl` / `xm` shims: ``python -m xdcore.sim.tool xl --state DIR ARGS…``.

Kept cheap to import (no asyncio, psutil or textual, and not even json,
re, dataclasses, typing or pathlib on the common commands' paths): benchmarks
spawn it hundreds of times, and the real xl it stands in for starts in a few
milliseconds.  The shims run it with `python -SE` (see testing.write_shims).
It runs one command generator with time.sleep, prints
what the command printed, exits with its code, and records state-changing
commands in the host's history.  SIGTERM/SIGINT run the command's abort
handlers (a save resumes its guest); SIGKILL cannot, and the next reader of
the state notices the dead pid instead.

Signals behave as for real xl: SIGPIPE (a write to stderr after its reader
is gone), SIGTERM and SIGHUP kill it outright — no cleanup runs, so a save
killed after the suspend point leaves its domain suspended (`---ss-`), as
observed on Xen 4.17.  Only SIGINT (Ctrl-C in a terminal) runs the abort
handlers.
"""

from __future__ import annotations

import os
import sys
import time

from . import host
from .runtime import Run, drive_sync
from .simerrors import SimExit

try:  # the C module signal.py wraps: signal.py builds enums at import, ~4 ms for every process
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

HISTORY_LIMIT = 500


def flavour_module(flavour: str):
    if flavour == "xm":
        from . import xmcmd

        return xmcmd
    from . import xlcmd

    return xlcmd


def record(state_dir, flavour: str, argv: list[str], rc: int | None, started: float, killed: bool = False) -> None:
    try:
        with host.transaction(state_dir) as st:
            entry = {"t": round(started, 3), "end": round(time.time(), 3), "argv": [flavour, *argv], "rc": rc}
            if killed:
                entry["killed"] = True
            st.history.append(entry)
            del st.history[:-HISTORY_LIMIT]
    except OSError:
        pass


def subcommand(flavour: str, argv: list[str]) -> str | None:
    mod = flavour_module(flavour)
    rest = [a for a in argv if not a.startswith("-")]
    return mod.lookup(rest[0]) if rest else None


def run_command(flavour: str, state_dir, argv: list[str], out: TextIO, err: TextIO) -> int:
    mod = flavour_module(flavour)
    run = Run(state_dir, flavour, out, err)
    started = time.time()
    if subcommand(flavour, argv) in mod.MUTATING:
        run.argv, run.started = [flavour, *argv], round(started, 3)
    gen = mod.main(run, list(argv))
    try:
        rc = drive_sync(gen, time.sleep)
    except SimExit as exc:
        if exc.stdout:
            run.stdout(exc.stdout)
        if exc.stderr:
            run.stderr(exc.stderr)
        rc = exc.code
    except BaseException:
        gen.close()
        run.run_aborts()
        raise
    if subcommand(flavour, argv) in mod.MUTATING:
        record(state_dir, flavour, argv, rc, started)
    return rc


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("xl", "xm"):
        sys.stderr.write("usage: python -m xdcore.sim.tool xl|xm [--state DIR] ARGS...\n")
        return 2
    flavour = args.pop(0)
    state_dir = os.environ.get("XDSIM_STATE")
    if args[:1] == ["--state"] and len(args) > 1:
        state_dir = args[1]
        args = args[2:]
    elif args and args[0].startswith("--state="):
        state_dir = args[0].split("=", 1)[1]
        args = args[1:]
    if not state_dir:
        sys.stderr.write(f"{flavour}: no simulator state: pass --state DIR or set XDSIM_STATE\n")
        return 1
    if not os.path.isdir(state_dir):
        sys.stderr.write(f"xencall: error: Could not obtain handle on privileged command interface: "
                         f"No such file or directory (no simulator state at {state_dir})\n"
                         "cannot init xl context\n")
        return 1
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # die as real xl dies: nothing resumed on the way out
    try:
        return run_command(flavour, state_dir, args, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
