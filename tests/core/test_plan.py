"""The room check of the save directory, with the free space injected (no filesystem needed).

`guests_without_room` is what both the plan and the stop run use, so the
stop does what the plan said; the last case shows that on the in-process
simulated host with the free space of the save directory patched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xdcore import plan as planmod
from xdcore.config import Config
from xdcore.events import EventBus, GuestFinished, StageStarted
from xdcore.model import Domain, DomainState
from xdcore.pipeline.control import RunControl
from xdcore.plan import IMAGE_OVERHEAD, guests_without_room, stop_plan
from xdcore.service import Service
from xdcore.sim.inprocess import SimToolstack
from xdcore.sim.testing import make_host

MIB = 1024 * 1024


def dom(domid: int, name: str, mem: int, flags: str = "-b----") -> Domain:
    return Domain(domid, name, memory_mib=mem, vcpus=1, state=DomainState.from_flags(flags))


def need(mem: int) -> int:
    return mem * MIB + IMAGE_OVERHEAD


CFG = Config(save_dir=Path("/nonexistent/save"))


def test_every_guest_fits_when_there_is_room_for_all():
    guests = [dom(1, "a", 1024), dom(2, "b", 2048)]
    assert guests_without_room(CFG, guests, free=need(1024) + need(2048)) == frozenset()


def test_the_guest_that_does_not_fit_after_the_earlier_ones_is_left_out():
    guests = [dom(1, "a", 1024), dom(2, "b", 2048)]
    assert guests_without_room(CFG, guests, free=need(1024) + need(2048) - 1) == {"b"}


def test_with_no_free_space_no_guest_has_room():
    guests = [dom(1, "a", 1024), dom(2, "b", 16)]
    assert guests_without_room(CFG, guests, free=0) == {"a", "b"}


def test_room_is_reserved_in_selection_order():
    guests = [dom(5, "big", 4096), dom(1, "small", 512)]
    assert guests_without_room(CFG, guests, free=need(4096)) == {"small"}


def test_zombies_are_not_saved_so_they_need_no_room():
    guests = [dom(1, "ghost", 8192, "-b---d"), dom(2, "a", 1024)]
    assert guests_without_room(CFG, guests, free=need(1024)) == frozenset()


def test_without_a_save_directory_there_is_nothing_to_check():
    guests = [dom(1, "a", 1024)]
    assert guests_without_room(Config(save_dir=None), guests, free=0) == frozenset()


def test_free_space_is_read_from_the_nearest_existing_parent(tmp_path):
    assert planmod.free_bytes(tmp_path / "not" / "yet") == planmod.free_bytes(tmp_path)


@pytest.fixture
def tight_host(tmp_path, monkeypatch):
    """Three guests on the in-process simulated host; the save dir has room for web01 only."""
    layout = make_host(tmp_path / "host", guests=[("web01", 1024, 1), ("db", 2048, 1), ("mail", 512, 1)])
    free = need(1024) + need(512) - 1  # web01 fits; db does not; then mail does not either
    monkeypatch.setattr(planmod, "free_bytes", lambda directory: free)
    cfg = Config(save_dir=layout.save_dir, auto_dir=layout.auto_dir, shutdown=("--wait",), shutdown_all=(),
                 lockfile=tmp_path / "lock", progress=tmp_path / "run" / "progress.jsonl", create_usleep_us=0,
                 usleep_us=0, stop_maxwait=30)
    return cfg, layout


def service(cfg: Config, state: Path, events: list) -> Service:
    bus = EventBus(run="test")
    bus.subscribe(events.append)
    return Service(cfg, SimToolstack(state), bus, control=RunControl(cfg.parallel, emit=bus.emit))


async def test_the_stop_run_does_what_the_plan_said_when_there_is_no_room(tight_host):
    cfg, layout = tight_host
    plan = await stop_plan(service(cfg, layout.state_dir, []))

    assert set(plan.no_room) == {"db", "mail"}
    stages = {g.guest: g.stages for g in plan.guests}
    assert stages == {"web01": ("save", "shutdown"), "db": ("shutdown",), "mail": ("shutdown",)}

    events: list = []
    outcome = await service(cfg, layout.state_dir, events).stop()

    assert outcome.exit_code == 0
    finished = {e.guest: e.outcome for e in events if isinstance(e, GuestFinished)}
    assert finished == {"web01": "saved", "db": "shutdown", "mail": "shutdown"}
    started = {}
    for e in events:
        if isinstance(e, StageStarted) and e.guest:
            started.setdefault(e.guest, []).append(e.stage)
    assert started == {"web01": ["save"], "db": ["shutdown"], "mail": ["shutdown"]}
    assert sorted(p.name for p in layout.save_dir.iterdir()) == ["web01"]


def test_a_move_in_a_plan_is_refused_when_it_would_over_commit_or_names_a_target_left_out():
    from xdcore.plan import GuestPlan, Plan, move_problem
    from xdcore.placement import TargetRoom

    guests = (GuestPlan("big", 1, 12288, ("migrate",), (), 1.0, target="xen03"),
              GuestPlan("web", 2, 2048, ("migrate",), (), 1.0, target="xen02"))
    rooms = (TargetRoom("xen02", 16384, 1024, 13312, guests=("web",)), TargetRoom("xen03", 24576, 1024, 11264),
             TargetRoom("xen04", 8192, 1024, 7168), TargetRoom("xen05", 0, 1024, 0, error="No route to host"))
    plan = Plan("stop", guests, (), (), 1.0, 1, targets=rooms)
    assert move_problem(plan, "web", "xen04") is None
    assert move_problem(plan, "big", "xen04") == "xen04 has 7168 MiB of room, needs 12288 MiB"
    assert move_problem(plan, "big", "xen02") is None  # 15360 less web's 2048 = 13312 MiB: big fits beside it
    assert move_problem(plan, "web", "xen03") is None  # 23552 less big's 12288
    assert move_problem(plan, "web", "xen05") == "xen05 is left out (No route to host)"
    assert move_problem(plan, "web", "xen09") == "xen09 is not one of the migration targets"
    assert move_problem(plan, "mail", "xen02") == "mail is not in this plan"
    assert "no migration targets" in move_problem(dataclasses.replace(plan, targets=()), "web", "xen02")
