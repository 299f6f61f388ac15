"""What a run the console starts will do: the operator's choices turned into config and RunControl."""

from __future__ import annotations

from tests.core.fakes import FakeToolstack
from xdcore.config import Config
from xdcore.events import EventBus
from xdtui.host import HostContext
from xdtui.runs import RunPrefs, RunRequest, compute_plan, forced_off, make_control, run_config


def test_a_run_for_some_guests_never_shuts_all_the_others_down():
    assert "shutdown_all" in forced_off(RunRequest("stop", only=("web01",)))
    assert "shutdown_all" not in forced_off(RunRequest("stop"))


def test_one_stage_now_turns_every_other_guest_stage_off():
    off = forced_off(RunRequest("stop", only=("web01",), stage="migrate"))
    assert off == {"sysrq", "save", "shutdown", "shutdown_all"}


def test_the_migration_target_override_enables_migration_for_the_run():
    cfg = Config(migrate=())
    prefs = RunPrefs(migrate_target=("--live", "host2"))
    assert run_config(cfg, prefs, RunRequest("stop")).migrate == ("--live", "host2")
    assert prefs.stage_state(cfg, "migrate") == "on"
    assert RunPrefs().stage_state(cfg, "migrate") == "n/a"


def test_shut_down_selected_uses_default_options_when_the_config_has_none():
    assert run_config(Config(shutdown=()), RunPrefs(), RunRequest("stop", only=("a",), stage="shutdown")).shutdown


def test_operator_choices_reach_the_run_control_without_events():
    events = []
    control = make_control(Config(parallel=3), RunPrefs(disabled={"save"}), RunRequest("stop"), events.append)
    assert control.disabled_stages == {"save"} and control.parallel == 3 and not events


async def test_the_plan_leaves_out_guests_skipped_before_the_run(tmp_path):
    ts = FakeToolstack()
    ts.add("web01")
    ts.add("web02")
    cfg = Config(save_dir=tmp_path / "save", auto_dir=None, progress=tmp_path / "p.jsonl", lockfile=tmp_path / "lock")
    plan = await compute_plan(HostContext(cfg, ts), RunPrefs(skipped_guests={"web02"}), RunRequest("stop"))
    assert [g.guest for g in plan.guests] == ["web01"]
    assert ("web02", "skipped by operator") in plan.skipped


def test_the_host_context_builds_services_on_one_toolstack(tmp_path):
    ts = FakeToolstack()
    host = HostContext(Config(progress=tmp_path / "p.jsonl"), ts)
    assert host.service(EventBus()).ts is ts
