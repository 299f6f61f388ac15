"""The fault suite: the installed `xendomains` against a simulated host that misbehaves.

Each test runs the real console script as a subprocess with the simulator's
`xl` first on PATH, injects one fault (a hung or failing command, a full
disk, a killed run, a corrupted listing, a hostile name or config value …)
and checks that the run ends as SEMANTICS.md says: the exit code, where
every guest ended up (saved with a complete image, migrated, shut down, or
visibly left running), that nothing partial sits in the save directory,
that the lock file is gone after stop, and that a message names the guest
and what happened.  Latencies are tiny and watchdogs 1–2 s, so the whole
file runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from xdcore import events as ev
from xdcore.savedir import PARTIAL_PREFIX, QUARANTINE
from xdcore.sim import host as simhost

from tests.support import wait_for

from .helpers import E2EHost, image_is_complete, kill_xl_children, read_progress

def no_traceback(res) -> None:
    assert "Traceback" not in res.stderr, res.describe()


# -- watchdog: hung migrate, save, shutdown ------------------------------------------------------------


def test_a_hung_migrate_is_killed_by_the_watchdog_and_the_guest_is_saved_instead(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)],
                     XENDOMAINS_MIGRATE="host2", XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("fault", "migrate", "web01", "hang")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "migrated"}
    assert res.stage_outcomes("web01") == {"migrate": "timeout", "save": "done"}
    res.message_about("web01", "migrate", "timed out")
    assert h.migrated_to("host2") == ["db"]
    assert h.running() == set()
    assert h.has_valid_image("web01") and not h.image_of("db").exists()
    h.assert_save_dir_clean()
    h.assert_lock_gone()
    no_traceback(res)


def test_a_hung_save_killed_by_the_watchdog_leaves_the_guest_suspended_named_loudly_and_its_partial_quarantined(tmp_path):
    """Real xl killed after the suspend point leaves the domain `---ss-`: not running, not saved, never lost silently."""
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], auto=["web01", "db"], XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("fault", "save", "web01", "hang")

    res = h.run("stop")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"web01": "suspended", "db": "saved"}
    assert res.stage_outcomes("web01") == {"save": "timeout"}  # no shutdown: a suspended guest cannot ack one
    res.message_about("web01", "SUSPENDED", "xendomains resume web01")
    assert h.domains()["web01"].flags == "---ss-"
    assert not h.image_of("web01").exists(), "a killed save must not leave an image under the guest's name"
    assert h.partials() == []
    assert [p.name for p in (h.save_dir / QUARANTINE).iterdir()] == [h.image_of("web01").name]
    assert h.has_valid_image("db")
    h.assert_lock_gone()

    # start restores db, never calls web01 "already running", and says what it is
    boot = h.run("start")
    assert boot.outcomes == {"db": "restored", "web01": "suspended"}, boot.describe()
    assert boot.returncode == 1
    assert "web01" not in {e.guest for e in boot.of(ev.GuestSkipped)}  # never "skip: already running"
    code, status = _status_json(h)
    assert code == 1 and [d["name"] for d in status["suspended"]] == ["web01"]
    human = h.run("status", json_out=False)
    assert "SUSPENDED: web01" in human.stdout and "xendomains resume web01" in human.stdout


def test_a_hung_shutdown_is_killed_reported_and_the_guest_is_left_running_visibly(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_SAVE="",
                     XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("fault", "shutdown", "web01", "hang")

    res = h.run("stop")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"web01": "failed", "db": "shutdown"}
    assert res.stage_outcomes("web01") == {"shutdown": "timeout"}
    res.message_about("web01", "shutdown", "timed out")
    # the final sweep is tried for what remains, and its watchdog fires too
    sweep = [e for e in res.of(ev.StageFinished) if e.stage == "shutdown_all"]
    assert [e.outcome for e in sweep] == ["timeout"] or [e.outcome for e in sweep] == ["failed"]
    assert h.running() == {"web01"}  # not lost: still there, and said so
    assert h.save_entries() == []
    h.assert_lock_gone()


def test_a_failed_final_sweep_names_the_guests_it_left_running(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_SAVE="",
                     XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("fault", "shutdown", "web01", "hang")

    res = h.run("stop")

    sweep = [m for m in res.messages("error") if "all remaining" in m.text]
    assert sweep and "web01" in sweep[0].text and "db" not in sweep[0].text


def test_a_guest_that_ignores_shutdown_fails_with_a_message_naming_it(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_SAVE="",
                     XENDOMAINS_STOP_MAXWAIT=2)
    h.sim("latency", "ack_timeout", "0.2")
    h.sim("fault", "shutdown", "web01", "ignore")

    res = h.run("stop")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"web01": "failed", "db": "shutdown"}
    assert res.stage_outcomes("web01") == {"shutdown": "failed"}
    res.message_about("web01", "shutdown", "failed")
    assert any("acknowledge" in e.stderr for e in res.of(ev.CommandFinished) if e.guest == "web01")
    assert h.running() == {"web01"}
    h.assert_lock_gone()


@pytest.mark.parametrize("op,fault,cause", [("save", "enospc", "No space left on device"),
                                            ("shutdown", "ignore", "acknowledge")])
def test_the_error_message_carries_the_cause_xl_gave_not_just_its_last_line(tmp_path, op, fault, cause):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], XENDOMAINS_SAVE="" if op == "shutdown" else None)
    h.sim("latency", "ack_timeout", "0.2")
    h.sim("fault", op, "web01", fault)

    res = h.run("stop")

    res.message_about("web01", op, cause)


# -- zombies --------------------------------------------------------------------------------------------


def test_a_zombie_gets_no_command_and_only_zombies_left_means_no_shutdown_all(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("undead", 512, 2, "--p--d")])
    zombie_id = str(h.domains()["undead"].domid)

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "(null)": "zombie"}  # real xl lists a zombie without its name
    finished = {e.guest: e for e in res.of(ev.GuestFinished)}
    assert finished["(null)"].domid == int(zombie_id) and "dying (--p--d)" in finished["(null)"].detail
    select = next(e for e in res.of(ev.StageFinished) if e.stage == "select")
    assert select.detail == "1 selected, 0 skipped, 1 dying (left alone)"
    assert not any(zombie_id in h_["argv"] for h_ in h.history()), "a zombie got a command"
    sweep = [e for e in res.of(ev.StageFinished) if e.stage == "shutdown_all"]
    assert [(e.outcome, e.detail) for e in sweep] == [("skipped", "only zombies remain")]
    assert h.history("shutdown") == []
    assert h.has_valid_image("web01") and not h.image_of("undead").exists()
    h.assert_save_dir_clean()
    h.assert_lock_gone()


def test_several_zombies_all_listed_as_null_are_each_reported_by_domid(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("z1", 512, 1, "--p--d"), ("z2", 512, 2, "--p--d")])
    ids = sorted(d.domid for n, d in h.domains().items() if n != "web01")

    res = h.run("stop", json_out=False)

    assert res.returncode == 0, res.stdout + res.stderr
    for domid in ids:
        assert f" (null)(zomb) zombie, domid {domid}" in res.stdout, res.stdout
    rep = _last_report(h)
    zombies = [g for g in rep.guests if g.guest == "(null)"]
    assert sorted(g.domid for g in zombies) == ids and all(g.outcome == "zombie" for g in zombies)
    assert [g.detail for g in zombies] == [f"domain {i} dying (--p--d): no migrate, save or shutdown" for i in ids]


def test_a_guest_that_turns_zombie_on_shutdown_ends_the_run_without_a_sweep(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], XENDOMAINS_SAVE="")
    h.sim("fault", "shutdown", "web01", "zombie")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "shutdown"}
    assert h.domains()["web01"].dying
    sweep = [e for e in res.of(ev.StageFinished) if e.stage == "shutdown_all"]
    assert [(e.outcome, e.detail) for e in sweep] == [("skipped", "only zombies remain")]
    assert [x["argv"][1:] for x in h.history()] == [["shutdown", "--wait", str(h.domains()["web01"].domid)]]
    h.assert_lock_gone()


# -- disk full during save --------------------------------------------------------------------------------


def test_disk_full_during_save_leaves_no_partial_image_and_falls_back_to_shutdown(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    h.sim("fault", "save", "web01", "enospc")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "shutdown", "db": "saved"}
    assert res.stage_outcomes("web01") == {"save": "failed", "shutdown": "done"}
    res.message_about("web01", "save", "failed", "falls back to shutdown")
    assert any("No space left on device" in e.stderr for e in res.of(ev.CommandFinished) if e.guest == "web01")
    # the failed xl save really wrote half an image, to the temporary name, and it was removed
    saves = [x for x in h.history("save") if x["rc"] != 0]
    assert len(saves) == 1 and Path(saves[0]["argv"][-1]).name.startswith(PARTIAL_PREFIX)
    assert not Path(saves[0]["argv"][-1]).exists()
    assert not h.image_of("web01").exists()
    assert h.has_valid_image("db")
    assert h.running() == set()
    h.assert_save_dir_clean()
    h.assert_lock_gone()


# -- a guest a failed save resumed has no toolstack monitor (real Xen 4.17) ---------------------------------


def test_after_a_failed_save_the_shutdown_leaves_the_guest_shut_down_and_the_stop_destroys_its_remains(tmp_path):
    """Real xl: the `xl create` that applies on_poweroff exits when the save suspends the guest, so after the
    save failed and resumed it, its shutdown leaves it listed `---s--`.  The stop destroys those remains
    promptly instead of leaving them (and shutdown-all waiting on them until its watchdog)."""
    h = E2EHost.make(tmp_path, guests=[("filled", 512, 1), ("db", 512, 1)], XENDOMAINS_STOP_MAXWAIT=60,
                     XENDOMAINS_SHUTDOWN_ALL="--all --wait")
    h.sim("fault", "save", "filled", "enospc")
    domid = h.domains()["filled"].domid

    res = h.run("stop", json_out=False)

    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning: filled: shut down; destroyed the remains because no toolstack monitor did" in res.stderr
    assert " SHUTDOWN_ALL skipped: no guest remains" in res.stdout
    assert h.domains() == {}  # db saved, filled's remains destroyed
    argv = [x["argv"][1:] for x in h.history() if x["argv"][1:2] in (["shutdown"], ["destroy"])]
    assert argv == [["shutdown", "--wait", str(domid)], ["destroy", str(domid)]]  # its shutdown, then the destroy
    rep = _last_report(h)
    assert rep.guest("filled").outcome == "shutdown"
    assert rep.guest("filled").detail == "shut down; destroyed the remains because no toolstack monitor did"
    h.assert_lock_gone()


def test_a_guest_found_shut_down_and_not_destroyed_gets_no_command_but_a_destroy(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("off", 512, 1, "---s--")])
    off = h.domains()["off"].domid

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "off": "shutdown"}
    assert res.message_about("off", "shut down; destroyed the remains because no toolstack monitor did")
    assert [x["argv"][1:] for x in h.history() if str(off) in x["argv"]] == [["destroy", str(off)]]
    assert h.domains() == {} and not h.image_of("off").exists()
    sweep = [(e.outcome, e.detail) for e in res.of(ev.StageFinished) if e.stage == "shutdown_all"]
    assert sweep == [("skipped", "no guest remains")]


def test_shutdown_all_destroys_remains_first_so_that_it_does_not_wait_on_them(tmp_path):
    """AUTO_ONLY leaves `off` (shut down, no monitor) and `other` to shutdown-all: real `xl shutdown -a -w`
    would wait on `off` until its watchdog; its remains are destroyed first, the sweep ends at once."""
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("other", 512, 1), ("off", 512, 1, "---s--")],
                     auto=["web01"], XENDOMAINS_AUTO_ONLY="true", XENDOMAINS_STOP_MAXWAIT=60)

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved"}
    res.message_about("off", "destroyed the remains")
    sweep = [(e.outcome, e.detail) for e in res.of(ev.StageFinished) if e.stage == "shutdown_all"]
    assert sweep == [("done", "other")]
    assert h.domains() == {}


# -- a restore that fails at boot -------------------------------------------------------------------------


def _status_json(h: E2EHost) -> tuple[int, dict]:
    res = h.run("status")
    line = next(l for l in res.stdout.splitlines() if '"event": "status"' in l or '"event":"status"' in l)
    return res.returncode, json.loads(line)


@pytest.mark.parametrize("how", ["fault", "truncated"])
def test_a_failed_restore_quarantines_the_image_reports_it_and_does_not_autostart_the_guest(tmp_path, how):
    h = E2EHost.make(tmp_path, saved=[("web01", 512, 1), ("wiki", 512, 1)], auto=["web01", "wiki"])
    image = h.image_of("wiki")
    if how == "fault":
        h.sim("fault", "restore", "wiki", "fail")
    else:
        data = image.read_bytes()
        image.write_bytes(data[: len(data) - 40])  # the stream is cut short (a disk died mid-save)
    original = image.read_bytes()

    res = h.run("start")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"wiki": "failed", "web01": "restored"}
    quarantined = h.save_dir / QUARANTINE / image.name
    assert not image.exists() and quarantined.read_bytes() == original, "the image is never deleted"
    msg = res.message_about("wiki", "restor")
    assert str(quarantined) in msg.text
    skipped = {e.guest: e.reason for e in res.of(ev.GuestSkipped)}
    assert skipped == {}  # wiki's outcome is "failed" (its restore), web01's "restored": neither is also "skipped"
    assert h.running() == {"web01"}
    assert not any(x["argv"][1] == "create" for x in h.history()), "wiki was autostarted"
    assert os.path.lexists(h.lock)  # web01 runs: the service is started

    # status names it (exit 1: started, but an image waits for an administrator)
    code, status = _status_json(h)
    assert code == 1
    assert status["quarantined"] == [{"guest": "wiki", "path": str(quarantined)}]
    human = h.run("status", json_out=False)
    assert f"QUARANTINED: wiki: {quarantined}" in human.stdout
    assert "a restore of it failed, or the save that wrote it did not finish" in human.stdout  # never blamed on one cause
    if how == "truncated":
        return

    # the next boot neither retries the restore nor autostarts it, and says why
    assert h.run("stop").returncode == 0
    again = h.run("start")
    again.message_about("wiki", "quarantined")
    assert again.outcomes == {"web01": "restored"}
    assert h.running() == {"web01"}
    assert quarantined.read_bytes() == original
    assert [x for x in h.history("restore") if "wiki" in " ".join(x["argv"])] == \
        [x for x in h.history("restore") if x["rc"] != 0], "the quarantined image was restored again"


# -- stop killed with SIGKILL, then run again --------------------------------------------------------------


def _kill_mid_second_save(h: E2EHost) -> subprocess.Popen:
    """Start a stop and SIGKILL it once the first guest is saved and the second one's save runs."""
    proc = h.popen("stop")
    try:
        def second_save_running():
            evs = read_progress(h.progress)
            done = [e for e in evs if isinstance(e, ev.GuestFinished) and e.outcome == "saved"]
            started = [e for e in evs if isinstance(e, ev.CommandStarted) and "save" in e.argv]
            suspended = any(d.flags == "---ss-" for d in h.domains().values())  # xl is past its suspend point
            return len(done) == 1 and len(started) == 2 and h.partials() and suspended
        wait_for(second_save_running, what="the first guest saved and the second save started")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return proc


