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

from xdcore.lock import RunLock, default_lock_path
from xdtui.widgets.event_log import EventLog

from . import fake_systemctl as C
from . import fake_systemd_run as F

FAKE = Path(F.__file__)
FAKE_CTL = Path(C.__file__)


@pytest.fixture
def systemd(tmp_path, monkeypatch) -> Path:
    """`systemd-run` and `systemctl` on PATH (the stand-ins), /run/systemd/system "present", root: the console's
    systemd case."""
    bin_dir = tmp_path / "systemd-bin"
    bin_dir.mkdir()
    for name, script in (("systemd-run", FAKE), ("systemctl", FAKE_CTL)):
        exe = bin_dir / name
        exe.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
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


def ctl(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FAKE_CTL), *args], capture_output=True, text=True, timeout=30,
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


def test_the_systemctl_stand_in_tells_a_units_life_as_systemctl_252_prints_it(tmp_path):
    assert fake(tmp_path, "--unit=held", "--", "/bin/sleep", "600").returncode == 0
    pid = unit_record(tmp_path, "held.service")["pid"]
    # options after the verb (getopt permutes), a comma list, -P: systemd's order, not the order asked
    shown = ctl(tmp_path, "show", "held", "-p", "ExecMainPID,ActiveState", "--property=SubState")
    assert shown.returncode == 0 and shown.stdout == f"ActiveState=active\nSubState=running\nExecMainPID={pid}\n"
    assert ctl(tmp_path, "-P", "ActiveState", "show", "held.service").stdout == "active\n"
    assert (ctl(tmp_path, "is-active", "held").returncode, ctl(tmp_path, "is-active", "-q", "held").stdout) == (0, "")
    unknown = ctl(tmp_path, "show", "-p", "LoadState,ActiveState", "nobody")  # systemd: exit 0 for an unknown unit
    assert (unknown.returncode, unknown.stdout) == (0, "LoadState=not-found\nActiveState=inactive\n")
    assert ctl(tmp_path, "is-active", "nobody").returncode == 3
    for args, says in ((["frob", "held"], "Unknown command verb 'frob'."), (["show", "--frob", "held"],
                       "unrecognized option '--frob'"), (["show", "held", "-p"], "requires an argument")):
        done = ctl(tmp_path, *args)
        assert done.returncode == 1 and says in done.stderr
    os.kill(pid, 9)
    wait_until(lambda: "failed" in ctl(tmp_path, "is-active", "held").stdout, what="the unit to fail")
    failed = ctl(tmp_path, "show", "-p", "ActiveState,SubState,Result,ExecMainPID", "held")
    assert failed.stdout == f"ActiveState=failed\nSubState=failed\nResult=signal\nExecMainPID={pid}\n"
    # a unit started with --collect is gone once it ended, failed or not, as systemd garbage-collects it
    assert fake(tmp_path, "--unit=short", "--collect", "--", "/bin/false").returncode == 0
    wait_until(lambda: (tmp_path / "units" / "short.service.json.result").exists(), what="the unit to end")
    assert ctl(tmp_path, "show", "-p", "LoadState,ActiveState", "short").stdout \
        == "LoadState=not-found\nActiveState=inactive\n"
    assert fake(tmp_path, "--unit=short", "--", "/bin/false").returncode == 0  # without --collect: failed
    wait_until(lambda: (tmp_path / "units" / "short.service.json.result").exists(), what="the unit to end")
    assert "Result=exit-code" in ctl(tmp_path, "show", "short").stdout


def test_the_console_reads_a_units_state_from_systemctl(systemd):
    assert fake(systemd, "--unit=held", "--", "/bin/sleep", "600").returncode == 0
    pid = unit_record(systemd, "held.service")["pid"]
    st = L.unit_state("held")
    assert (st.running, st.pid, st.words()) == (True, pid, f"unit held active, pid {pid}")
    os.kill(pid, 9)
    wait_until(lambda: not L.unit_state("held").running, what="the unit to fail")
    assert L.unit_state("held").words() == "unit held failed (signal)"
    assert L.unit_state("nobody").words() == "unit nobody is gone (ended or failed)"
    (systemd.parent / "systemd-bin" / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus: "
                                                              "Host is down' >&2; exit 1\n")
    with pytest.raises(L.LaunchError, match="Failed to connect to bus: Host is down"):
        L.unit_state("held")


def said(screen) -> list[str]:
    return [s.text for s in screen.query_one(EventLog)._said]


async def test_a_unit_waiting_for_the_lock_longer_than_the_limit_is_not_called_never_started(demo, systemd):
    lock = RunLock(default_lock_path(demo.cfg.lockfile))
    lock.acquire_for_stop(wait=0)  # another stop run holds the lock
    app = make_app(demo, Providers.frozen())
    app.state.launch_grace = 0.1  # the limit (15 s): looked at again and again while the run waits
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot, app)
            await pilot.press("e")
            await confirm_plan(pilot, app)
            await wait_for(pilot, lambda: screen.launch_checks >= 3, what="three looks at the waiting run")
            la = app.state.launched
            rec = unit_record(systemd, la.unit + ".service")
            assert la.pid == rec["pid"] and not app.state.own_run  # the unit's ExecMainPID is the run's pid
            waiting = [t for t in said(screen) if "not begun" in t]
            assert waiting == [f"the stop run has not begun yet: waiting (unit {la.unit} active, pid {rec['pid']}); "
                               "another run may hold the lock"]  # said once
            lock.release(remove=True)
            await wait_for(pilot, lambda: app.state.own_run and screen.board_state.pid == rec["pid"],
                           what="the run to take the lock and be recognised by its pid")
            await run_to_end(pilot, app, timeout=60)
            assert not [t for t in said(screen) if "never started" in t]
    finally:
        lock.release(remove=False)


async def test_a_unit_that_failed_before_its_run_began_is_said_never_to_have_started(demo, systemd, monkeypatch):
    monkeypatch.setattr(L, "xendomains_exe", lambda: "/bin/false")  # the unit's command fails at once
    app = make_app(demo, Providers.frozen())
    app.state.launch_grace = 0.1
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        await pilot.press("e")
        await confirm_plan(pilot, app)
        await wait_for(pilot, lambda: any("never started" in t for t in said(screen)), what="the verdict")
        la = app.state.launched
        assert [t for t in said(screen) if "never started" in t] == [
            f"the stop run never started: unit {la.unit} is gone (ended or failed); see journalctl -u {la.unit}"]
        assert not app.state.own_run and not screen.board_state.active
