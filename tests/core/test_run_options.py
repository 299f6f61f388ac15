"""The console's choices as `xendomains` options: one class builds them and reads them back."""

from __future__ import annotations

import pytest

from xdcore.cli import _parse
from xdcore.config import Config
from xdcore.pipeline.control import RunControl
from xdcore.run_options import RunOptions, RunOptionsError


def parsed(opts: RunOptions, *rest: str) -> RunOptions:
    ns = _parse([*opts.argv(), *rest])
    return RunOptions.from_args(stage=ns.stage, disabled=ns.disable_stage, leave_out=ns.leave_out,
                                migrate_target=ns.migrate_target, on_hangup=ns.on_hangup, place=ns.place)


@pytest.mark.parametrize("opts", [
    RunOptions(),
    RunOptions(stage="save"),
    RunOptions(disabled=("migrate", "shutdown_all"), leave_out=("db 01", "web"), on_hangup="stop"),
    RunOptions(migrate_target=("--live", "host 2"), stage="migrate"),
    RunOptions(place=(("web01", "xen03"), ("db", "xen04")), leave_out=("mail",)),
])
def test_options_survive_the_command_line_unchanged(opts):
    assert parsed(opts, "stop", "web01") == opts


def test_one_stage_turns_every_other_stage_and_shutdown_all_off():
    ctl = RunControl(2)
    RunOptions(stage="save", leave_out=("db",), on_hangup="stop").apply(ctl)
    assert ctl.disabled_stages == {"sysrq", "migrate", "shutdown", "shutdown_all"}
    assert ctl.skipped_guests == {"db"} and ctl.on_hangup == "stop"


def test_leaving_a_guest_out_turns_shutdown_all_off():
    assert RunOptions(leave_out=("db",)).forced_off() == {"shutdown_all"}


def test_shutting_down_explicitly_uses_default_options_when_the_config_has_none():
    cfg = Config(shutdown=())
    assert RunOptions(stage="shutdown").config(cfg).shutdown == Config().shutdown
    assert RunOptions(migrate_target=("h2",)).config(cfg).migrate == ("h2",)


@pytest.mark.parametrize("kw, words", [
    ({"stage": "sysrq"}, "--stage takes one of migrate, save, shutdown"),
    ({"disabled": ("select",)}, "required"),
    ({"disabled": ("nope",)}, "unknown stage"),
    ({"on_hangup": "maybe"}, "continue or stop"),
    ({"place": (("web", ""),)}, "--place web=: expected GUEST=TARGET"),
    ({"place": (("web", "xen02"), ("web", "xen03"))}, "--place web=xen03: web is already placed on xen02"),
    ({"place": (("web", "xen02"),), "leave_out": ("web",)}, "web is left out of this run"),
    ({"place": (("web", "xen02"),), "disabled": ("migrate",)}, "migrate is turned off"),
    ({"place": (("web", "xen02"),), "stage": "save"}, "migrate is turned off"),
    ({"place": (("web", "xen02"),), "migrate_target": ("h2",)}, "contradict"),
])
def test_bad_options_are_refused_naming_what(kw, words):
    with pytest.raises(RunOptionsError, match=words):
        RunOptions(**kw)


def test_one_stage_needs_a_stop_of_named_guests():
    with pytest.raises(RunOptionsError, match="named guests"):
        RunOptions(stage="save").check_guests("stop", [])
    with pytest.raises(RunOptionsError):
        RunOptions(stage="save").check_guests("start", ["web01"])
    RunOptions(stage="save").check_guests("stop", ["web01"])


def test_placements_are_read_from_guest_equals_target_and_reach_the_runs_control():
    opts = RunOptions.from_args(place=["web01=xen03", " db = xen04 ", "web01=xen03"])
    assert opts.place == (("web01", "xen03"), ("db", "xen04"))
    ctl = RunControl(2)
    opts.apply(ctl)
    assert ctl.placements == {"web01": "xen03", "db": "xen04"}
    with pytest.raises(RunOptionsError, match="--place web01: expected GUEST=TARGET"):
        RunOptions.from_args(place=["web01"])
    with pytest.raises(RunOptionsError, match="an option of stop"):
        opts.check_guests("start", [])