def test_stop_killed_alone_mid_save_lets_xl_finish_and_the_next_start_restores_the_completed_image(tmp_path):
    """The issue's finding 1 (simulator): xl outlives its run; the next start promotes its image, never deletes it."""
    names = ["g1", "g2", "g3"]
    h = E2EHost.make(tmp_path, guests=[(n, 512, 1) for n in names], auto=names, XENDOMAINS_STOP_MAXWAIT=30)
    h.sim("latency", "save", "0.6")
    _kill_mid_second_save(h)
    assert os.path.lexists(h.lock), "a SIGKILLed run cannot remove its lock"
    assert len(h.partials()) == 1 and list((h.save_dir / ".xendomains-journal").iterdir())

    boot = h.run("start")  # waits for the orphaned xl, then settles: the save completed

    assert boot.returncode == 0, boot.describe()
    second = next(n for n in names if n in boot.outcomes and boot.outcomes[n] == "restored" and n != "g1")
    boot.message_about(second, "save completed")
    assert boot.outcomes == {"g1": "restored", second: "restored"}  # the third was never stopped: still running
    assert h.running() == set(names) and h.save_entries() == []


def test_stop_killed_with_its_xl_mid_save_leaves_the_guest_suspended_and_every_verb_says_so(tmp_path):
    """Real Xen's version of finding 1: xl dies with the run (cgroup kill) and the guest stays `---ss-`."""
    names = ["g1", "g2", "g3"]
    h = E2EHost.make(tmp_path, guests=[(n, 512, 1) for n in names], auto=names, XENDOMAINS_STOP_MAXWAIT=30)
    h.sim("latency", "save", "2.0")  # long enough that the second save is surely cut short, even on a busy machine
    _kill_mid_second_save(h)
    assert kill_xl_children(h.layout.bin_dir), "the xl save child should still have been running"
    second = next(n for n, d in h.domains().items() if d.flags == "---ss-")
    h.sim("latency", "save", "0.01")

    res = h.run("stop")

    assert res.returncode == 1, res.describe()
    third = next(n for n in names if n not in ("g1", second))
    assert res.outcomes == {second: "suspended", third: "saved"}
    res.message_about(second, "SUSPENDED", "not running")
    assert h.partials() == [] and [p.name for p in (h.save_dir / QUARANTINE).iterdir()] == [second]
    h.assert_lock_gone()

    boot = h.run("start")
    assert boot.outcomes == {"g1": "restored", third: "restored", second: "suspended"}, boot.describe()
    assert boot.returncode == 1
    assert h.domains()[second].flags == "---ss-"  # nothing was done to it without the admin's choice


