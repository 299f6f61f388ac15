"""Evacuating onto several migration targets (XENDOMAINS_MIGRATE_TARGETS) on a simulated pool of four hosts.

Witnesses: the run's own events (where each guest was placed), the pool itself
(which host runs which guest afterwards), and the save directory.
"""

from __future__ import annotations

import json

import pytest

from xdcore import events as ev
from xdcore.sim import host as simhost
from xdcore.sim import pool as simpool

from .helpers import E2EHost

GIB = 1024
DOM0 = 2048


def pool_of_four(tmp_path, guests, rooms=(16, 24, 8), xen=(None, None, None), **settings) -> E2EHost:
    """xen01 runs `guests`; xen02..xen04 have `rooms` GiB free after dom0 (before the 1 GiB reserve) and run
    Xen `xen` (None: xen01's, 4.17)."""
    h = E2EHost.make(tmp_path, guests=guests, **settings)
    for name, gib, version in zip(("xen02", "xen03", "xen04"), rooms, xen):
        h.add_peer(name, DOM0 + gib * GIB, version)
    h.configure(XENDOMAINS_MIGRATE_TARGETS="xen02 xen03 xen04", XENDOMAINS_PARALLEL=4)
    return h


def assert_each_guest_once(h: E2EHost, names) -> dict[str, str]:
    """Every guest runs on exactly one host of the pool or has a save image; guest -> host or 'saved'."""
    where: dict[str, list[str]] = {}
    for host_name, guests in h.pool_guests().items():
        for g in guests:
            where.setdefault(g, []).append(host_name)
    out = {}
    for n in names:
        places = where.get(n, []) + (["saved"] if h.has_valid_image(n) else [])
        assert len(places) == 1, f"{n} is on {places or 'no host and not saved'}"
        out[n] = places[0]
    return out


def placed(res) -> dict[str, str]:
    return {e.guest: e.target for e in res.of(ev.GuestPlaced)}


def test_guests_go_largest_first_to_the_target_with_most_room_and_none_is_over_committed(tmp_path):
    guests = [("big", 12 * GIB, 2), ("mid", 8 * GIB, 2), ("a", 4 * GIB, 1), ("b", 4 * GIB, 1), ("c", 2 * GIB, 1),
              ("d", 2 * GIB, 1), ("e", 1 * GIB, 1)]
    h = pool_of_four(tmp_path, guests)
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert set(res.outcomes.values()) == {"migrated"}
    where = assert_each_guest_once(h, [g[0] for g in guests])
    # xen03 (23 GiB of room) takes big → 11 left; xen02 (15) takes mid → 7; xen03 (11) a → 7; …
    assert where["big"] == "xen03" and where["mid"] == "xen02"
    probed = {e.target: e for e in res.of(ev.TargetProbed)}
    assert probed["xen03"].free_mib == 24 * GIB and not probed["xen03"].error
    for name in ("xen02", "xen03", "xen04"):
        snap = simhost.load_snapshot(h.pool_member(name))
        assert snap.free_memory_mib >= 1024, f"{name} was promised more than its room: {snap.free_memory_mib} MiB free"
    report = json.loads((h.progress.parent / "last-stop.json").read_text())
    assert {g["guest"]: g["target"] for g in report["guests"]} == where


def test_pinning_and_anti_affinity_from_the_guests_config_are_honoured(tmp_path):
    guests = [("db1", 4 * GIB, 2), ("db2", 4 * GIB, 2), ("app", 2 * GIB, 1)]
    h = pool_of_four(tmp_path, guests, rooms=(16, 24, 8))
    with open(h.layout.configs["app"], "a") as fh:
        fh.write('xendomains_targets = "xen04"\n')
    with open(h.layout.configs["db1"], "a") as fh:
        fh.write('xendomains_apart = "db2"\n')
    for n in ("db1", "db2", "app"):
        (h.layout.auto_dir / f"{n}.cfg").symlink_to(h.layout.configs[n])
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    where = assert_each_guest_once(h, ["db1", "db2", "app"])
    assert where["app"] == "xen04"  # pinned, though xen03 has the most room
    assert where["db1"] != where["db2"]  # kept apart, though xen03 had room for both


def test_an_unreachable_target_is_left_out_with_a_warning(tmp_path):
    guests = [("web", 2 * GIB, 1), ("db", 4 * GIB, 2)]
    h = pool_of_four(tmp_path, guests, rooms=(16, 24, 8))
    simpool.set_reach(h.state, "xen03", "down")
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert res.message_about("xen03", "left out")
    where = assert_each_guest_once(h, ["web", "db"])
    assert "xen03" not in where.values()
    assert {e.target: bool(e.error) for e in res.of(ev.TargetProbed)} == {"xen02": False, "xen03": True, "xen04": False}


