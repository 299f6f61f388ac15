"""A stand-in for `systemd-run` (system manager, transient service) where no systemd runs.

    python fake_systemd_run.py [OPTIONS...] COMMAND [ARGS...]     (installed on PATH as `systemd-run`)

It reads its command line the way systemd 252's systemd-run does (src/run/run.c,
getopt_long with "+": options end at the first non-option word or at "--";
long options take "--opt=VALUE" or "--opt VALUE"; an unknown option, a
property that is no assignment or names no known property, an invalid unit
name or a missing command is an error: message on stderr, exit 1), resolves
the command on its own PATH as systemd-run does, and then does what the
system manager would do for `Type=exec`: runs the command in a clean
environment (the manager's PATH plus --setenv), with / as its working
directory, stdin /dev/null, stdout and stderr to the "journal", in a session
of its own and nobody's child (double fork) — and returns only once the
command was executed (exec failed: exit 1, as "Job for … failed").

What it was asked is recorded for the tests in $FAKE_SYSTEMD_DIR:
`units/NAME.service.json` (argv, unit, properties, environment, pid),
`units/NAME.service.json.result` once the command ended (its exit code; read
by the stand-in `systemctl`, tests/tui/fake_systemctl.py) and
`journal/NAME.service.log`.  A unit whose name is taken by a running one is
refused ("Unit … already exists"), as systemd does.

It is not systemd: no cgroup, no KillMode enforcement, no D-Bus.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

#: the manager's environment on Debian 12 (systemd's default PATH for system services)
MANAGER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

#: systemd-run's options (systemd 252): long name -> takes an argument
LONG = {
    "help": False, "version": False, "user": False, "system": False, "scope": False, "unit": True,
    "description": True, "slice": True, "slice-inherit": False, "remain-after-exit": False,
    "send-sighup": False, "host": True, "machine": True, "service-type": True, "wait": False, "uid": True,
    "gid": True, "nice": True, "setenv": True, "tty": False, "pty": False, "pipe": False, "quiet": False,
    "on-active": True, "on-boot": True, "on-startup": True, "on-unit-active": True, "on-unit-inactive": True,
    "on-calendar": True, "on-timezone-change": False, "on-clock-change": False, "timer-property": True,
    "path-property": True, "socket-property": True, "no-block": False, "no-ask-password": False,
    "collect": False, "working-directory": True, "same-dir": False, "shell": False, "property": True,
}
#: short options: letter -> (long name)
SHORT = {"h": "help", "r": "remain-after-exit", "H": "host", "M": "machine", "E": "setenv", "p": "property",
         "t": "pty", "P": "pipe", "q": "quiet", "G": "collect", "d": "same-dir", "u": "unit", "S": "shell"}

#: service properties this stand-in knows (systemd knows many more; an unknown one is refused here as there)
PROPERTIES = {
    "Type": {"simple", "exec", "forking", "oneshot", "dbus", "notify", "notify-reload", "idle"},
    "KillMode": {"control-group", "process", "mixed", "none"},
    "Restart": {"no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"},
    "RemainAfterExit": {"yes", "no", "true", "false", "1", "0"},
    "TimeoutStopSec": None, "TimeoutStartSec": None, "KillSignal": None, "Nice": None, "WorkingDirectory": None,
    "User": None, "Group": None, "Environment": None, "StandardOutput": None, "StandardError": None,
}

UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.service")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Refused(Exception):
    pass


def getopt(prog: str, args: list[str], long: dict[str, bool], short: dict[str, str],
           permute: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """(options: long name -> values in order, the other words) as glibc's getopt_long reads them: with
    "+" (permute=False) options end at the first non-option word, else they may come anywhere."""
    opts: dict[str, list[str]] = {}
    words: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if name not in long:
                raise Refused(f"{prog}: unrecognized option '{a}'")
            if long[name]:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise Refused(f"{prog}: option '--{name}' requires an argument")
                    value = args[i]
            elif eq:
                raise Refused(f"{prog}: option '--{name}' doesn't allow an argument")
            opts.setdefault(name, []).append(value)
        elif a.startswith("-") and a != "-":
            j = 1
            while j < len(a):
                letter = a[j]
                name = short.get(letter)
                if name is None:
                    raise Refused(f"{prog}: invalid option -- '{letter}'")
                if long[name]:
                    value = a[j + 1:]
                    if not value:
                        i += 1
                        if i >= len(args):
                            raise Refused(f"{prog}: option requires an argument -- '{letter}'")
                        value = args[i]
                    opts.setdefault(name, []).append(value)
                    break
                opts.setdefault(name, []).append("")
                j += 1
        elif permute:
            words.append(a)
        else:
            break  # "+": the first non-option word is the command; everything after it is its own
        i += 1
    return opts, words + args[i:]


def parse(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(options: long name -> values in order, command) as systemd-run's getopt_long("+…") reads them."""
    return getopt("systemd-run", args, LONG, SHORT)