# -- two stops at once --------------------------------------------------------------------------------------


def test_two_stops_at_once_handle_each_guest_exactly_once(tmp_path):
    names = ["a1", "a2", "a3"]
    h = E2EHost.make(tmp_path, guests=[(n, 512, 1) for n in names])
    h.sim("latency", "save", "0.3")

    p1 = h.popen("stop")
    p2 = h.popen("stop")
    r1, r2 = h.finish(p1), h.finish(p2)

    assert (r1.returncode, r2.returncode) == (0, 0), r1.describe() + r2.describe()
    outcomes = {**r1.outcomes, **r2.outcomes}
    assert outcomes == {n: "saved" for n in names}
    assert len(r1.outcomes) + len(r2.outcomes) == len(names), "a guest was handled by both runs"
    saves = h.history("save")
    assert len(saves) == len(names) and all(x["rc"] == 0 for x in saves)
    assert all(h.has_valid_image(n) for n in names)
    assert h.running() == set()
    h.assert_save_dir_clean()
    h.assert_lock_gone()


# -- malformed `xl list -l` ---------------------------------------------------------------------------------

_CORRUPT = {
    "truncated": "head -c 300",
    "garbage": "sed -e 's/\"domid\"/domid/'",
    "unknown-fields": (
        "python3 -c \"import json,sys; d=json.load(sys.stdin); "
        "[e.update({'xdsim_future': {'x': [1, None]}}) or e['config'].update({'brand_new': True}) for e in d]; "
        "print(json.dumps(d, indent=4))\""
    ),
}