def test_a_target_on_an_older_xen_than_this_host_is_left_out_in_the_plan_the_run_and_the_report(tmp_path):
    guests = [("big", 12 * GIB, 2), ("web", 2 * GIB, 1)]
    # xen03 has the most room but runs Xen 4.16 (this host 4.17): a guest cannot go back to an older hypervisor
    h = pool_of_four(tmp_path, guests, rooms=(16, 24, 8), xen=("4.17.2", "4.16.5", "4.18.0"))
    plan = h.run("plan", json_out=False)
    assert plan.returncode == 0, plan.describe()
    assert ("target xen03: left out (runs Xen 4.16.5, older than this host's Xen 4.17.7-fake (4.16 < 4.17): "
            "Xen migrates a guest only to the same or a newer version)") in plan.stdout
    assert "Xen 4.18.0" in next(ln for ln in plan.stdout.splitlines() if "target xen04" in ln)
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert res.message_about("xen03", "left out", "older than this host's Xen 4.17.7-fake").level == "warning"
    where = assert_each_guest_once(h, ["big", "web"])
    assert where == {"big": "xen02", "web": "xen04"}  # by room among xen02 (15 GiB) and xen04 (7 GiB)
    assert {e.target: e.xen_version for e in res.of(ev.TargetProbed)} == {"xen02": "4.17.2", "xen03": "4.16.5",
                                                                          "xen04": "4.18.0"}
    report = json.loads((h.progress.parent / "last-stop.json").read_text())
    assert any("xen03 left out: runs Xen 4.16.5" in m for m in report["messages"])


def test_a_hanging_target_is_left_out_by_the_probe_watchdog(tmp_path):
    h = pool_of_four(tmp_path, [("web", 2 * GIB, 1)], rooms=(4, 24, 8), XENDOMAINS_STOP_MAXWAIT=1)
    simpool.set_reach(h.state, "xen03", "hang")
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert res.message_about("xen03", "left out", "no answer")
    assert assert_each_guest_once(h, ["web"])["web"] == "xen04"


def test_a_failed_migration_re_places_the_guest_on_another_target(tmp_path):
    h = pool_of_four(tmp_path, [("web", 2 * GIB, 1)], rooms=(16, 24, 8))
    # xen03 has the most room but refuses the guest: a guest of that name already runs there
    peer = h.pool_member("xen03")
    from xdcore.sim.testing import add_domain, config_of

    add_domain(peer, config_of(h.layout.configs["web"]), memory_mib=16)
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert [e.target for e in res.of(ev.GuestPlaced)] == ["xen03", "xen02"]
    assert res.outcomes == {"web": "migrated"}
    assert "web" in h.pool_guests()["xen02"]
    assert res.message_about("web", "re-placed on xen02")


def test_a_guest_too_big_for_every_target_is_saved_and_the_rest_migrate(tmp_path):
    h = pool_of_four(tmp_path, [("huge", 30 * GIB, 4), ("small", 1 * GIB, 1)], rooms=(16, 24, 8))
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"huge": "saved", "small": "migrated"}
    assert placed(res)["huge"] == ""
    assert res.message_about("huge", "no migration target")
    assert "migrate" not in res.stage_outcomes("huge")
    assert assert_each_guest_once(h, ["huge", "small"]) == {"huge": "saved", "small": "xen03"}
    h.assert_save_dir_clean()


