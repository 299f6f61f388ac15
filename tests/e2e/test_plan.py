"""`xendomains plan stop|start` end to end against the simulated host.

A plan lists each guest's stages and why, an estimate, and whether the save
directory has room; it does nothing.  The stop run uses the same room check,
so what the plan says is what the stop does — shown here on a real, small
tmpfs (mounted when we may; tests/core/test_plan.py checks the same with
the free space injected).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from xdcore import events as ev
from xdcore.plan import IMAGE_OVERHEAD
from xdcore.sim.testing import guest_config_text

from .helpers import E2EHost

MIB = 1024 * 1024
TERMINAL = {"migrate": "migrated", "save": "saved", "shutdown": "shutdown"}


def plan_json(h: E2EHost, *args: str) -> dict:
    res = h.run("plan", *args, json_out=True)
    assert res.returncode == 0, res.describe()
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, res.describe()
    return json.loads(lines[0])


def plan_text(h: E2EHost, *args: str) -> str:
    res = h.run("plan", *args, json_out=False)
    assert res.returncode == 0, res.describe()
    return res.stdout


def by_guest(plan: dict) -> dict[str, dict]:
    return {g["guest"]: g for g in plan["guests"]}


def expected_outcome(stages: list[str]) -> str:
    return next(TERMINAL[s] for s in stages if s in TERMINAL)


def mutations(h: E2EHost) -> list[list[str]]:
    """State-changing commands the simulated xl ran, dry runs left out."""
    return [e["argv"] for e in h.history() if "--dryrun" not in e["argv"]]


# -- plan stop ------------------------------------------------------------------------------------------------


def test_plan_stop_lists_every_guest_with_its_stages_reasons_and_the_room_needed(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2), ("db", 2048, 2)], auto=["web01"])

    plan = plan_json(h, "stop")

    assert plan["verb"] == "stop"
    guests = by_guest(plan)
    assert set(guests) == {"web01", "db"}
    for name, mem in (("web01", 1024), ("db", 2048)):
        g = guests[name]
        assert g["stages"] == ["save", "shutdown"]
        assert g["memory_mib"] == mem
        assert any(r.startswith("save:") and str(h.save_dir) in r for r in g["reasons"])
        assert any(r.startswith("shutdown:") for r in g["reasons"])
        assert g["estimate_s"] > 0
    assert guests["db"]["domid"] == h.domains()["db"].domid
    assert plan["save_needed"] == (1024 + 2048) * MIB + 2 * IMAGE_OVERHEAD
    assert plan["save_dir_free"] > plan["save_needed"]
    assert plan["no_room"] == []
    assert plan["estimate_s"] > 0


def test_plan_stop_in_words_names_the_guests_and_their_stages(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2), ("db", 2048, 2)])

    text = plan_text(h, "stop")

    assert text.startswith("Plan for stop (2 guests")
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ") and ln.split()[0] in ("web01", "db")}
    assert "save → shutdown" in lines["web01"] and "save → shutdown" in lines["db"]
    assert "save directory:" in text and "MiB needed" in text


def test_a_plan_does_nothing(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2)], auto=["web01"], saved=[("wiki", 512, 1)])
    before = {n: d.domid for n, d in h.domains().items()}
    images = h.save_entries()

    plan_json(h, "stop")
    plan_json(h, "start")
    plan_text(h, "stop")

    assert {n: d.domid for n, d in h.domains().items()} == before
    assert h.save_entries() == images
    assert mutations(h) == []
    assert not os.path.lexists(h.lock)


def test_plan_stop_with_migrate_puts_migrate_first_and_says_where_to(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2)], XENDOMAINS_MIGRATE="dr-site")

    g = by_guest(plan_json(h, "stop"))["web01"]

    assert g["stages"] == ["migrate", "save", "shutdown"]
    assert any(r.startswith("migrate:") and "dr-site" in r for r in g["reasons"])


def test_plan_stop_without_a_save_dir_shuts_down_and_needs_no_room(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2)], XENDOMAINS_SAVE="")

    plan = plan_json(h, "stop")

    assert by_guest(plan)["web01"]["stages"] == ["shutdown"]
    assert plan["save_needed"] == 0 and plan["save_dir_free"] is None


def test_plan_stop_with_auto_only_skips_the_others_and_says_why(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2), ("db", 2048, 2)], auto=["web01"],
                     XENDOMAINS_AUTO_ONLY="true")

    plan = plan_json(h, "stop")

    assert set(by_guest(plan)) == {"web01"}
    skipped = dict(plan["skipped"])
    assert "db" in skipped and "AUTO_ONLY" in skipped["db"]


def test_plan_stop_of_named_guests_plans_only_those(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2), ("db", 2048, 2), ("mail", 512, 1)])

    plan = plan_json(h, "stop", "db")

    assert set(by_guest(plan)) == {"db"}


def test_plan_stop_marks_a_dying_guest_as_a_zombie_with_nothing_to_do(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2), ("ghost", 512, 2, "--p--d")])

    g = by_guest(plan_json(h, "stop"))["(null)"]  # real xl lists a zombie without its name

    assert g["stages"] == ["zombie"]
    assert g["estimate_s"] == 0


# -- plan start -----------------------------------------------------------------------------------------------


def test_plan_start_restores_images_creates_missing_auto_guests_and_skips_the_rest(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2)], auto=["web01", "wiki"], saved=[("wiki", 512, 1)])
    mail = h.layout.configs_dir / "mail.cfg"
    mail.write_text(guest_config_text("mail", 256, 1))
    (h.layout.auto_dir / "mail.cfg").symlink_to(mail)

    plan = plan_json(h, "start")

    guests = by_guest(plan)
    assert guests["wiki"]["stages"] == ["restore"]
    assert str(h.save_dir / "wiki") in guests["wiki"]["reasons"][0]
    assert guests["mail"]["stages"] == ["create"]
    skipped = dict(plan["skipped"])
    assert skipped["web01"] == "already running"
    assert "wiki" not in skipped  # restored, listed above: not "skipped" as well
    assert "web01" not in guests


def test_the_start_run_does_what_its_plan_said(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 1024, 2)], auto=["web01", "wiki"], saved=[("wiki", 512, 1)])
    mail = h.layout.configs_dir / "mail.cfg"
    mail.write_text(guest_config_text("mail", 256, 1))
    (h.layout.auto_dir / "mail.cfg").symlink_to(mail)
    plan = plan_json(h, "start")

    res = h.run("start")

    assert res.returncode == 0, res.describe()
    want = {g["guest"]: {"restore": "restored", "create": "created"}[g["stages"][0]] for g in plan["guests"]}
    assert res.outcomes == want
    assert h.running() == {"web01", "wiki", "mail"}


# -- no room in the save directory -------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 64 MiB tmpfs (needs root and permission to mount; else skipped — see tests/core/test_plan.py)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'}); "
                    "the unit tests in tests/core/test_plan.py inject the free space instead")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_guests_without_room_are_shut_down_and_the_stop_does_exactly_what_the_plan_said(tmp_path, small_fs):
    # 64 MiB free; each image is reserved its memory + 16 MiB: web01 (32 → 48 MiB) fits, db (64 → 80) does
    # not, mail (8 → 24) no longer fits after web01 (48 + 24 > 64)
    save = small_fs / "save"
    save.mkdir()
    h = E2EHost.make(tmp_path, guests=[("web01", 32, 1), ("db", 64, 1), ("mail", 8, 1)], XENDOMAINS_SAVE=save)
    ids = {n: d.domid for n, d in h.domains().items()}

    plan = plan_json(h, "stop")

    assert plan["save_dir_free"] <= 64 * MIB
    assert sorted(plan["no_room"]) == ["db", "mail"]
    guests = by_guest(plan)
    assert guests["web01"]["stages"] == ["save", "shutdown"]
    for name in ("db", "mail"):
        assert guests[name]["stages"] == ["shutdown"]
        assert any("no room" in r for r in guests[name]["reasons"])
    assert plan["save_needed"] == 32 * MIB + IMAGE_OVERHEAD
    assert "no room to save (shut down instead): db mail" in plan_text(h, "stop")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {g["guest"]: expected_outcome(g["stages"]) for g in plan["guests"]}
    for g in plan["guests"]:
        started = [e.stage for e in res.of(ev.StageStarted) if e.guest == g["guest"]]
        assert started == g["stages"][: g["stages"].index(next(s for s in g["stages"] if s in TERMINAL)) + 1]
    assert sorted(p.name for p in save.iterdir()) == ["web01"]
    assert [a[2] for a in mutations(h) if a[1] == "save"] == [str(ids["web01"])]
    assert sorted(a[-1] for a in mutations(h) if a[1] == "shutdown") == sorted(str(ids[n]) for n in ("db", "mail"))
    res.message_about("db", "no room")
    assert h.running() == set()


def test_the_scheduled_stop_shares_disk_and_link_and_ends_as_its_plan_said(tmp_path):
    """With a shared disk and link, the plan is the scheduler's: each guest's resource, order and predicted
    finish; the run follows it (GuestScheduled events), learns both resources, and the report draws it."""
    from xdcore.sim import host
    from xdcore.sim.cli import main as xdsim

    h = E2EHost.make(tmp_path, guests=[("big", 400, 1), ("mid", 200, 1), ("small", 100, 1), ("local", 300, 1)],
                     XENDOMAINS_MIGRATE="peer", XENDOMAINS_PARALLEL="auto")
    state = str(h.layout.state_dir)
    for argv in (["resource", "disk", "200"], ["resource", "link", "peer", "400"], ["fault", "migrate", "local", "fail"]):
        assert xdsim(["--state", state, *argv]) == 0
    (h.root / "policy.d").mkdir()  # `local` may not migrate (the host refuses it) and its policy says so
    (h.root / "policy.d" / "local").write_text('xendomains_stop = "save, shutdown"\n')
    h.configure(XENDOMAINS_POLICY_DIR=h.root / "policy.d")

    plan = plan_json(h, "stop")
    assert plan["scheduled"] and plan["estimate_s"] > 0
    slots = {g["guest"]: (g["planned"], g["resource"]) for g in plan["guests"]}
    assert slots == {"big": ("migrate", "link:peer"), "mid": ("migrate", "link:peer"),
                     "small": ("migrate", "link:peer"), "local": ("save", "disk")}
    assert "waits on link:peer" in plan_text(h, "stop")

    res = h.run("stop")
    assert res.returncode == 0, res.describe()
    scheduled = [e for e in res.events if isinstance(e, ev.GuestScheduled)]
    assert {e.guest for e in scheduled} == {"big", "mid", "small", "local"}
    log = {t["guest"]: t for t in host.load(state).transfer_log}
    assert log["local"]["res"] == "disk" and log["big"]["res"] == "link:peer"
    assert log["local"]["start"] < log["big"]["end"] and log["big"]["start"] < log["local"]["end"]  # at once
    report = h.run("report", "stop", "--timeline", json_out=False)
    assert "link to peer" in report.stdout and "disk (save directory)" in report.stdout and "█" in report.stdout


# -- where the estimate comes from (issue 13) -----------------------------------------------------------------


def test_the_plan_says_where_its_estimate_comes_from_and_learns_from_the_run(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 2048, 1)], auto=["web01", "db"])
    h.sim("latency", "save", "0.3")  # long enough to be measured (a resource busy under 50 ms teaches nothing)
    h.sim("resource", "disk", "2000")  # a simulated host that declares its bandwidths is estimated from them
    plan = plan_json(h, "stop")
    assert plan["estimate_source"] == "simulated"  # a simulated host before any run: its own latencies
    assert any(b.startswith("save: disk ") for b in plan["estimate_basis"])
    text = plan_text(h, "stop")
    assert "simulated):" in text.splitlines()[0] and "  estimate: save: disk " in text

    assert h.run("stop").returncode == 0
    after_stop = plan_json(h, "start")  # the stop measured the disk's writes, not its reads
    assert dict(after_stop["estimate_sources"]) == {"restore": "simulated", "run": "simulated"}, after_stop
    assert after_stop["estimate_source"] == "simulated"
    assert any(b.startswith("restore: disk 2000 MB/s") and b.endswith("(simulated)") for b in after_stop["estimate_basis"])
    assert h.run("start").returncode == 0
    again = plan_json(h, "stop")
    assert again["estimate_source"] == "measured", again["estimate_sources"]
    assert dict(again["estimate_sources"]) == {"save": "measured", "run": "measured"}
    assert plan_json(h, "start")["estimate_source"] == "measured"


def test_a_save_the_simulated_host_makes_hang_is_planned_until_the_watchdog_as_the_run_takes_it(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("backup", 512, 1)], XENDOMAINS_STOP_MAXWAIT="3",
                     XENDOMAINS_PARALLEL="1")
    h.sim("resource", "disk", "2000")
    before = {g["guest"]: g for g in plan_json(h, "stop")["guests"]}
    h.sim("fault", "save", "backup", "hang")
    plan = plan_json(h, "stop")
    slots = {g["guest"]: g for g in plan["guests"]}
    assert slots["backup"]["finish_s"] - slots["backup"]["start_s"] == pytest.approx(3.0, abs=0.05)  # the watchdog
    assert slots["web01"]["finish_s"] - slots["web01"]["start_s"] == pytest.approx(
        before["web01"]["finish_s"] - before["web01"]["start_s"], abs=0.05)  # the others as before
    assert any(n.startswith("backup: the simulated host makes its save hang: estimated to last until the watchdog")
               for n in plan["notes"]), plan["notes"]
    res = h.run("stop")
    backup = next(e for e in res.events if isinstance(e, ev.StageFinished) and e.guest == "backup" and e.stage == "save")
    assert backup.outcome == "timeout"  # what the plan said: the save lasted until the watchdog

    # the save left backup suspended: the next stop sends it nothing, and its plan says so, with no time for it
    after = plan_json(h, "stop")
    assert [(g["guest"], g["stages"], g["estimate_s"]) for g in after["guests"]] == [("backup", ["suspended"], 0.0)]
    assert "xendomains resume backup" in after["guests"][0]["reasons"][0] and not any("hang" in n for n in after["notes"])
    assert "backup                   suspended" in plan_text(h, "stop")


def test_the_plan_notes_the_options_xl_does_not_take_as_stop_does(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], XENDOMAINS_SAVE="",
                     XENDOMAINS_SHUTDOWN="--halt --wait", XENDOMAINS_SHUTDOWN_ALL="--all --halt --wait")
    text = plan_text(h, "stop")
    notes = [ln for ln in text.splitlines() if ln.startswith("  note:")]
    assert any("--halt" in n and "XENDOMAINS_SHUTDOWN" in n for n in notes), text
    res = h.run("stop", json_out=False)
    printed = [ln for ln in (res.stdout + res.stderr).splitlines() if "--halt" in ln]
    assert printed and all(any(p.strip() in n for n in notes) for p in printed), (printed, notes)


def test_a_malformed_throughputs_file_is_a_warning_naming_it_and_the_run_keeps_it(tmp_path):
    from xdcore.config import load_config
    from xdcore.plan import throughput_path

    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)])
    path = throughput_path(load_config(str(h.config)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{\n "save_mbps": 480.5,\n')  # half a document (a crash while an older version wrote it)
    notes = plan_json(h, "stop")["notes"]
    assert any(n.startswith(f"{path}:3: the stored throughputs are not JSON") for n in notes), notes
    res = h.run("stop", json_out=False)
    assert res.returncode == 0, res.describe()
    assert f"warning: {path}:3: the stored throughputs are not JSON" in res.stderr
    assert f"the unreadable throughputs were kept as {path}.bad" in res.stderr
    assert (path.parent / "throughput.json.bad").read_text() == '{\n "save_mbps": 480.5,\n'  # nothing lost
    assert not any("throughputs" in n for n in plan_json(h, "start")["notes"])  # the new file is whole
