"""Run a command detached from the console: `python -m xdtui.detach LOG -- ARGV…`.

Started by the console in a new session (`start_new_session=True`), this
process forks once more and exits, so the command it runs is nobody's
child: not the console's (it may die), not the SSH session's (the hangup
never reaches it), reparented to init.  The command's stdin is /dev/null,
its stdout and stderr go to LOG.  The one line printed on stdout is the
command's pid, for the console to follow.

Small and import-free on purpose: it runs between the console and the run.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m xdtui.detach LOG -- ARGV...\n")
        return 2
    log, cmd = argv[0], argv[2:]
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        return 0
    try:  # the detached child: a session of its own, no controlling terminal
        os.setsid()
    except OSError:
        pass
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        os.write(2, f"cannot run {cmd[0]}: {exc}\n".encode())
    os._exit(127)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