def test_the_plan_shows_each_guests_target_and_the_room_left_on_each(tmp_path):
    h = pool_of_four(tmp_path, [("big", 12 * GIB, 2), ("huge", 30 * GIB, 4)], rooms=(16, 24, 8))
    res = h.run("plan", json_out=False)
    assert res.returncode == 0, res.describe()
    out = res.stdout
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("big "))
    assert line.endswith("to xen03"), out
    assert "target xen03: 24576 MiB free, 1024 reserved, 11264 MiB left" in out
    plan = json.loads(h.run("--json", "plan", json_out=False).stdout)
    targets = {g["guest"]: g["target"] for g in plan["guests"]}
    assert targets == {"big": "xen03", "huge": ""}
    assert {t["name"]: t["room_left_mib"] for t in plan["targets"]} == {"xen02": 15 * GIB, "xen03": 11 * GIB,
                                                                        "xen04": 7 * GIB}
    # each target's migrations are bounded like its link: the schedule's cap for it (auto), else the most cautious
    caps = dict(map(tuple, plan["caps"]))
    at_once = {t["name"]: t["at_once"] for t in plan["targets"]}
    assert at_once["xen03"] == caps["link:xen03"] >= 1 and at_once["xen02"] == at_once["xen04"] == caps["link:xen03"]
    assert f"11264 MiB left (Xen 4.17.7-fake), {caps['link:xen03']} migration" in out
    h.configure(XENDOMAINS_PARALLEL_MIGRATE=5)  # as configured wins, on every target
    fixed = json.loads(h.run("--json", "plan", json_out=False).stdout)
    assert {t["name"]: t["at_once"] for t in fixed["targets"]} == {"xen02": 5, "xen03": 5, "xen04": 5}
    assert h.pool_guests()["xen01"] == {"big", "huge"}  # a plan does nothing


@pytest.mark.parametrize("options", ['-s "ssh -p 2222"'])
def test_options_of_xendomains_migrate_are_shared_by_every_target(tmp_path, options):
    h = pool_of_four(tmp_path, [("web", 2 * GIB, 1)], XENDOMAINS_MIGRATE=options)
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    infos = [e.argv for e in res.of(ev.CommandStarted) if "info" in e.argv]
    probes = [a for a in infos if tuple(a) != ("xl", "info")]  # `xl info` alone: this host's own Xen version
    assert len(probes) == 3 and all(list(p[:3]) == ["ssh", "-p", "2222"] for p in probes)
    migrate = next(h["argv"] for h in h.history("migrate"))
    assert migrate[2:4] == ["-s", "ssh -p 2222"]


def test_the_operator_moves_a_waiting_guest_to_another_target_during_the_run(tmp_path):
    from tests.support import wait_for

    from .helpers import read_progress

    h = pool_of_four(tmp_path, [("first", 2 * GIB, 1), ("second", 1 * GIB, 1)], rooms=(16, 24, 8))
    h.configure(XENDOMAINS_PARALLEL=1, XENDOMAINS_STOP_MAXWAIT=120)
    h.sim("fault", "migrate", "first", "hang")  # holds the only slot while the operator acts
    proc = h.popen("stop")
    try:
        wait_for(lambda: any(isinstance(e, ev.StageStarted) and e.stage == "migrate" and e.guest == "first"
                             for e in read_progress(h.progress)), what="the first migration to begin")
        status = json.loads(h.run("control", "status", json_out=False).stdout)
        rooms = {t["name"]: t for t in status["targets"]}
        assert rooms["xen03"]["in_flight"] == ["first"] and "second" in rooms["xen03"]["guests"]
        assert rooms["xen03"]["at_once"] == 1  # XENDOMAINS_PARALLEL=1: the schedule's cap for every link
        moved = h.run("control", "move", "second", "xen04", json_out=False)
        assert moved.returncode == 0, moved.describe()
        refused = h.run("control", "move", "first", "xen02", json_out=False)
        assert refused.returncode == 1 and "migrating to xen03 now" in refused.stderr
        h.run("control", "skip-stage", "first", "migrate", json_out=False)
    finally:
        res = h.finish(proc)
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"first": "saved", "second": "migrated"}
    assert "second" in h.pool_guests()["xen04"]
    report = json.loads((h.progress.parent / "last-stop.json").read_text())
    assert {g["guest"]: g["target"] for g in report["guests"]} == {"first": "", "second": "xen04"}
    assert any("move_guest second xen04" in c for c in report["interventions"])


def test_start_never_creates_again_an_auto_guest_the_last_stop_migrated_to_a_target(tmp_path):
    h = pool_of_four(tmp_path, [("web", 2 * GIB, 1), ("local", 1 * GIB, 1)], auto=["web", "local"], rooms=(16, 24, 8))
    h.configure(XENDOMAINS_MIGRATE_TARGETS="xen02 xen03 xen04", XENDOMAINS_SAVE="")
    with open(h.layout.configs["local"], "a") as fh:
        fh.write('xendomains_targets = "xen09"\n')  # pinned to no target: shut down, and start creates it again
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web": "migrated", "local": "shutdown"}
    plan = json.loads(h.run("plan", "start").stdout)
    assert dict(map(tuple, plan["skipped"]))["web"] == "migrated to xen03 by the last stop: it runs there"
    started = h.run("start")
    assert started.returncode == 0, started.describe()
    assert started.outcomes == {"local": "created"}
    assert assert_each_guest_once(h, ["web", "local"]) == {"web": "xen03", "local": "xen01"}