def _corrupting_xl(h: E2EHost, how: str) -> Path:
    """A wrapper `xl` ahead of the shim on PATH that corrupts only `xl list -l` output."""
    wrap = h.root / f"wrap-{how}"
    wrap.mkdir()
    real = h.layout.bin_dir / "xl"
    script = wrap / "xl"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = list ] && [ "$2" = -l ]; then "{real}" "$@" | {_CORRUPT[how]}; exit 0; fi\n'
        f'exec "{real}" "$@"\n'
    )
    script.chmod(0o755)
    h.path_dirs = [wrap, h.layout.bin_dir]
    return wrap


def test_unknown_fields_in_xl_list_long_are_ignored_and_the_stop_goes_on(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    _corrupting_xl(h, "unknown-fields")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    assert all(h.has_valid_image(n) for n in ("web01", "db"))
    h.assert_lock_gone()


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_xl_list_long_ends_with_a_clear_message_and_loses_nothing(tmp_path, how):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    _corrupting_xl(h, how)

    res = h.run("stop")

    assert res.returncode in (0, 1), res.describe()
    no_traceback(res)
    assert any("xl list -l" in m.text for m in res.messages("warning", "error")), res.describe()
    for name in ("web01", "db"):  # each guest is either untouched or safely saved: never destroyed or half-saved
        assert name in h.running() or h.has_valid_image(name)
    h.assert_save_dir_clean()
    h.assert_lock_gone()


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_xl_list_long_still_evacuates_every_guest_from_the_plain_listing(tmp_path, how):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    _corrupting_xl(h, how)

    res = h.run("stop")

    assert any("xl list -l" in m.text for m in res.messages("warning", "error")), res.describe()
    assert h.running() == set()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    assert res.returncode == 0
    h.assert_lock_gone()


# -- xl missing from PATH ------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb,code", [("stop", 5), ("start", 5), ("status", 3)])
def test_without_xl_or_xm_on_path_each_verb_says_so_and_leaves_no_lock(tmp_path, verb, code):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], auto=["web01"])
    env = h.env(path_dirs=[], system_path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert subprocess.run(["sh", "-c", "command -v xl || command -v xm"], env=env, capture_output=True).returncode != 0

    res = h.run(verb, env=env)

    assert res.returncode == code, res.describe()
    assert "neither xl nor xm found on PATH" in res.stderr
    no_traceback(res)
    assert h.running() == {"web01"}
    assert not os.path.lexists(h.lock)


# -- the save directory on a read-only filesystem -----------------------------------------------------------


@pytest.fixture
def readonly_save_dir(tmp_path):
    """An E2EHost whose save directory is a read-only tmpfs (or, without mount rights, under a regular FILE)."""
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    mnt = h.save_dir
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64g", "xdtest", str(mnt)],
                             capture_output=True).returncode == 0
    if mounted:
        if subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", str(mnt)], check=False)
            mounted = False
    if mounted:
        h.how = "read-only tmpfs"  # type: ignore[attr-defined]
    else:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a regular file where a directory should be\n")
        h.configure(XENDOMAINS_SAVE=str(blocker / "save"))
        h.layout = type(h.layout)(**{**h.layout.__dict__, "save_dir": blocker / "save"})
        h.how = "ENOTDIR"  # type: ignore[attr-defined]
    try:
        yield h
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_save_directory_makes_every_save_fail_cleanly_and_guests_shut_down(readonly_save_dir):
    h = readonly_save_dir

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "shutdown", "db": "shutdown"}
    for name in ("web01", "db"):
        assert res.stage_outcomes(name) == {"save": "failed", "shutdown": "done"}
        res.message_about(name, "save", "failed", "falls back to shutdown")
    if h.how == "read-only tmpfs":
        # the directory exists; xl itself cannot create the file: the message names the path it tried
        res.message_about("web01", "save", str(h.save_dir))
    else:
        res.message_about("web01", "save", "Not a directory")
    assert h.running() == set()
    assert h.save_entries() == []
    h.assert_lock_gone()


