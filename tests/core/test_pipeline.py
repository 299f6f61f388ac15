"""The stop and start pipelines over the in-memory fake toolstack."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from xdcore.config import Config
from xdcore.events import EventBus, GuestFinished, MessageLogged, StageDowngraded, StageFinished
from xdcore.pipeline.stages import STOP_GUEST_STAGES, STOP_STAGES, guest_stop_stages
from xdcore.service import Service

from .fakes import FakeToolstack


def make(tmp_path: Path, **kw) -> tuple[Service, FakeToolstack, list]:
    base = dict(path=None, save_dir=tmp_path / "save", auto_dir=tmp_path / "auto", lockfile=tmp_path / "lock",
                progress=tmp_path / "progress.jsonl", usleep_us=0, create_usleep_us=0, stop_maxwait=5)
    base.update(kw)
    cfg = Config(**base)
    ts = FakeToolstack()
    events: list = []
    svc = Service(cfg, ts, EventBus([events.append]))
    return svc, ts, events


def track_peak(ts: FakeToolstack, method: str) -> dict[str, int]:
    """Wrap ts.<method> to count how many calls run at once; returns {"peak": …} filled as it runs."""
    seen = {"active": 0, "peak": 0}
    orig = getattr(ts, method)

    async def counting(*args, **kwargs):
        seen["active"] += 1
        seen["peak"] = max(seen["peak"], seen["active"])
        try:
            await orig(*args, **kwargs)
        finally:
            seen["active"] -= 1

    setattr(ts, method, counting)
    return seen


def outcomes(events) -> dict[str, str]:
    return {e.guest: e.outcome for e in events if isinstance(e, GuestFinished)}


def test_the_stop_table_lists_stages_in_the_contract_order():
    assert [s.name for s in STOP_STAGES] == ["select", "sysrq", "migrate", "save", "shutdown", "shutdown_all", "cleanup"]
    assert [s.fallback for s in STOP_GUEST_STAGES] == ["migrate", "save", "shutdown", None]


def test_guest_stages_follow_the_config():
    cfg = Config(path=None, migrate=("host2",), sysrq=("s",))
    assert [s.name for s in guest_stop_stages(cfg)] == ["sysrq", "migrate", "save", "shutdown"]
    cfg = Config(path=None, save_dir=None, shutdown=())
    assert [s.name for s in guest_stop_stages(cfg)] == []


async def test_stop_saves_every_guest_and_removes_the_lock(tmp_path):
    svc, ts, ev = make(tmp_path)
    ts.add("web01"), ts.add("db")
    out = await svc.stop()
    assert out.exit_code == 0
    assert outcomes(ev) == {"web01": "saved", "db": "saved"}
    assert sorted(p.name for p in (tmp_path / "save").iterdir()) == ["db", "web01"]
    assert not (tmp_path / "lock").exists()


async def test_failed_migrate_falls_back_to_save(tmp_path):
    svc, ts, ev = make(tmp_path, migrate=("--live", "host2"))
    ts.add("web01")
    ts.fail.add(("migrate", "web01"))
    out = await svc.stop()
    assert out.exit_code == 0
    assert outcomes(ev) == {"web01": "saved"}
    migrate = [c for c in ts.calls if c[1] == "migrate"][0]
    assert migrate == ("xl", "migrate", "1", "host2")  # --live dropped for xl


async def test_hung_save_is_stopped_by_the_watchdog_and_falls_back_to_shutdown_leaving_no_partial_image(tmp_path):
    svc, ts, ev = make(tmp_path, stop_maxwait=1)
    ts.add("big")
    ts.hang.add(("save", "big"))
    out = await svc.stop()
    assert out.exit_code == 0
    assert outcomes(ev) == {"big": "shutdown"}
    assert [e.outcome for e in ev if isinstance(e, StageFinished) and e.stage == "save"] == ["timeout"]
    assert list((tmp_path / "save").iterdir()) == []


async def test_zombies_get_nothing_and_no_shutdown_all_for_zombies_alone(tmp_path):
    svc, ts, ev = make(tmp_path)
    ts.add("undead", flags="-b---d")
    out = await svc.stop()
    assert outcomes(ev) == {"undead": "zombie"}
    assert not [c for c in ts.calls if c[1] in ("save", "shutdown", "migrate")]
    assert [e.outcome for e in ev if isinstance(e, StageFinished) and e.stage == "shutdown_all"] == ["skipped"]
    assert out.exit_code == 0


@pytest.mark.parametrize("flags", ["--ps--", "--ps-d", "--p---", "--p--d"])
async def test_a_nameless_row_a_shutdown_leaves_is_no_running_guest_and_draws_no_shutdown_all(tmp_path, flags):
    """Real xl 4.17 lists `(null) --ps--` right after `xl shutdown -w` returns (the domain being torn down):
    it once made shutdown-all run for nothing.  Nameless or dying rows never count as running guests."""
    svc, ts, ev = make(tmp_path, save_dir=None)
    ts.add("web01")
    ts.leave_after_shutdown = flags
    out = await svc.stop()
    assert out.exit_code == 0 and outcomes(ev) == {"web01": "shutdown"}
    assert not [c for c in ts.calls if c[1] == "shutdown" and "--all" in c], ts.calls
    sweep = [(e.outcome, e.detail) for e in ev if isinstance(e, StageFinished) and e.stage == "shutdown_all"]
    assert sweep == [("skipped", "only zombies remain")]
    rep = await svc.status()
    assert rep.running == () and [d.domid for d in rep.dying] == [1]


async def test_sysrq_keys_are_sent_in_order_before_save(tmp_path):
    svc, ts, ev = make(tmp_path, sysrq=("s", "e", "u"))
    ts.add("web01")
    await svc.stop()
    ops = [c[1:] for c in ts.calls if c[1] in ("sysrq", "save")]
    assert ops[:3] == [("sysrq", "1", "s"), ("sysrq", "1", "e"), ("sysrq", "1", "u")]
    assert ops[3][0] == "save"


async def test_every_stage_failing_makes_the_guest_failed_and_exit_1_with_the_lock_removed(tmp_path):
    svc, ts, ev = make(tmp_path, shutdown_all=())
    ts.add("stuck")
    ts.fail |= {("save", "stuck"), ("shutdown", "stuck")}
    out = await svc.stop()
    assert out.exit_code == 1
    assert outcomes(ev) == {"stuck": "failed"}
    assert not (tmp_path / "lock").exists()
    assert any(isinstance(e, MessageLogged) and e.level == "error" and "stuck" in e.text for e in ev)


async def test_parallel_stop_runs_guests_at_once(tmp_path):
    svc, ts, ev = make(tmp_path, parallel=4, save_dir=None)
    ts.delay["shutdown"] = 0.3
    for i in range(8):
        ts.add(f"g{i}")
    seen = track_peak(ts, "shutdown")
    await svc.stop()
    assert seen["peak"] == 4
    assert set(outcomes(ev).values()) == {"shutdown"}


async def test_skip_stage_cancels_the_running_save_and_falls_through_to_shutdown(tmp_path):
    svc, ts, ev = make(tmp_path, stop_maxwait=0)
    ts.add("slow")
    ts.hang.add(("save", "slow"))
    task = asyncio.ensure_future(svc.stop())
    for _ in range(200):
        if svc.control.running_stage("slow") == "save":
            break
        await asyncio.sleep(0.01)
    assert svc.control.skip_stage("slow")
    out = await task
    assert outcomes(ev) == {"slow": "shutdown"}
    assert out.exit_code == 0
    assert list((tmp_path / "save").iterdir()) == []


async def test_abort_leaves_pending_guests_alone_and_releases_the_lock(tmp_path):
    svc, ts, ev = make(tmp_path, save_dir=None)
    ts.delay["shutdown"] = 0.2
    for i in range(4):
        ts.add(f"g{i}")
    task = asyncio.ensure_future(svc.stop())
    for _ in range(200):
        if svc.control.running_stage("g0"):
            break
        await asyncio.sleep(0.01)
    svc.control.abort()
    out = await task
    got = outcomes(ev)
    assert got["g0"] == "shutdown"
    assert all(got[f"g{i}"] == "skipped" for i in range(1, 4))
    assert out.exit_code == 1
    assert not (tmp_path / "lock").exists()


async def test_deadline_downgrades_migrate_to_save_when_it_would_not_fit(tmp_path):
    svc, ts, ev = make(tmp_path, migrate=("host2",), stop_deadline=30)
    svc.estimate = lambda stage, d: {"migrate": 100.0, "save": 5.0, "shutdown": 1.0}.get(stage, 0.0)
    ts.add("big", mem=65536)
    await svc.stop()
    downs = [e for e in ev if isinstance(e, StageDowngraded)]
    assert [(d.from_stage, d.to_stage) for d in downs] == [("migrate", "save")]
    assert outcomes(ev) == {"big": "saved"}
    assert not [c for c in ts.calls if c[1] == "migrate"]


async def test_start_restores_images_then_creates_autostart_guests_skipping_restored_and_running(tmp_path):
    svc, ts, ev = make(tmp_path)
    # save two guests first
    ts.add("web01"), ts.add("db")
    await svc.stop()
    ts.add("mail")  # already running
    auto = tmp_path / "auto"
    auto.mkdir()
    for n in ("web01", "mail", "new"):
        (auto / n).write_text(f'name = "{n}"\n')
    ev.clear()
    out = await svc.start()
    assert out.exit_code == 0
    got = outcomes(ev)
    assert got == {"web01": "restored", "db": "restored", "new": "created"}
    assert list((tmp_path / "save").iterdir()) == []
    assert (tmp_path / "lock").exists()


async def test_start_is_not_blocked_by_a_nameless_row_that_still_carries_the_guests_name(tmp_path):
    """`xl list` shows `(null) --ps--` (being torn down) while `xl list -l` still names it web01 / db: the
    start restores and creates them all the same (libxl looks names up in XenStore, which has none)."""
    from xdcore.model import Domain, DomainState

    svc, ts, ev = make(tmp_path)
    ts.add("db")
    await svc.stop()  # db saved
    auto = tmp_path / "auto"
    auto.mkdir()
    (auto / "web01.cfg").write_text('name = "web01"\n')
    ts.configs[auto / "web01.cfg"] = "web01"
    for domid, name in ((7, "web01"), (8, "db")):
        ts.domains[domid] = Domain(domid, name, memory_mib=512, nameless=True, state=DomainState.from_flags("--ps--"))
    ev.clear()
    out = await svc.start()
    assert outcomes(ev) == {"db": "restored", "web01": "created"}
    assert out.exit_code == 0


async def test_failed_restore_quarantines_the_image_blocks_create_and_exits_1(tmp_path):
    svc, ts, ev = make(tmp_path)
    ts.add("web01")
    await svc.stop()
    auto = tmp_path / "auto"
    auto.mkdir()
    (auto / "web01.cfg").write_text('name = "web01"\n')
    ts.configs[auto / "web01.cfg"] = "web01"
    ts.fail.add(("restore", "web01"))
    ev.clear()
    out = await svc.start()
    assert out.exit_code == 1
    assert (tmp_path / "save" / ".failed" / "web01").exists()
    assert not [c for c in ts.calls if c[1] == "create"]
    rep = await svc.status()
    assert [q.guest for q in rep.quarantined] == ["web01"]


async def test_start_with_the_lock_present_touches_no_guest(tmp_path):
    svc, ts, ev = make(tmp_path)
    (tmp_path / "lock").write_text("")
    auto = tmp_path / "auto"
    auto.mkdir()
    (auto / "x").write_text('name = "x"\n')
    out = await svc.start()
    assert out.exit_code == 0
    assert any(isinstance(e, MessageLogged) and "already running" in e.text for e in ev)
    assert not [c for c in ts.calls if c[1] == "create"]


async def test_auto_only_with_empty_auto_directory_selects_no_guest(tmp_path):
    svc, ts, ev = make(tmp_path, auto_only=True, shutdown_all=())
    ts.add("web01")
    out = await svc.stop()
    assert outcomes(ev) == {}
    assert any(isinstance(e, MessageLogged) and "no guest selected" in e.text for e in ev)
    assert out.exit_code == 0


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "with space", "ünïcode"])
async def test_save_paths_stay_inside_the_save_directory_whatever_the_name(tmp_path, name):
    svc, ts, ev = make(tmp_path)
    ts.add(name)
    await svc.stop()
    files = list((tmp_path / "save").iterdir())
    assert len(files) == 1 and files[0].parent == tmp_path / "save"
    assert not files[0].name.startswith(".")
    ev.clear()
    await svc.start()
    assert outcomes(ev) == {name: "restored"}


async def test_deadline_destroys_as_a_last_resort_only_when_allowed(tmp_path):
    for allowed, expected in ((True, "destroyed"), (False, "failed")):
        svc, ts, ev = make(tmp_path / str(allowed), save_dir=None, stop_deadline=1, destroy_on_deadline=allowed,
                           shutdown_all=())
        svc.estimate = lambda stage, d: 0.1
        ts.add("stubborn")
        ts.hang.add(("shutdown", "stubborn"))
        await svc.stop()
        assert outcomes(ev) == {"stubborn": expected}
        downs = [(e.from_stage, e.to_stage) for e in ev if isinstance(e, StageDowngraded)]
        assert downs == ([("shutdown", "destroy")] if allowed else [])


async def test_a_per_stage_cap_bounds_saves_while_shutdowns_run_wider(tmp_path):
    svc, ts, ev = make(tmp_path, parallel=6, parallel_save=2)
    ts.delay["save"] = 0.2
    for i in range(6):
        ts.add(f"g{i}")
    seen = track_peak(ts, "save")
    await svc.stop()
    assert seen["peak"] == 2
    assert set(outcomes(ev).values()) == {"saved"}


async def test_start_restores_and_creates_in_parallel_with_creates_spaced(tmp_path):
    import time as _time

    svc, ts, ev = make(tmp_path, parallel=4, create_usleep_us=100_000)
    auto = tmp_path / "auto"
    auto.mkdir()
    for i in range(4):
        (auto / f"c{i}").write_text(f'name = "c{i}"\n')
    starts: list[float] = []
    orig = ts.create

    async def stamped(config, timeout=None):
        starts.append(_time.monotonic())
        await orig(config, timeout)

    ts.create = stamped  # type: ignore[method-assign]
    out = await svc.start()
    assert out.exit_code == 0
    assert set(outcomes(ev).values()) == {"created"}
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(gaps) == 3 and min(gaps) >= 0.09  # XENDOMAINS_CREATE_USLEEP is the minimum spacing


@pytest.mark.parametrize("verb", ["start", "stop"])
async def test_not_permitted_to_create_the_lock_is_exit_4_naming_the_file(tmp_path, monkeypatch, verb):
    from xdcore import lock as lockmod

    def refuse(self, *a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lockmod.RunLock, "acquire_for_start", refuse)
    monkeypatch.setattr(lockmod.RunLock, "acquire_for_stop", refuse)
    svc, ts, ev = make(tmp_path)
    ts.add("web01")
    out = await getattr(svc, verb)()
    assert out.exit_code == 4
    errors = [e.text for e in ev if isinstance(e, MessageLogged) and e.level == "error"]
    assert errors and str(tmp_path / "lock") in errors[0] and "root" in errors[0]
    assert ts.by_name("web01") is not None  # nothing touched


async def test_a_stop_that_cannot_take_the_lock_never_removes_the_lock_of_the_run_holding_it(tmp_path):
    import fcntl
    import os

    svc, ts, ev = make(tmp_path)
    ts.add("web01")
    lock = tmp_path / "lock"
    lock.write_text(f"starting {os.getpid()}\n")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run holds it
    try:
        out = await svc.stop(lock_wait=0.2)
    finally:
        os.close(fd)
    assert out.exit_code == 1
    assert lock.exists()
    assert ts.by_name("web01") is not None


async def test_a_stop_of_named_guests_leaves_a_started_service_started(tmp_path):
    svc, ts, ev = make(tmp_path)
    ts.add("web01"), ts.add("db")
    (tmp_path / "lock").write_text("started 1\n")
    out = await svc.stop(["web01"])
    assert out.exit_code == 0
    assert outcomes(ev) == {"web01": "saved"}
    assert (tmp_path / "lock").read_text().startswith("started")
    ev.clear()
    out = await svc.stop()
    assert outcomes(ev) == {"db": "saved"}
    assert not (tmp_path / "lock").exists()


def test_a_stop_runner_made_without_policies_uses_the_defaults():
    from xdcore.config import Config
    from xdcore.events import EventBus
    from xdcore.model import Domain
    from xdcore.pipeline.control import RunControl
    from xdcore.pipeline.runner import StopRunner
    from xdcore.pipeline.stages import stage

    class _TS:
        def translate_shutdown_options(self, opts, key="XENDOMAINS_SHUTDOWN"):
            return tuple(opts), []

        def translate_migrate_options(self, words):
            return tuple(words), []

    r = StopRunner(Config(), _TS(), EventBus(), RunControl(1))
    d = Domain(3, "web01", memory_mib=512)
    assert [s.name for s in r.stages_for(d)] == ["save", "shutdown"]
    assert r._watchdog(stage("shutdown"), d) == 300.0


async def test_a_placement_the_targets_refuse_once_the_stop_holds_the_lock_stops_nothing_and_keeps_it_started(
        tmp_path, monkeypatch):
    from xdcore.pipeline.targets import MigrateSetup, TargetPool
    from xdcore.placement import TargetHost, needs_from

    svc, ts, events = make(tmp_path, migrate_targets=("b", "c"))
    ts.add("web", 4096)
    svc.control.placements["web"] = "b"
    (tmp_path / "lock").write_text("")  # the service is started
    rooms = iter([65536, 2048])  # b has room when asked before the lock, not when asked again under it

    async def target_pool(selected, announce=True, policies=None):
        pool = TargetPool(MigrateSetup((), ("ssh",), ("b", "c")), [TargetHost("b", next(rooms)), TargetHost("c", 65536)],
                          needs_from(selected), 1024, None)
        pool.place_all(svc.control.placements)
        return pool

    monkeypatch.setattr(svc, "target_pool", target_pool)
    out = await svc.stop()
    assert (out.exit_code, out.summary) == (2, "nothing stopped")
    assert any(isinstance(e, MessageLogged) and e.level == "error"
               and "--place web=b: b has 1024 MiB of room, needs 4096 MiB; nothing done" in e.text for e in events)
    assert ts.by_name("web") is not None and not [c for c in ts.calls if c[1:2] in (("migrate",), ("save",))]
    assert (tmp_path / "lock").exists()