def test_targets_and_deadline_given_on_the_command_line_override_the_config(tmp_path):
    h = pool_of_four(tmp_path, [("web", 2 * GIB, 1)], rooms=(16, 24, 8))
    plan = json.loads(h.run("--targets=xen04", "--deadline=90", "plan").stdout)
    assert [t["name"] for t in plan["targets"]] == ["xen04"]
    assert {g["guest"]: g["target"] for g in plan["guests"]} == {"web": "xen04"}
    assert any("deadline 90s" in n for n in plan["notes"])
    bad = h.run("--targets=-s ssh", "plan", json_out=False)
    assert bad.returncode == 2 and "--targets: expected host names" in bad.stderr


def test_the_operator_places_a_guest_before_the_run_and_the_report_says_so(tmp_path):
    guests = [("big", 12 * GIB, 2), ("web", 2 * GIB, 1)]
    h = pool_of_four(tmp_path, guests, rooms=(16, 24, 8))
    plan = h.run("--place", "web=xen04", "plan", json_out=False)
    assert plan.returncode == 0, plan.describe()
    line = next(ln for ln in plan.stdout.splitlines() if ln.strip().startswith("web "))
    assert line.endswith("to xen04 (placed by the operator)"), plan.stdout
    assert "target xen04: 8192 MiB free, 1024 reserved, 5120 MiB left" in plan.stdout
    res = h.run("--place", "web=xen04", "stop")
    assert res.returncode == 0, res.describe()
    assert {e.guest: (e.target, e.by) for e in res.of(ev.GuestPlaced)} == {"web": ("xen04", "operator"),
                                                                           "big": ("xen03", "placement")}
    assert assert_each_guest_once(h, ["big", "web"]) == {"big": "xen03", "web": "xen04"}  # by room web went to xen03
    report = json.loads((h.progress.parent / "last-stop.json").read_text())
    assert {g["guest"]: (g["target"], g["placed_by"]) for g in report["guests"]} == {
        "web": ("xen04", "operator"), "big": ("xen03", "placement")}
    shown = h.run("report", json_out=False).stdout
    assert "migrated to xen04 (placed by the operator)" in shown


@pytest.mark.parametrize("place, words", [
    ("web=xen09", "--place web=xen09: xen09 is not one of the migration targets (xen02 xen03 xen04)"),
    ("mail=xen02", "--place mail=xen02: no guest mail on this host"),
    ("big=xen04", "--place big=xen04: xen04 has 7168 MiB of room, needs 12288 MiB"),
    ("web=xen03", "--place web=xen03: xen03 is left out (`ssh xen03 xl info` exited 255"),
    ("web", "--place web: expected GUEST=TARGET"),
])
def test_a_placement_that_cannot_be_honoured_is_refused_naming_what_and_nothing_is_stopped(tmp_path, place, words):
    h = pool_of_four(tmp_path, [("big", 12 * GIB, 2), ("web", 2 * GIB, 1)], rooms=(16, 24, 8))
    simpool.set_reach(h.state, "xen03", "down")
    h.lock.parent.mkdir(parents=True, exist_ok=True)
    h.lock.write_text("")  # the service is started: it stays started
    plan = h.run("--place", place, "plan", json_out=False)
    assert plan.returncode in (1, 2) and words in plan.stderr, plan.describe()  # 1: what the targets' answers refuse
    res = h.run("--place", place, "stop", json_out=False)
    assert res.returncode == 2 and words in res.stderr, res.describe()
    assert h.pool_guests()["xen01"] == {"big", "web"} and not h.history("migrate") and not h.history("save")
    assert h.lock.exists()
    assert not (h.progress.parent / "last-stop.json").exists()  # refused before the run: no report hides the last


def test_when_every_target_runs_an_older_xen_the_guests_go_down_their_pipeline(tmp_path):
    h = pool_of_four(tmp_path, [("web", 2 * GIB, 1)], rooms=(16, 24, 8), xen=("4.16", "4.16", "4.9"))
    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web": "saved"} and "migrate" not in res.stage_outcomes("web")
    assert all(res.message_about(t, "left out", "older than this host's") for t in ("xen02", "xen03", "xen04"))
    assert res.message_about("web", "no migration target")
    assert assert_each_guest_once(h, ["web"]) == {"web": "saved"}