# -- the lock file replaced by a symlink ---------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["stop", "start"])
def test_a_symlinked_lock_file_is_never_followed(tmp_path, verb):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)] if verb == "stop" else [],
                     saved=[("web01", 512, 1)] if verb == "start" else [])
    target = tmp_path / "precious"
    target.write_text("do not touch\n")
    os.utime(target, (1_000_000_000, 1_000_000_000))
    h.lock.parent.mkdir(parents=True, exist_ok=True)
    h.lock.symlink_to(target)

    res = h.run(verb)

    assert res.returncode == 0, res.describe()
    assert target.read_text() == "do not touch\n" and target.stat().st_mtime == 1_000_000_000
    res.message_about(str(h.lock), "symlink")
    if verb == "stop":
        assert res.outcomes == {"web01": "saved"}
        h.assert_lock_gone()
    else:
        assert res.outcomes == {"web01": "restored"}
        assert h.lock.is_file() and not h.lock.is_symlink()  # a guest runs: the lock stays, as a real file


# -- hostile guest names ---------------------------------------------------------------------------------------

ODD_NAMES = ["my guest", "gäst-ü ☃", "../escape", "../../etc/passwd", "a/b", ".hidden", "-dash"]


def test_guest_names_with_spaces_unicode_or_dots_are_saved_inside_save_and_restored(tmp_path):
    h = E2EHost.make(tmp_path, XENDOMAINS_PARALLEL=4)
    for n in ODD_NAMES:
        h.add_guest(n, 256, 1)
    before = set(tmp_path.rglob("*"))

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {n: "saved" for n in ODD_NAMES}
    for n in ODD_NAMES:
        img = h.image_of(n)
        assert img.parent == h.save_dir and image_is_complete(img), n
    assert len(h.save_entries()) == len(ODD_NAMES)
    h.assert_save_dir_clean()
    ours = (h.save_dir, h.lock.parent, h.progress.parent)
    new = [p for p in set(tmp_path.rglob("*")) - before if not any(p == d or d in p.parents for d in ours)]
    assert new == [], f"written outside SAVE: {new}"
    h.assert_lock_gone()

    boot = h.run("start")

    assert boot.returncode == 0, boot.describe()
    assert boot.outcomes == {n: "restored" for n in ODD_NAMES}
    assert h.running() == set(ODD_NAMES)
    assert h.save_entries() == []


