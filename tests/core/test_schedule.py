"""The stop scheduler: order, per-resource concurrency, deadline diversions, learned throughputs."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from xdcore.config import Config
from xdcore.events import EventBus, GuestScheduled, ScheduleDeviated, StageDowngraded, StageStarted, from_json
from xdcore.pipeline.schedule import HostModel, Task, auto_cap, lower_bound, plan_schedule, restore_schedule
from xdcore.plan import Estimator, Throughputs, ThroughputRecorder, busy_time, fit_fixed
from xdcore.events import GuestPlanned, RunFinished, StageFinished
from xdcore.service import Service
from xdcore.sim import physics
from xdcore.timeline import Bar, draw

from .fakes import FakeToolstack

MODEL = HostModel({"disk": 100.0, "link:b": 200.0}, {"save": 0.5, "migrate": 1.0, "restore": 0.5}, shutdown_s=3.0)
BOTH = ("migrate", "save", "shutdown")


def test_without_a_deadline_the_longest_work_goes_first():
    tasks = [Task("small", 100, BOTH), Task("big", 2000, BOTH), Task("mid", 800, BOTH)]
    s = plan_schedule(MODEL, tasks, target="b")
    assert s.order()[0] == "big"
    assert [sl.stage for sl in s.slots] == ["migrate"] * 3
    assert {sl.resource for sl in s.slots} == {"link:b"}
    assert s.makespan == pytest.approx(max(sl.finish for sl in s.slots))


def test_the_plan_keeps_to_the_physical_bound_on_a_mixed_host():
    rng = random.Random(14)
    tasks = [Task(f"g{i:02d}", round(512 * 2 ** rng.uniform(0, 6)), BOTH if i % 4 else ("save", "shutdown"))
             for i in range(40)]
    s = plan_schedule(MODEL, tasks, target="b")
    bound = lower_bound(MODEL, s.slots, {t.guest: t.memory_mib for t in tasks})
    assert s.makespan <= 1.10 * bound
    assert {sl.resource for sl in s.slots} == {"disk", "link:b"}


def test_auto_concurrency_hides_fixed_costs_and_stops_where_sharing_no_longer_helps():
    jobs = [{"id": str(i), "res": "disk", "mb": 100.0, "fixed": 0.5} for i in range(6)]
    assert 1 < auto_cap(MODEL, "disk", jobs) < 6
    no_fixed = [{**j, "fixed": 0.0} for j in jobs]
    assert auto_cap(MODEL, "disk", no_fixed) == 1
    assert plan_schedule(MODEL, [Task("a", 100, BOTH), Task("b", 100, BOTH)], target="b",
                         caps={"link:b": 5}).caps["link:b"] == 5  # an explicit number wins


def test_under_a_deadline_a_migration_that_would_not_finish_goes_to_the_disk():
    tasks = [Task(f"m{i}", 1000, BOTH) for i in range(4)]  # 4 × 1000 MB over 200 MB/s: 20 s on the link alone
    s = plan_schedule(MODEL, tasks, target="b", deadline=13.0)
    stages = {sl.guest: sl.stage for sl in s.slots}
    assert sorted(stages.values()) == ["migrate", "migrate", "save"] + ["shutdown"]
    moved = next(sl for sl in s.slots if sl.stage == "save")
    assert moved.resource == "disk" and moved.finish <= 13.0
    assert "would not end before the 13s deadline" in moved.reason
    graceful = [sl for sl in s.slots if sl.stage in ("migrate", "save") and sl.finish <= 13.0]
    assert len(graceful) == 3


def test_under_a_deadline_priority_comes_first():
    tasks = [Task("small", 200, ("save", "shutdown")), Task("vip", 1000, ("save", "shutdown"), priority=5)]
    s = plan_schedule(MODEL, tasks, target="b", deadline=11.0)
    assert {sl.guest: sl.stage for sl in s.slots} == {"vip": "save", "small": "shutdown"}
    s = plan_schedule(MODEL, [Task("small", 200, ("save", "shutdown")), Task("big", 1000, ("save", "shutdown"))],
                      target="b", deadline=11.0)
    assert {sl.guest: sl.stage for sl in s.slots} == {"small": "save", "big": "shutdown"}


def test_restores_are_bound_by_the_disk():
    s = restore_schedule(MODEL, [(f"r{i}", 500.0) for i in range(6)])
    assert s.makespan <= 1.10 * (6 * 500 / 100)


# -- the estimator learns resources, not guests --------------------------------------------------------


def _events(runs):
    """GuestPlanned + StageFinished(save) for (guest, MB, start, end), then RunFinished."""
    out = [GuestPlanned(guest=g, memory_mib=mb) for g, mb, _, _ in runs]
    out += [StageFinished(stage="save", outcome="done", guest=g, elapsed=b - a, at=b) for g, _, a, b in runs]
    return out + [RunFinished(verb="stop", exit_code=0)]


def test_two_concurrent_saves_teach_the_disk_speed_not_half_of_it(tmp_path):
    rec = ThroughputRecorder(Config(path=None), tmp_path / "t.json")
    # 200 MB each at a 100 MB/s disk, fixed 0.5 s, the second joining 0.5 s later: busy 4 s in all
    for e in _events([("a", 200, 0.0, 4.0), ("b", 200, 0.5, 4.5)]):
        rec(e)
    assert Throughputs.load(tmp_path / "t.json").save_mbps == pytest.approx(100.0)


def test_fixed_costs_are_learned_from_operations_that_ran_alone(tmp_path):
    assert fit_fixed([(0.0, 1.5, 100.0), (2.0, 5.5, 300.0), (6.0, 6.7, 20.0)]) == pytest.approx(0.5)
    assert fit_fixed([(0.0, 1.5, 100.0)]) is None
    rec = ThroughputRecorder(Config(path=None), tmp_path / "t.json")
    for e in _events([("a", 100, 0.0, 1.5), ("b", 300, 2.0, 5.5), ("c", 20, 6.0, 6.7)]):
        rec(e)
    t = Throughputs.load(tmp_path / "t.json")
    assert t.fixed["save"] == pytest.approx(0.5)
    assert t.save_mbps == pytest.approx(100.0)
    assert busy_time([(0, 2), (1, 3), (5, 6)]) == 4


# -- the runner follows the schedule -------------------------------------------------------------------


def _service(tmp_path: Path, ts: FakeToolstack, **kw) -> tuple[Service, list]:
    base = dict(path=None, save_dir=tmp_path / "save", auto_dir=tmp_path / "auto", lockfile=tmp_path / "lock",
                progress=tmp_path / "progress.jsonl", usleep_us=0, create_usleep_us=0, stop_maxwait=5,
                migrate=("b",), parallel=0)
    base.update(kw)
    cfg = Config(**base)
    t = Throughputs(save_mbps=100.0, links={"b": 200.0})
    events: list = []
    return Service(cfg, ts, EventBus([events.append]), estimate=Estimator(cfg, t)), events


async def test_the_stop_runs_in_the_schedules_order_and_says_so(tmp_path):
    ts = FakeToolstack()
    for name, mem in (("small", 100), ("big", 4000), ("mid", 900)):
        ts.add(name, mem)
    svc, events = _service(tmp_path, ts, parallel_migrate=1)
    out = await svc.stop()
    assert out.exit_code == 0
    scheduled = [e for e in events if isinstance(e, GuestScheduled)]
    assert [e.guest for e in scheduled] == ["big", "small", "mid"]  # longest first, then interleaved
    assert all(e.resource == "link:b" and e.stage == "migrate" for e in scheduled)
    started = [e.guest for e in events if isinstance(e, StageStarted) and e.stage == "migrate"]
    assert started == ["big", "small", "mid"]
    assert from_json(scheduled[0].to_json()) == scheduled[0]


async def test_a_guest_that_ends_otherwise_than_planned_is_reported_with_why(tmp_path):
    ts = FakeToolstack()
    ts.add("web", 500)
    ts.fail.add(("migrate", "web"))
    svc, events = _service(tmp_path, ts)
    await svc.stop()
    dev = [e for e in events if isinstance(e, ScheduleDeviated)]
    assert len(dev) == 1 and dev[0].planned == "migrate" and dev[0].actual == "saved"
    assert "migrate failed" in dev[0].reason
    assert from_json(dev[0].to_json()) == dev[0]


async def test_under_a_deadline_the_runner_sends_a_guest_to_the_disk_as_planned(tmp_path):
    ts = FakeToolstack()
    for i in range(4):
        ts.add(f"m{i}", 1000)
    svc, events = _service(tmp_path, ts, stop_deadline=13.0, parallel_migrate=2, parallel_save=1)
    await svc.stop()
    down = [e for e in events if isinstance(e, StageDowngraded) and e.reason.startswith("schedule:")]
    assert down and down[0].from_stage == "migrate" and down[0].to_stage == "save"
    saved = [e.guest for e in events if isinstance(e, StageStarted) and e.stage == "save"]
    assert down[0].guest in saved


def test_the_timeline_draws_one_bar_per_guest_grouped_by_resource():
    bars = [Bar("a", "disk", 0, 10), Bar("a", "disk", 0, 11, "actual"), Bar("m", "link:b", 0, 5),
            Bar("m", "link:b", 0, 6, "actual")]
    lines = draw(bars, width=22)
    text = "\n".join(lines)
    assert "disk (save directory): busy 11.0s" in text and "link to b: busy 6.0s" in text
    a_plan = next(ln for ln in lines if ln.startswith("  a ") and " plan " in ln)
    a_run = lines[lines.index(a_plan) + 1]
    assert a_plan.count("░") == 20 and a_run.count("█") == 22
    assert text.index("disk") < text.index("link to b")


def test_physics_simulate_honours_an_overall_lane_cap():
    jobs = [{"id": "s", "res": "disk", "mb": 100.0, "fixed": 0.0}, {"id": "m", "res": "link:b", "mb": 200.0, "fixed": 0.0}]
    both = physics.simulate(jobs, {"disk": 100, "link:b": 200}, {})
    one = physics.simulate(jobs, {"disk": 100, "link:b": 200}, {}, lanes=1)
    assert physics.makespan(both) == pytest.approx(1.0) and physics.makespan(one) == pytest.approx(2.0)


def test_the_report_keeps_each_guests_slot_and_draws_planned_beside_actual(tmp_path):
    from xdcore.events import GuestFinished, RunStarted
    from xdcore.report import RunReport, RunReportWriter
    from xdcore.timeline import report_bars

    w = RunReportWriter([tmp_path])
    t = 1000.0
    for e in (RunStarted(verb="stop", at=t),
              GuestScheduled(guest="db", stage="save", resource="disk", start=0.0, finish=8.0, at=t),
              GuestPlanned(guest="db", memory_mib=800, at=t),
              StageFinished(stage="save", outcome="done", guest="db", elapsed=9.0, at=t + 9.0),
              ScheduleDeviated(guest="db", planned="save", actual="saved", reason="finished at 9.0s, planned 8.0s",
                               at=t + 9.0),
              GuestFinished(guest="db", outcome="saved", at=t + 9.0), RunFinished(verb="stop", exit_code=0, at=t + 9.5)):
        w(e)
    rep = RunReport.from_dict(json.loads((tmp_path / "last-stop.json").read_text()))
    g = rep.guest("db")
    assert g.planned == {"stage": "save", "resource": "disk", "order": 0, "start": 0.0, "finish": 8.0, "reason": ""}
    assert g.stages[0].started == 0.0 and any("off the plan" in n for n in g.notes)
    bars = report_bars(rep)
    assert [(b.kind, b.resource, b.start, b.finish) for b in bars] == [("planned", "disk", 0.0, 8.0),
                                                                        ("actual", "disk", 0.0, 9.0)]


def test_a_deadline_over_hundreds_of_guests_is_planned_by_budget_and_still_uses_both_resources():
    rng = random.Random(3)
    tasks = [Task(f"g{i:03d}", round(256 * 2 ** rng.uniform(0, 5)), BOTH) for i in range(300)]
    s = plan_schedule(MODEL, tasks, target="b", deadline=60.0)
    stages = [sl.stage for sl in s.slots]
    assert stages.count("migrate") and stages.count("save")  # the disk takes what the link cannot
    on_time = [sl for sl in s.slots if sl.stage in ("migrate", "save") and sl.finish <= 60.0]
    assert len(on_time) >= 0.8 * (stages.count("migrate") + stages.count("save"))


def test_guests_placed_on_several_targets_each_use_their_own_link():
    tasks = [Task("a", 1000, BOTH, target="b"), Task("c", 1000, BOTH, target="c"), Task("d", 1000, BOTH, target="b")]
    model = HostModel({"disk": 100.0, "link:b": 200.0}, {"migrate": 0.0}, default_link=100.0)  # link:c never measured
    s = plan_schedule(model, tasks, target="b", caps={"link:b": 2, "link:c": 1})
    assert {sl.guest: sl.resource for sl in s.slots} == {"a": "link:b", "c": "link:c", "d": "link:b"}
    assert s.slot("c").finish == pytest.approx(10.0)  # 1000 MB at the default 100 MB/s, alone on its link
    assert s.slot("a").finish == pytest.approx(10.0) and s.makespan == pytest.approx(10.0)  # two share 200 MB/s


def test_the_command_line_takes_parallel_auto_and_refuses_zero(tmp_path, capsys):
    from xdcore.cli import main

    conf = tmp_path / "xd.conf"
    conf.write_text(f'XENDOMAINS_SAVE="{tmp_path}/save"\nXENDOMAINS_AUTO="{tmp_path}/auto"\n'
                    f'XENDOMAINS_PROGRESS="{tmp_path}/progress.jsonl"\nXENDOMAINS_LOCKFILE="{tmp_path}/lock"\n')
    assert main(["--config", str(conf), "--parallel", "0", "report"]) == 2
    assert "at least 1 or auto" in capsys.readouterr().err
    assert main(["--config", str(conf), "--parallel", "auto", "report"]) != 2  # no report yet, but accepted


async def _pooled_stop(tmp_path: Path, fixed_migrate: float, **kw) -> tuple[dict[str, int], dict[str, int], list]:
    """Six 1000 MiB guests onto targets b and c (each measured at 200 MB/s), no overall cap: (peak migrations
    at once per target, the schedule's cap per link, the events)."""
    from xdcore.pipeline.control import RunControl
    from xdcore.pipeline.runner import StopRunner
    from xdcore.pipeline.targets import MigrateSetup, TargetPool
    from xdcore.placement import TargetHost, needs_from

    ts = FakeToolstack()
    for i in range(6):
        ts.add(f"g{i}", 1000)
    cfg = Config(**{**dict(path=None, save_dir=tmp_path / "save", auto_dir=tmp_path / "auto", lockfile=tmp_path / "lock",
                           progress=tmp_path / "progress.jsonl", usleep_us=0, stop_maxwait=5, parallel=0,
                           migrate_targets=("b", "c")), **kw})
    t = Throughputs(save_mbps=100.0, links={"b": 200.0, "c": 200.0}, fixed={"save": 0.5, "migrate": fixed_migrate,
                                                                             "restore": 0.5})
    events: list = []
    bus = EventBus([events.append])
    guests = [d for d in await ts.list_domains() if d.domid]
    pool = TargetPool(MigrateSetup((), ("ssh",), ("b", "c")), [TargetHost("b", 65536), TargetHost("c", 65536)],
                      needs_from(guests), 1024, cfg.parallel_migrate)
    pool.place_all()
    runner = StopRunner(cfg, ts, bus, RunControl(cfg.parallel, emit=bus.emit), estimate=Estimator(cfg, t), pool=pool)
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    orig = ts.migrate

    async def counting(domid, words, timeout=None):
        host = words[-1]
        active[host] = active.get(host, 0) + 1
        peak[host] = max(peak.get(host, 0), active[host])
        try:
            for _ in range(20):  # let every other guest that may begin its migration do so
                await asyncio.sleep(0)
            await orig(domid, words, timeout)
        finally:
            active[host] -= 1

    ts.migrate = counting
    sched = runner.make_schedule(guests)
    results = await runner.run(guests, sched)
    assert {r.outcome for r in results} == {"migrated"}
    return peak, {r[5:]: c for r, c in sched.caps.items() if r.startswith("link:")}, events


async def test_each_targets_migrations_are_bounded_like_its_link_by_the_schedules_auto_cap(tmp_path):
    # no fixed part to hide: sharing a link makes nothing end sooner, so the schedule runs one at a time per link
    peak, caps, _ = await _pooled_stop(tmp_path, fixed_migrate=0.0)
    assert caps == {"b": 1, "c": 1}
    assert peak == {"b": 1, "c": 1}  # three guests each, and nothing else bounds them (XENDOMAINS_PARALLEL auto)
    # a fixed part per migration: concurrency hides it, up to where sharing stops helping
    peak, caps, _ = await _pooled_stop(tmp_path, fixed_migrate=2.0)
    assert caps["b"] > 1 and peak == caps
    # an explicit XENDOMAINS_PARALLEL_MIGRATE wins over the schedule's choice, per target
    peak, caps, _ = await _pooled_stop(tmp_path, fixed_migrate=0.0, parallel_migrate=3)
    assert caps == {"b": 3, "c": 3} and peak == {"b": 3, "c": 3}


async def test_each_target_is_announced_with_the_cap_its_links_limiter_uses(tmp_path):
    from xdcore.events import StageStarted, TargetProbed, from_dict, from_json

    def announced(events):
        probed = [e for e in events if isinstance(e, TargetProbed)]
        first = next(i for i, e in enumerate(events) if isinstance(e, StageStarted) and e.stage == "migrate")
        assert all(events.index(e) < first for e in probed)  # before the first migration: the board has it at once
        return {e.target: e.at_once for e in probed}, probed

    peak, caps, events = await _pooled_stop(tmp_path, fixed_migrate=2.0)  # auto: the schedule's cap per link
    at_once, probed = announced(events)
    assert caps["b"] > 1 and at_once == caps == peak  # what the run says is what its limiters let through
    _, _, events = await _pooled_stop(tmp_path, fixed_migrate=0.0, parallel_migrate=3)
    assert announced(events)[0] == {"b": 3, "c": 3}  # XENDOMAINS_PARALLEL_MIGRATE, per target
    # JSON: round trip; a progress line written before the field existed reads as no cap known
    assert from_json(probed[0].to_json()) == probed[0]
    line = probed[0].to_dict()
    del line["at_once"]
    assert from_dict(line).at_once == 0 and from_dict(line).free_mib == probed[0].free_mib


def test_a_target_the_schedule_did_not_plan_for_takes_the_most_cautious_planned_links_cap():
    from xdcore.pipeline.targets import MigrateSetup, TargetPool
    from xdcore.placement import TargetHost

    pool = TargetPool(MigrateSetup((), ("ssh",), ("b", "c", "d")), [TargetHost(n, 65536) for n in "bcd"], [], 1024, None)
    assert pool.link_cap("b") is None  # before the schedule: no bound of its own
    pool.follow_schedule({"disk": 4, "link:b": 3, "link:c": 2})
    assert [pool.link_cap(n) for n in "bcd"] == [3, 2, 2]
    assert [r.at_once for r in pool.rooms()] == [3, 2, 2]


def test_a_stage_that_hangs_holds_its_place_until_the_watchdog_and_a_delay_adds_to_it():
    model = HostModel({"disk": 100.0}, {"save": 1.0})
    plain = [Task("a", 1000.0, ("save",)), Task("b", 1000.0, ("save",))]
    base = plan_schedule(model, plain, caps={"disk": 1}, keep_order=True)
    assert base.makespan == pytest.approx(22.0)  # (1 + 10) twice
    hung = [Task("a", 1000.0, ("save",), hang=(("save", 30.0),)), Task("b", 1000.0, ("save",))]
    sch = plan_schedule(model, hung, caps={"disk": 1}, keep_order=True)
    a, b = sch.slot("a"), sch.slot("b")
    assert (a.finish - a.start) == pytest.approx(30.0) and a.resource == "disk"  # holds the disk's one slot …
    assert b.start == pytest.approx(30.0) and sch.makespan == pytest.approx(41.0)  # … moving no memory meanwhile
    delayed = [Task("a", 1000.0, ("save",), delay=(("save", 5.0),)), Task("b", 1000.0, ("save",))]
    assert plan_schedule(model, delayed, caps={"disk": 1}, keep_order=True).makespan == pytest.approx(27.0)
