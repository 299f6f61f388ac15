"""What a run the console starts will do: the operator's choices as `xendomains` options, and the launch."""

from __future__ import annotations

import os

from tests.core.fakes import FakeToolstack
from tests.support import wait_for
from xdcore.config import Config
from xdcore.events import EventBus
from xdcore.run_options import RunOptions
from xdtui.follow import pid_alive
from xdtui.host import HostContext
from xdtui.launch import launch, run_argv, unit_name
from xdtui.runs import RunPrefs, RunRequest, compute_plan


def test_one_stage_now_becomes_a_stop_of_that_stage_for_the_named_guests():
    prefs = RunPrefs(disabled={"save", "sysrq"}, migrate_target=("--live", "host2"), skipped_guests={"db"})
    opts = RunRequest("stop", only=("web01",), stage="save").options(prefs, on_hangup="stop")
    assert opts == RunOptions(stage="save", disabled=("sysrq",), migrate_target=("--live", "host2"), on_hangup="stop")
    assert opts.forced_off() == {"sysrq", "migrate", "shutdown", "shutdown_all"}


def test_an_evacuation_carries_the_guests_left_out_and_the_stages_turned_off():
    opts = RunRequest("stop").options(RunPrefs(disabled={"migrate"}, skipped_guests={"db", "ci"}))
    assert opts.leave_out == ("ci", "db") and opts.disabled == ("migrate",) and opts.on_hangup == "continue"


def test_the_migration_target_override_enables_migration_for_the_run():
    cfg = Config(migrate=())
    prefs = RunPrefs(migrate_target=("--live", "host2"))
    assert prefs.stage_state(cfg, "migrate") == "on"
    assert RunPrefs().stage_state(cfg, "migrate") == "n/a"


async def test_the_plan_leaves_out_guests_skipped_before_the_run(tmp_path):
    ts = FakeToolstack()
    ts.add("web01")
    ts.add("web02")
    cfg = Config(save_dir=tmp_path / "save", auto_dir=None, progress=tmp_path / "p.jsonl", lockfile=tmp_path / "lock")
    plan = await compute_plan(HostContext(cfg, ts), RunPrefs(skipped_guests={"web02"}), RunRequest("stop"))
    assert [g.guest for g in plan.guests] == ["web01"]
    assert ("web02", "left out by the operator") in plan.skipped


def test_the_launched_command_is_xendomains_with_the_config_the_options_and_the_guests(tmp_path):
    host = HostContext(Config(path=tmp_path / "x.conf", progress=tmp_path / "p.jsonl"), FakeToolstack())
    argv = run_argv(host, "stop", ["web01"], RunOptions(stage="save"), parallel=3)
    assert argv[0].endswith("xendomains")
    assert argv[1:] == ["--config", str(tmp_path / "x.conf"), "--parallel", "3", "--stage", "save",
                        "--on-hangup", "continue", "stop", "web01"]
    assert unit_name("stop", None, 0).startswith("xendomains-evacuate-")
    assert unit_name("stop", "save", 0).startswith("xendomains-save-")


def test_a_launched_run_is_in_a_session_of_its_own_and_not_the_consoles_child(tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "bin" / "xendomains"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\necho \"$@\" > {marker}.args\nps -o sid= -p $$ > {marker}\nsleep 1\n")
    script.chmod(0o755)
    host = HostContext(Config(path=None, progress=tmp_path / "run" / "p.jsonl"), FakeToolstack(),
                       run_env={"PATH": f"{script.parent}:{os.environ['PATH']}"})
    import xdtui.launch as L

    real = L.xendomains_exe
    L.xendomains_exe = lambda: "xendomains"
    try:
        la = launch(host, "stop", ["web01"], RunOptions())
    finally:
        L.xendomains_exe = real
    assert la.pid and la.how == f"pid {la.pid}" and la.unit == ""
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the detached run")
    assert int(marker.read_text()) == la.pid  # its own session: the console's hangup never reaches it
    assert os.getsid(0) != la.pid
    assert (marker.parent / "ran.args").read_text().split() == ["--on-hangup", "continue", "stop", "web01"]
    assert la.log == tmp_path / "run" / "console-runs.log" and "xendomains" in la.log.read_text()
    wait_for(lambda: not pid_alive(la.pid) or _zombie(la.pid), what="the run to end")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_the_host_context_builds_services_on_one_toolstack(tmp_path):
    ts = FakeToolstack()
    host = HostContext(Config(progress=tmp_path / "p.jsonl"), ts)
    assert host.service(EventBus()).ts is ts