# -- shell metacharacters in config values -----------------------------------------------------------------------


def test_shell_metacharacters_in_the_migrate_string_reach_xl_as_plain_words_and_never_run(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)])
    p1, p2, p3 = (tmp_path / f"pwned{i}" for i in (1, 2, 3))
    settings = "".join(f"{k}='{v}'\n" for k, v in h.settings.items() if k != "XENDOMAINS_MIGRATE")
    h.write_config(settings + f"XENDOMAINS_MIGRATE='host2; touch {p1}'\n")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert not p1.exists()
    domid = str(res.of(ev.GuestPlanned)[0].domid)
    migrates = h.history("migrate")
    assert [m["argv"] for m in migrates] == [["xl", "migrate", "host2;", "touch", domid, str(p1)]]
    assert migrates[0]["rc"] != 0
    assert res.outcomes == {"web01": "saved"}  # the failed migrate fell through to save
    res.message_about("web01", "migrat")
    h.assert_lock_gone()

    # command substitution, double-quoted so that a shell would run it: kept literally, warned about
    h2 = E2EHost.make(tmp_path / "second", guests=[("web01", 512, 1)])
    settings = "".join(f"{k}='{v}'\n" for k, v in h2.settings.items() if k != "XENDOMAINS_MIGRATE")
    h2.write_config(settings + f'XENDOMAINS_MIGRATE="host2 $(touch {p2}) `touch {p3}`"\n')

    res2 = h2.run("stop")

    assert res2.returncode == 0, res2.describe()
    assert not p2.exists() and not p3.exists()
    assert "command substitution" in res2.stderr and "not executed" in res2.stderr
    domid = str(res2.of(ev.GuestPlanned)[0].domid)
    assert [m["argv"] for m in h2.history("migrate")] == [
        ["xl", "migrate", "host2", "$(touch", f"{p2})", "`touch", domid, f"{p3}`"]
    ]
    assert res2.outcomes == {"web01": "saved"}
    h2.assert_lock_gone()


