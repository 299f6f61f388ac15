"""Starting a run: the console launches a headless `xendomains` and attaches to it.

The console never runs a pipeline itself.  A start, an evacuation or "run one
stage now" is `xendomains [--config FILE] [RUN OPTIONS] start|stop [GUEST…]`
(the options from `xdcore.run_options`), started detached so that it
outlives the console and its SSH session:

- under systemd (/run/systemd/system exists, we are root and `systemd-run`
  works) as a transient unit `xendomains-evacuate-…` / `xendomains-start-…`
  (`xendomains-demo-…` for the simulated host), so its output is in the
  journal and the login session's end never kills it.  The unit gets what
  the installed xendomains.service has for the same reason: `KillMode=process`
  (stopping the unit signals xendomains only, never an `xl save` in
  progress); `Type=exec`, so that systemd-run fails when the command cannot
  be started; the run's environment (a unit does not inherit ours) as
  `--setenv`;
- otherwise in a session of its own, twice forked (`xdtui.detach`), output to
  a log file beside the progress file.

Then the console follows the progress file and steers through the control
socket, like any other run.  No Textual here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xdcore.run_options import RunOptions

from .host import HostContext

SYSTEMD_DIR = Path("/run/systemd/system")


class LaunchError(Exception):
    """The run could not be started (the message says why, for a notice)."""


@dataclass(frozen=True)
class Launched:
    """A run started: `how` in words ("systemd unit xendomains-evacuate-…" / "pid 4242"), its log."""

    verb: str
    argv: tuple[str, ...]
    how: str
    on_hangup: str = "continue"
    unit: str = ""
    pid: int = 0
    log: Path | None = None

    def failure(self) -> str:
        """What the run wrote before it died (the end of its log), for a notice."""
        if self.log is None:
            return ""
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-3:])


def xendomains_exe() -> str:
    """The `xendomains` installed beside this interpreter (a venv), else the one on PATH."""
    here = Path(sys.executable).parent / "xendomains"
    if here.exists():
        return str(here)
    found = shutil.which("xendomains")
    return found or "xendomains"


def run_argv(host: HostContext, verb: str, guests: Sequence[str], opts: RunOptions, parallel: int | None) -> list[str]:
    argv = [xendomains_exe()]
    if host.cfg.path:
        argv += ["--config", str(host.cfg.path)]
    if parallel:
        argv += ["--parallel", str(parallel)]
    return argv + opts.argv() + [verb, *guests]


def unit_name(verb: str, stage: str | None, now: float | None = None, *, demo: bool = False) -> str:
    what = stage or ("evacuate" if verb == "stop" else verb)
    return f"xendomains-{'demo-' if demo else ''}{what}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


#: properties of every transient run unit (see the module docstring)
UNIT_PROPERTIES = ("Type=exec", "KillMode=process")


def systemd_run_argv(unit: str, verb: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """`systemd-run` starting `argv` as the transient service `unit`: every option before the command."""
    return (["systemd-run", f"--unit={unit}", "--collect", "--quiet",
             f"--description=xendomains {verb} started from the console"]
            + [f"--property={p}" for p in UNIT_PROPERTIES]
            + [f"--setenv={k}={v}" for k, v in sorted((env or {}).items())]
            + ["--", *argv])


#: ActiveState values of a unit that is still there (its command runs, starts or stops); see systemctl(1)
UNIT_RUNNING = frozenset({"active", "activating", "deactivating", "reloading", "refreshing"})
#: what the console asks systemd of a run's unit
UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "Result", "ExecMainPID")


@dataclass(frozen=True)
class UnitState:
    """What `systemctl show` says of a run's unit (an unknown or collected unit: not-found, inactive)."""

    unit: str
    load: str
    active: str
    sub: str
    result: str
    pid: int  # ExecMainPID: the run's own pid (0 before it ran)

    @property
    def running(self) -> bool:
        return self.active in UNIT_RUNNING

    def words(self) -> str:
        if self.running:
            return f"unit {self.unit} {self.active}" + (f", pid {self.pid}" if self.pid else "")
        if self.active == "failed":
            return f"unit {self.unit} failed ({self.result})"
        if self.load == "not-found":  # --collect: systemd forgets a unit once it ended, failed or not
            return f"unit {self.unit} is gone (ended or failed)"
        return f"unit {self.unit} {self.active} ({self.sub}, {self.result})"


