"""Where systemd runs, the console starts its runs as transient units (`systemd-run --unit=xendomains-…`).

This machine (and CI) has no running systemd, so `systemd-run` here is a stand-in
(tests/tui/fake_systemd_run.py): it reads the command line as systemd-run 252 does
and refuses what systemd-run refuses, then starts the command as the manager
would for `Type=exec` — clean environment plus --setenv, /, no terminal, a
session of its own, nobody's child.  Real systemd is not exercised: cgroups,
KillMode and the journal are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import xdtui.launch as L
from xdtui.app import make_app
from xdtui.providers import Providers

from tests.support import wait_for as wait_until

from .conftest import set_latency, wait_for
from .test_pilot import SIZE, confirm_plan, guests_on, ready, run_to_end, steering

from . import fake_systemd_run as F

FAKE = Path(F.__file__)


@pytest.fixture
def systemd(tmp_path, monkeypatch) -> Path:
    """`systemd-run` on PATH (the stand-in), /run/systemd/system "present", root: the console's systemd case."""
    bin_dir = tmp_path / "systemd-bin"
    bin_dir.mkdir()
    exe = bin_dir / "systemd-run"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(0o755)
    state = tmp_path / "systemd-state"
    state.mkdir()
    run_dir = tmp_path / "run-systemd-system"
    run_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_DIR", str(state))
    monkeypatch.delenv("XDTUI_NO_SYSTEMD", raising=False)
    monkeypatch.setattr(L, "SYSTEMD_DIR", run_dir)
    monkeypatch.setattr(L, "_root", lambda: True)
    return state


def fake(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FAKE), *args], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, FAKE_SYSTEMD_DIR=str(state)))


def unit_record(state: Path, unit: str) -> dict:
    return json.loads((state / "units" / f"{unit}.json").read_text())


@pytest.mark.parametrize("args, says", [
    (["--unit=evacuate/now", "--", "/bin/true"], "Invalid argument"),
    (["--unit=x", "--property=KillMode=gently", "--", "/bin/true"], "Failed to parse KillMode"),
    (["--unit=x", "--property=Frobnicate=1", "/bin/true"], "Unknown assignment: Frobnicate=1"),
    (["--unit=x", "-p", "KillMode", "/bin/true"], "Not an assignment: KillMode"),
    (["--unit=x", "--collect"], "Command line to execute required."),
    (["--unit=x", "--frobnicate", "/bin/true"], "unrecognized option '--frobnicate'"),
    (["--unit=x", "--setenv=2PATH=/bin", "/bin/true"], "Invalid environment assignment"),
    (["--unit=x", "no-such-command-anywhere"], "Failed to find executable no-such-command-anywhere"),
])
def test_the_stand_in_refuses_what_systemd_run_refuses(tmp_path, args, says):
    done = fake(tmp_path, *args)
    assert done.returncode == 1 and says in done.stderr
    assert not (tmp_path / "units").exists()  # nothing was started


def test_options_end_at_the_command_and_the_command_runs_detached_in_the_managers_environment(tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "probe"
    script.write_text(f"#!/bin/sh\n{{ echo \"$@\"; pwd; echo \"PATH=$PATH X=$X HOME=${{HOME-unset}}\"; "
                      f"ps -o sid= -p $$; }} > {marker}.tmp && mv {marker}.tmp {marker}\n")
    script.chmod(0o755)
    done = fake(tmp_path, "-u", "probe-1", "-q", "-E", "X=1", str(script), "--unit=other", "-q")
    assert done.returncode == 0, done.stderr
    rec = unit_record(tmp_path, "probe-1.service")  # ".service" added to a name without a suffix
    assert rec["command"] == [str(script), "--unit=other", "-q"]  # after the command, words are the command's
    wait_until(lambda: marker.exists(), what="the unit's command")
    args, cwd, env, sid = marker.read_text().splitlines()
    assert args == "--unit=other -q" and cwd == "/"
    assert env == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin X=1 HOME=unset"
    assert int(sid) == rec["pid"]  # a session of its own
    wait_until(lambda: not F.alive(rec["pid"]), what="the unit's command to end")
    again = fake(tmp_path, "--unit=probe-1", "/bin/sleep", "5")  # the name is free again (probe-1 ended) ...
    assert again.returncode == 0, again.stderr
    taken = fake(tmp_path, "--unit=probe-1", "/bin/true")  # ... but not while its command runs
    assert taken.returncode == 1 and "Unit probe-1.service already exists" in taken.stderr
    os.kill(unit_record(tmp_path, "probe-1.service")["pid"], 9)


def test_the_consoles_systemd_run_command_line_is_one_systemd_run_accepts(tmp_path):
    unit = L.unit_name("stop", None, 0)
    argv = ["/usr/sbin/xendomains", "--config", "/etc/default/xendomains", "--on-hangup", "continue", "stop"]
    opts, command = F.parse(L.systemd_run_argv(unit, "stop", argv, {"XENDOMAINS_SYSLOG": "no"})[1:])
    name, props, env = F.check(opts, command)
    assert command == argv
    assert name == unit + ".service" and name.startswith("xendomains-evacuate-19700101-")
    assert props == {"Type": "exec", "KillMode": "process"}
    assert env["XENDOMAINS_SYSLOG"] == "no" and "collect" in opts and "quiet" in opts
    assert F.parse(L.systemd_run_argv(L.unit_name("stop", "save", 0, demo=True), "stop", argv)[1:])[0]["unit"] \
        == ["xendomains-demo-save-19700101-000000"]


async def test_an_evacuation_started_from_the_console_runs_as_a_transient_unit_and_the_console_steers_it(demo, systemd):
    set_latency(demo.demo_dir, save=0.3)
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        await pilot.press("e")
        await confirm_plan(pilot, app)
        await wait_for(pilot, lambda: app.state.launched is not None, what="the launch")
        la = app.state.launched
        assert la.unit.startswith("xendomains-demo-evacuate-") and la.how == f"systemd unit {la.unit}"
        rec = unit_record(systemd, la.unit + ".service")
        # the console attaches to the run the unit started: its progress file, its control socket
        await wait_for(pilot, lambda: app.state.own_run and screen.board_state.pid == rec["pid"], what="the unit's run")
        await steering(pilot, app)
        run = psutil.Process(rec["pid"])
        assert run.ppid() != os.getpid() and os.getsid(rec["pid"]) == rec["pid"]  # nobody's child, its own session
        assert rec["properties"] == {"Type": "exec", "KillMode": "process"}
        assert set(rec["environment"]) == {"PATH", "LANG", *demo.run_env}  # a unit inherits nothing of ours
        assert rec["command"][0] == L.xendomains_exe() and rec["command"][-1] == "stop"
        await run_to_end(pilot, app, timeout=60)
        assert screen.board_state.exit_code == 1  # backup's save hangs in the demo host: suspended, said
    assert guests_on(demo.demo_dir) == {"(null)", "backup"}  # the zombie legacy-app, as xl lists it
    assert not (demo.cfg.progress.parent / "console-runs.log").exists()  # not the session-of-its-own fallback
    assert "stop: 10 saved, 1 suspended, 1 zombie" in (systemd / "journal" / f"{la.unit}.service.log").read_text()