# -- signals -------------------------------------------------------------------------------------------------


def _wait_save_started(h: E2EHost, n: int = 1) -> None:
    wait_for(lambda: len([e for e in read_progress(h.progress) if isinstance(e, ev.CommandStarted) and "save" in e.argv]) >= n,
             what=f"{n} save(s) started")


def _last_report(h: E2EHost, verb: str = "stop"):
    from xdcore.config import load_config
    from xdcore.report import load_last

    return load_last(load_config(str(h.config)), verb, [h.progress.parent])


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_to_a_stop_starts_no_new_stage_lets_the_running_save_finish_and_reports_every_guests_true_state(tmp_path, signame):
    names = ["g1", "g2", "g3"]
    h = E2EHost.make(tmp_path, guests=[(n, 512, 1) for n in names], XENDOMAINS_STOP_MAXWAIT=30)
    h.sim("latency", "save", "1.0")
    proc = h.popen("stop")
    _wait_save_started(h)
    proc.send_signal(getattr(signal, signame))
    res = h.finish(proc)

    assert res.returncode == 1, res.describe()
    saved = [n for n, o in res.outcomes.items() if o == "saved"]
    assert len(saved) == 1 and h.has_valid_image(saved[0]), "the running save finished within its watchdog"
    others = [n for n in names if n not in saved]
    assert all(res.outcomes[n] == "skipped" for n in others)
    assert h.running() == set(others) and len(h.history("save")) == 1  # no new stage started
    for n in names:
        res.message_about(n, f"{n} now:")
    finished = res.of(ev.RunFinished)[-1]
    assert finished.exit_code == 1 and f"interrupted by {signame}" in finished.summary
    rep = _last_report(h)
    assert rep.exit_code == 1 and f"interrupted by {signame}" in rep.summary
    assert all(any("now:" in note for note in rep.guest(n).notes) for n in names)
    h.assert_lock_gone()
    h.assert_save_dir_clean()


@pytest.mark.parametrize("verb", ["restart", "try-restart"])
def test_a_restart_whose_stop_is_interrupted_runs_no_start_and_exits_with_the_stops_status(tmp_path, verb):
    h = E2EHost.make(tmp_path, guests=[("g1", 512, 1), ("g2", 512, 1)], auto=["g1", "g2"], XENDOMAINS_STOP_MAXWAIT=30)
    assert h.run("start").returncode == 0  # started: the lock exists (try-restart restarts only then)
    h.sim("latency", "save", "1.0")
    proc = h.popen(verb)
    _wait_save_started(h)
    proc.send_signal(signal.SIGTERM)
    res = h.finish(proc)

    assert res.returncode == 1, res.describe()
    assert "the stop was interrupted by SIGTERM (exit 1); start was not run" in res.stderr
    saved = [n for n, o in res.outcomes.items() if o == "saved"]
    assert len(saved) == 1 and h.has_valid_image(saved[0])  # the save running at the signal finished
    assert not h.history("restore") and not h.history("create")  # and nothing was started again
    assert h.running() == {"g1", "g2"} - set(saved)
    assert not [e for e in res.of(ev.RunStarted) if e.verb == "start"]
    assert _last_report(h).exit_code == 1


def test_a_second_signal_kills_the_running_commands_and_the_report_is_still_written(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("stuck", 512, 1), ("next", 512, 1)], XENDOMAINS_STOP_MAXWAIT=300)
    h.sim("fault", "save", "stuck", "hang")
    proc = h.popen("stop")
    _wait_save_started(h)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any(isinstance(e, ev.MessageLogged) and "interrupted by SIGTERM" in e.text for e in read_progress(h.progress)),
             what="the first signal taken")
    proc.send_signal(signal.SIGTERM)
    res = h.finish(proc, timeout=30)

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"stuck": "suspended", "next": "skipped"}  # real xl killed mid-save leaves it suspended
    res.message_about("stuck", "now:", "SUSPENDED")
    assert h.domains()["stuck"].flags == "---ss-" and "next" in h.running()
    rep = _last_report(h)
    assert rep.exit_code == 1 and "interrupted by SIGTERM" in rep.summary
    assert rep.guest("stuck").outcome == "suspended"
    h.assert_lock_gone()


# -- every command bounded: hangs on sysrq, restore, create, shutdown-all and list ---------------------------


def test_a_hung_sysrq_is_killed_by_the_watchdog_and_the_guest_is_still_saved(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], XENDOMAINS_SYSRQ="s", XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("fault", "sysrq", "web01", "hang")

    res = h.run("stop")

    assert res.outcomes == {"web01": "saved"}, res.describe()
    assert res.stage_outcomes("web01") == {"sysrq": "timeout", "save": "done"}
    assert [e.timeout for e in res.of(ev.CommandStarted) if "sysrq" in e.argv] == [1.0]
    h.assert_lock_gone()