def unit_state(unit: str, env: Mapping[str, str] | None = None) -> UnitState:
    """Ask systemd about `unit` (blocking: call through a thread); raises LaunchError when systemctl cannot tell.

    `systemctl show -p A,B UNIT` prints NAME=VALUE lines in systemd's own order, not the order asked
    (so no --value here); it exits 0 for a unit it does not know (LoadState=not-found).
    """
    env = os.environ if env is None else env
    exe = shutil.which("systemctl", path=env.get("PATH")) or "systemctl"
    try:
        done = subprocess.run([exe, "show", "-p", ",".join(UNIT_PROPS), "--", unit], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"systemctl: {exc}") from exc
    said = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "ActiveState" not in said:
        raise LaunchError((done.stderr.strip().splitlines() or [f"systemctl show: exit {done.returncode}"])[-1])
    pid = said.get("ExecMainPID", "0")
    return UnitState(unit, said.get("LoadState", ""), said["ActiveState"], said.get("SubState", ""),
                     said.get("Result", ""), int(pid) if pid.isdigit() else 0)


def _root() -> bool:
    return os.geteuid() == 0


def systemd_run_exe(env: Mapping[str, str] | None = None) -> str | None:
    """`systemd-run` on the console's PATH when runs should be transient systemd units, else None."""
    env = os.environ if env is None else env
    if env.get("XDTUI_NO_SYSTEMD") or not SYSTEMD_DIR.is_dir() or not _root():
        return None
    return shutil.which("systemd-run", path=env.get("PATH"))


def launch(host: HostContext, verb: str, guests: Sequence[str] = (), opts: RunOptions = RunOptions(),
           parallel: int | None = None, *, systemd: bool | None = None) -> Launched:
    """Start the run detached; raises LaunchError when it could not be started at all."""
    argv = run_argv(host, verb, guests, opts, parallel)
    env = dict(os.environ)
    env.update(host.run_env)
    systemd_run = systemd_run_exe() if systemd is None else ("systemd-run" if systemd else None)
    refused = ""
    if systemd_run:
        unit = unit_name(verb, opts.stage, demo=host.demo_dir is not None)
        cmd = systemd_run_argv(unit, verb, argv, host.run_env)
        try:  # in the console's environment: the run's own is given to the unit with --setenv
            done = subprocess.run([systemd_run, *cmd[1:]], capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            refused = str(exc)
        else:
            if done.returncode == 0:
                return Launched(verb, tuple(argv), f"systemd unit {unit}", opts.on_hangup, unit=unit)
            refused = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        # systemd is there but would not take it (no bus, not permitted): a session of our own, and say why
    log = host.cfg.progress.parent / "console-runs.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
    except OSError as exc:
        raise LaunchError(f"cannot write {log}: {exc.strerror or exc}") from exc
    try:
        done = subprocess.run([sys.executable, "-m", "xdtui.detach", str(log), "--", *argv], capture_output=True,
                              text=True, env=env, timeout=30, start_new_session=True, stdin=subprocess.DEVNULL,
                              cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"cannot start {argv[0]}: {exc}") from exc
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise LaunchError(f"cannot start {argv[0]}: {done.stderr.strip() or 'exit ' + str(done.returncode)}")
    pid = int(done.stdout.strip())
    how = f"pid {pid}" + (f"; systemd-run refused it: {refused}" if refused else "")
    return Launched(verb, tuple(argv), how, opts.on_hangup, pid=pid, log=log)


__all__ = ["UNIT_PROPERTIES", "LaunchError", "Launched", "UnitState", "launch", "unit_state", "run_argv", "systemd_run_argv", "systemd_run_exe",
           "unit_name", "xendomains_exe"]
