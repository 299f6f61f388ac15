"""Starting a run: the console launches a headless `xendomains` and attaches to it.

The console never runs a pipeline itself.  A start, an evacuation or "run one
stage now" is `xendomains [--config FILE] [RUN OPTIONS] start|stop [GUEST…]`
(the options from `xdcore.run_options`), started detached so that it
outlives the console and its SSH session:

- under systemd (/run/systemd/system exists, we are root and `systemd-run`
  works) as a transient unit `xendomains-evacuate-…` / `xendomains-start-…`,
  so its output is in the journal and the login session's end never kills it;
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


def unit_name(verb: str, stage: str | None, now: float | None = None) -> str:
    what = stage or ("evacuate" if verb == "stop" else verb)
    return f"xendomains-{what}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def systemd_usable(env: Mapping[str, str] | None = None) -> bool:
    """True when runs should be transient systemd units."""
    if env is not None and env.get("XDTUI_NO_SYSTEMD"):
        return False
    return SYSTEMD_DIR.is_dir() and os.geteuid() == 0 and shutil.which("systemd-run") is not None


def launch(host: HostContext, verb: str, guests: Sequence[str] = (), opts: RunOptions = RunOptions(),
           parallel: int | None = None, *, systemd: bool | None = None) -> Launched:
    """Start the run detached; raises LaunchError when it could not be started at all."""
    argv = run_argv(host, verb, guests, opts, parallel)
    env = dict(os.environ)
    env.update(host.run_env)
    if systemd is None:
        systemd = not host.run_env and systemd_usable(env)
    if systemd:
        unit = unit_name(verb, opts.stage)
        cmd = ["systemd-run", f"--unit={unit}", "--collect", "--quiet",
               f"--description=xendomains {verb} started from the console", "--", *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        if done.returncode == 0:
            return Launched(verb, tuple(argv), f"systemd unit {unit}", opts.on_hangup, unit=unit)
        # systemd is there but would not take it (no bus, not permitted): fall back to a session of our own
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
    return Launched(verb, tuple(argv), f"pid {pid}", opts.on_hangup, pid=pid, log=log)


__all__ = ["LaunchError", "Launched", "launch", "run_argv", "systemd_usable", "unit_name", "xendomains_exe"]