def check(opts: dict[str, list[str]], command: list[str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """(unit, properties, environment) or Refused with systemd-run's words."""
    for unsupported in ("user", "scope", "host", "machine", "pty", "pipe", "wait", "shell"):
        if unsupported in opts:
            raise Refused(f"fake systemd-run: --{unsupported} is not simulated")
    if not command:
        raise Refused("Command line to execute required.")
    unit = (opts.get("unit") or [""])[-1]
    if not unit:
        raise Refused("fake systemd-run: a unit name is required here (systemd would make one up)")
    if "." not in unit.rsplit("@", 1)[-1]:
        unit += ".service"
    if len(unit) > 255 or not UNIT_RE.fullmatch(unit):
        raise Refused(f"Failed to mangle unit name: Invalid argument ({unit!r})")
    props: dict[str, str] = {}
    for p in opts.get("property", []):
        key, eq, value = p.partition("=")
        if not eq:
            raise Refused(f"Not an assignment: {p}")
        if key not in PROPERTIES:
            raise Refused(f"Unknown assignment: {p}")
        allowed = PROPERTIES[key]
        if allowed is not None and value not in allowed:
            raise Refused(f"Failed to parse {key} value {value}")
        props[key] = value
    env = dict(MANAGER_ENV)
    for e in opts.get("setenv", []):
        name, eq, value = e.partition("=")
        if not ENV_NAME_RE.fullmatch(name):
            raise Refused(f"Invalid environment assignment: {e}")
        env[name] = value if eq else os.environ.get(name, "")
    return unit, props, env


def alive(pid: int) -> bool:
    """The unit's command still runs (a zombie nobody reaped has ended: its unit would be gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def state_dir(prog: str) -> str:
    """$FAKE_SYSTEMD_DIR, where the stand-ins keep what systemd would know ("" and said when unset)."""
    state = os.environ.get("FAKE_SYSTEMD_DIR", "")
    if not state:
        sys.stderr.write(f"fake {prog}: FAKE_SYSTEMD_DIR is not set\n")
    return state


def main(args: list[str]) -> int:
    state = state_dir("systemd-run")
    if not state:
        return 1
    try:
        opts, command = parse(args)
        unit, props, env = check(opts, command)
        exe = command[0] if "/" in command[0] else shutil.which(command[0])  # resolved here, as systemd-run does
        if exe is None:
            raise Refused(f"Failed to find executable {command[0]}: No such file or directory")
        record = os.path.join(state, "units", unit + ".json")
        if os.path.exists(record):
            with open(record) as fh:
                old = json.load(fh)
            if alive(old["pid"]):
                raise Refused(f"Failed to start transient service unit: Unit {unit} already exists.")
    except Refused as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    os.makedirs(os.path.join(state, "units"), exist_ok=True)
    os.makedirs(os.path.join(state, "journal"), exist_ok=True)
    journal = os.path.join(state, "journal", unit + ".log")
    if os.path.exists(record + ".result"):  # the name's last unit ended: a new one starts afresh
        os.remove(record + ".result")
    argv = [exe, *command[1:]]
    cwd = (opts.get("working-directory") or ["/"])[-1]
    rd, wr = os.pipe()  # the command's pid, then EOF once it was executed (close-on-exec), or the errno
    os.set_inheritable(wr, False)
    first = os.fork()
    if first == 0:
        os.close(rd)
        if os.fork():
            os._exit(0)
        os.setsid()  # the "manager": nobody's child, no terminal; it reaps the command and keeps its result
        service = os.fork()
        if service == 0:
            os.setsid()  # the service's main process leads a session of its own, as under the manager
            try:
                os.write(wr, f"{os.getpid()}\n".encode())
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            except OSError as exc:
                os.write(wr, f"failed {exc.errno}\n".encode())
            os._exit(127)
        os.close(wr)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # let go of systemd-run's caller's pipes
            os.dup2(null, fd)
        _, status = os.waitpid(service, 0)
        with open(record + ".result.tmp", "w") as fh:  # what systemd's Result= and ExecMainStatus= tell
            json.dump({"pid": service, "code": os.waitstatus_to_exitcode(status)}, fh)
        os.replace(record + ".result.tmp", record + ".result")
        os._exit(0)
    os.close(wr)
    os.waitpid(first, 0)
    said = b""
    while chunk := os.read(rd, 64):
        said += chunk
    os.close(rd)
    lines = said.decode().split()
    if not lines or "failed" in lines:
        sys.stderr.write(f"Job for {unit} failed because of unavailable resources or another system error "
                         f"({' '.join(lines[1:]) or 'no exec'}).\n")
        return 1
    pid = int(lines[0])
    with open(record + ".tmp", "w") as fh:
        json.dump({"argv": args, "unit": unit, "command": argv, "properties": props, "environment": env,
                   "description": (opts.get("description") or [""])[-1], "collect": "collect" in opts,
                   "pid": pid}, fh, indent=1)
    os.replace(record + ".tmp", record)
    if "quiet" not in opts:
        sys.stderr.write(f"Running as unit: {unit}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