def test_a_hung_restore_is_killed_its_image_quarantined_because_the_guest_did_not_come_up(tmp_path):
    h = E2EHost.make(tmp_path, saved=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_START_MAXWAIT=1)
    h.sim("fault", "restore", "web01", "hang")
    image = h.image_of("web01")
    original = image.read_bytes()

    res = h.run("start")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"web01": "failed", "db": "restored"}
    res.message_about("web01", "restor", "killed by the watchdog after 1s")
    assert (h.save_dir / QUARANTINE / image.name).read_bytes() == original
    assert h.running() == {"db"}


def test_a_hung_create_is_killed_and_reported_and_the_next_guest_is_still_created(tmp_path):
    h = E2EHost.make(tmp_path, XENDOMAINS_START_MAXWAIT=1)
    for n in ("a-stuck", "b-fine"):
        h.add_guest(n, 256, 1, auto=True)
    with simhost.transaction(h.state) as st:  # configs only: nothing runs yet
        st.domains = [d for d in st.domains if d.domid == 0]
    h.sim("fault", "create", "a-stuck", "hang")

    res = h.run("start")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"a-stuck": "failed", "b-fine": "created"}
    res.message_about("a-stuck", "creat", "killed by the watchdog after 1s")
    assert "b-fine" in h.running()


def test_a_hung_shutdown_all_ends_within_its_watchdog_naming_what_is_left(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("other", 512, 1)], auto=["web01"],
                     XENDOMAINS_AUTO_ONLY="true", XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("fault", "shutdown", "other", "hang")  # not selected: only the final sweep reaches it

    res = h.run("stop")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"web01": "saved"}
    sweep = [e for e in res.of(ev.StageFinished) if e.stage == "shutdown_all"]
    assert [e.outcome for e in sweep] == ["timeout"]
    assert any("other" in m.text for m in res.messages("error") if "all remaining" in m.text)
    h.assert_lock_gone()


@pytest.mark.parametrize("verb", ["stop", "start", "status"])
def test_a_hung_xl_list_ends_within_its_watchdog_with_a_clear_message(tmp_path, verb):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], auto=["web01"], XENDOMAINS_STOP_MAXWAIT=1,
                     XENDOMAINS_START_MAXWAIT=1)
    h.sim("fault", "list", "*", "hang")

    res = h.run(verb, timeout=40)  # the list watchdog is at least 5 s; the run must end long before this

    assert res.returncode != 0, res.describe()
    no_traceback(res)
    assert "xl list killed by the watchdog after 5s" in res.text()
    assert not os.path.lexists(h.lock) or verb == "status"


# -- the way out for a guest left suspended -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["resave", "recreate"])
def test_resume_brings_back_a_guest_a_dead_save_left_suspended_only_when_asked(tmp_path, how):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], auto=["web01"], XENDOMAINS_STOP_MAXWAIT=1)
    h.sim("latency", "ack_timeout", "0.2")
    h.sim("fault", "save", "web01", "hang")
    assert h.run("stop").outcomes == {"web01": "suspended"}
    h.sim("clear")
    before = [x for x in h.history() if x["argv"][1] in ("destroy", "create")]
    quarantined = sorted((h.save_dir / QUARANTINE).iterdir())
    uuid = h.domains()["web01"].uuid

    res = h.run("resume", "web01", *(["--recreate"] if how == "recreate" else []))

    assert res.returncode == 0, res.describe()
    assert h.running() == {"web01"} and h.domains()["web01"].flags != "---ss-"
    if how == "resave":  # the same guest (same UUID), its memory kept: saved again, then restored
        assert res.outcomes == {"web01": "restored"}
        assert h.domains()["web01"].uuid == uuid
        assert [x["argv"][1] for x in h.history()[-2:]] == ["save", "restore"]
        assert [x for x in h.history() if x["argv"][1] in ("destroy", "create")] == before
    else:  # only by explicit choice: destroyed and created afresh
        assert res.outcomes == {"web01": "created"}
        assert [x["argv"][1] for x in h.history()[-2:]] == ["destroy", "create"]
    assert sorted((h.save_dir / QUARANTINE).iterdir()) == quarantined  # the partial is never touched
    assert h.partials() == [] and not h.image_of("web01").exists()


def test_resume_refuses_a_guest_that_is_not_suspended(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)])
    res = h.run("resume", "web01")
    assert res.returncode == 1 and "not suspended" in res.text()
    assert h.run("resume").returncode == 2
    assert h.history() == []
