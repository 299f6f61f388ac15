"""The installed `xendomains` driving real `xl` on Xen 4.17 (booted in QEMU): what real Xen and the guests did.

Every scenario ran in the one boot of the session (see conftest.py); these tests read the facts
the dom0 runner recorded (tests/realxen/dom0/scenarios.py): real `xl list` snapshots, the guests'
own consoles (/var/log/xen/console), the save directory, the `xl` processes seen running.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.realxen.harness import Boot

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "xen" / "real-4.17"
XL_IMAGE_MAGIC = bytes.fromhex("58656e20736176656420646f6d61696e2c20786c20666f726d61740a2000200d")  # "Xen saved domain, xl format\n \0 \r"
MIB = 1 << 20


def facts(boot: Boot, scenario: str) -> dict:
    r = boot.result(scenario)
    if r is None:
        pytest.fail(f"scenario {scenario} left no result (QEMU {boot.seconds:.0f}s, end marker "
                    f"{'seen' if boot.finished else 'missing'}); serial log {boot.serial}, its tail:\n{boot.tail()}")
    if r["error"]:
        pytest.fail(f"scenario {scenario} failed in dom0:\n{r['error']}\nsteps:\n{_steps(r)}\nserial tail:\n{boot.tail(25)}")
    f = r["facts"]
    f["_steps"] = _steps(r)
    return f


def _steps(r: dict) -> str:
    return "\n".join(f"  {s['label']}: rc={s['rc']} ({s['secs']}s)\n{_indent(s['stdout'])}{_indent(s['stderr'])}"
                     for s in r["steps"][-12:])


def _indent(text: str) -> str:
    return "".join(f"      {line}\n" for line in text.splitlines()[-25:])


def names(rows: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in rows if d["domid"] != 0}


def ok(step: dict, f: dict, rc: int = 0) -> None:
    assert step["rc"] == rc, f"{step['label']}: rc {step['rc']}, wanted {rc}\n{f['_steps']}"


@pytest.mark.realxen("start")
def test_start_restores_the_saved_image_and_creates_the_auto_guests(realxen):
    f = facts(realxen, "start")
    ok(f["gamma_save"], f)
    ok(f["start"], f)
    running = names(f["xl_list"]["after_start"])
    assert set(running) == {"alpha", "beta", "gamma"}, running
    # gamma was restored, not booted afresh: one boot on its console, and its uptime went on
    assert f["boots"]["gamma"] == f["gamma_boot_before"]
    assert f["gamma_heartbeat_after"] > f["gamma_last_heartbeat_before"]
    # the auto guests were created (each booted once)
    assert len(f["boots"]["alpha"]) == 1 and len(f["boots"]["beta"]) == 1
    assert f["save_dir_after"] == []  # the image was consumed
    ok(f["status"], f)
    assert f["lock_exists"]


@pytest.mark.realxen("stop")
def test_stop_saves_every_guest_whole_and_start_restores_them(realxen):
    f = facts(realxen, "stop")
    assert f["lock_exists_before_stop"]
    ok(f["stop"], f)
    assert names(f["xl_list"]["after_stop"]) == {}
    images = f["save_dir_after_stop"]
    assert sorted(images) == ["alpha", "beta", "gamma"], images  # no partial file, no journal left
    for name, img in images.items():
        assert img["size"] > 96 * MIB, (name, img)
        assert bytes.fromhex(img["head"]).startswith(XL_IMAGE_MAGIC), (name, img["head"])
    assert not f["lock_exists_after_stop"]
    ok(f["start"], f)
    assert set(names(f["xl_list"]["after_start"])) == {"alpha", "beta", "gamma"}
    # each image was whole: real `xl restore` brought back the same boot, and it went on running
    assert f["boots_after"] == f["boots_before"]
    for g, before in f["heartbeat_before"].items():
        assert f["heartbeat_after"][g] > before, g
    assert f["save_dir_after_start"] == []


@pytest.mark.realxen("stop")
def test_xdtui_shows_the_real_stop_on_its_stage_board(realxen):
    f = facts(realxen, "stop")
    assert f.get("tui_tmux_rc") == 0, f.get("tui_tmux_err")
    assert f.get("tui_ready"), "xdtui never drew its screen:\n" + "\n".join(f.get("tui_captures", [])[-1:])
    board = "\n".join(f["tui_captures"])
    for g in ("alpha", "beta", "gamma"):
        assert g in board, board[-3000:]
    assert "save" in board.lower(), board[-3000:]


@pytest.mark.realxen("sysrq")
def test_sysrq_then_shutdown_shows_on_the_guests_consoles(realxen):
    f = facts(realxen, "sysrq")
    ok(f["stop"], f)
    assert names(f["xl_list"]["after_stop"]) == {}
    for g, text in f["console_during"].items():
        assert "sysrq: Emergency Sync" in text, (g, text[-1500:])
        assert "GUEST-SHUTDOWN-ACTION" in text, (g, text[-1500:])  # init ran its shutdown actions: a clean poweroff
        assert text.index("sysrq: Emergency Sync") < text.index("GUEST-SHUTDOWN-ACTION"), g


@pytest.mark.realxen("watchdog")
def test_a_guest_ignoring_the_poweroff_is_caught_by_the_watchdog(realxen):
    f = facts(realxen, "watchdog")
    ok(f["stop"], f, rc=1)
    assert "GUEST-IGNORES-POWEROFF" in f["console"]["stubborn"]
    stubborn = names(f["xl_list"]["after_stop"])["stubborn"]
    assert "d" not in stubborn["state"]  # it ignored us: still there
    seen = f["xl_seen"]["commands"]
    shutdowns = [c for c in seen if c["args"][:1] == ["shutdown"]]
    one = [c for c in shutdowns if str(stubborn["domid"]) in c["args"]]
    every = [c for c in shutdowns if "-a" in c["args"] or "--all" in c["args"]]
    assert one and every, seen  # its own shutdown, then shutdown-all
    assert one[0]["last"] < every[0]["first"]
    for c in one + every:  # each ran until the 15 s watchdog (seen from its first sample: a little less)
        assert c["last"] - c["first"] >= 10, c
    # the watchdog killed them (the guest still runs, so they would have waited for ever); only the
    # `xl create` that watches the guest for its whole life is left
    assert [a[1] for a in f["xl_left"]] == ["create"], f["xl_left"]
    report = f["report"]
    assert report is not None
    text = f["report_text"]["stdout"]
    assert "stubborn" in text, text
    assert not f["lock_exists"]


@pytest.mark.realxen("badsave")
def test_a_save_that_runs_out_of_room_falls_back_to_shutdown_and_leaves_nothing_to_restore(realxen):
    f = facts(realxen, "badsave")
    # real xl on a full file system: fails, and resumes the guest (what the stop pipeline builds on)
    ok(f["xl_save_enospc"], f, rc=1)
    assert "Failed to save domain, resuming domain" in f["xl_save_enospc"]["stderr"]
    assert f["heartbeat_after_enospc"] > f["heartbeat_before_enospc"]
    assert "filled" in names(f["xl_list"]["before"])
    assert f["partial_seen"], "the save never started writing"
    assert f["filler_stopped"] == "No space left on device"
    seen = [c["args"] for c in f["xl_seen"]["commands"]]
    save = next(i for i, a in enumerate(seen) if a[:1] == ["save"])
    shutdown = next(i for i, a in enumerate(seen) if a[:1] == ["shutdown"] and "--all" not in a)
    assert save < shutdown, seen  # the failed save fell back to shutdown
    # the guest went down cleanly (its own init's shutdown, then the kernel's halt)
    assert "GUEST-SHUTDOWN-ACTION" in f["console"]["filled"] and "reboot: System halted" in f["console"]["filled"]
    # Real xl: the `xl create` that would destroy it at power-off (on_poweroff="destroy") stopped watching
    # when the save suspended it, so after the failed save the powered-off guest would stay listed, shut down
    # (`---s--`), for good.  The stop sees it stay so and destroys its remains at once (not after a watchdog).
    ok(f["stop"], f)
    assert "filled: shut down; destroyed the remains because no toolstack monitor did" in f["stop"]["stderr"], f["_steps"]
    assert "filled" not in names(f["xl_list"]["after_stop"]), f["xl_list"]["after_stop"]
    run = [a[1:] for a in f["commands_run"] if a[:1] == ["xl"] and a[1:2] in (["shutdown"], ["destroy"])]
    assert run == [["shutdown", "--wait", str(f["domid"])], ["destroy", str(f["domid"])]], run  # no shutdown --all
    assert f["stop"]["secs"] < 60, f["stop"]  # well before the 60 s watchdog
    guest = next(g for g in f["report"]["guests"] if g["guest"] == "filled")
    assert (guest["outcome"], guest["detail"]) == ("shutdown", "shut down; destroyed the remains because no toolstack monitor did")
    assert f["save_dir_after_stop"] == ["filler"], f["save_dir_after_stop"]  # no image, no partial, no journal
    ok(f["start"], f)
    assert names(f["xl_list"]["after_start"]) == {}  # nothing restored, nothing left
    assert f["save_dir_after_start"] == []


@pytest.mark.realxen("parallel")
def test_parallel_stop_saves_four_guests_at_once_and_never_touches_the_zombie(realxen):
    f = facts(realxen, "parallel")
    zombies = [d for d in f["xl_list"]["before"] if d["state"].endswith("d")]
    assert len(zombies) == 1, f["xl_list"]["before"]
    zid = str(zombies[0]["domid"])
    ok(f["stop"], f)
    assert sorted(f["save_dir_after_stop"]) == ["p1", "p2", "p3", "p4"], f["save_dir_after_stop"]
    assert all(size > 96 * MIB for size in f["save_dir_after_stop"].values())
    assert f["xl_seen"]["peak"].get("save", 0) >= 3, f["xl_seen"]
    for c in f["xl_seen"]["commands"]:
        assert zid not in c["args"], c  # no xl command ever named the zombie
    after = f["xl_list"]["after_stop"]
    assert [d["domid"] for d in after if d["domid"] != 0] == [int(zid)], after  # only the zombie remains
    assert not [d for d in f["xl_list"]["after_release"] if d["domid"] != 0]  # and goes once dom0 lets go


@pytest.mark.realxen("migrate")
def test_migrate_to_localhost_moves_the_guest_or_falls_back_cleanly(realxen):
    """XENDOMAINS_MIGRATE="-s FAKE-SSH localhost": real `xl migrate` to this very host.

    Under QEMU/TCG Xen cannot put the PV guest in log-dirty mode, so real xl's live migration fails at
    the sender ("Failed to enable logdirty") once the receiver is ready; the service must then fall
    through (save disabled here) to a clean shutdown.  Where Xen can, the guest must move, same boot."""
    f = facts(realxen, "migrate")
    ok(f["stop"], f)
    before = names(f["xl_list"]["before"])["wanderer"]
    seen = f["xl_seen"]["commands"]
    migrate = [c for c in seen if c["args"][:1] == ["migrate"]]
    assert migrate and migrate[0]["args"][-2:] == [str(before["domid"]), "localhost"], seen
    assert [c for c in seen if c["args"][:1] == ["migrate-receive"]], seen  # the fake ssh reached the receiver
    after = names(f["xl_list"]["after_stop"])
    if "wanderer" in after:  # migrated: a new domain, the same boot going on
        assert after["wanderer"]["domid"] != before["domid"], after
        assert f["boots_after"] == f["boots_before"]
        assert f["heartbeat_after"] and f["heartbeat_after"] > f["heartbeat_before"]
    else:  # the migration failed: it fell back to a clean shutdown, nothing left half-migrated
        assert "Failed to enable logdirty" in f["migrate_stderr"], f["migrate_stderr"]
        assert any(c["args"][:1] == ["shutdown"] and c["first"] > migrate[0]["last"] for c in seen), seen
        assert "reboot: System halted" in f["console"]["wanderer"]
        assert not [n for n in after if n.startswith("wanderer")], after


@pytest.mark.realxen("xlsave")
def test_what_xl_save_does_when_whoever_started_it_dies(realxen):
    """The facts the crash-safe save is built on (README "Tested on real Xen")."""
    f = facts(realxen, "xlsave")
    # own session, output to a file, parent SIGKILLed: xl finishes, the guest is gone, the image is whole
    assert f["a_size_final"] > 96 * MIB > f["a_size_at_parent_kill"]
    assert "probe" not in names(_rows(f["a_list_after"]))
    assert f["a_stderr"].rstrip().endswith("xc: progress: End of stream: 0/0    0%")
    ok(f["a_restore"], f)
    assert len(f["a_boots"]) == 1  # restored, the same boot
    # output on pipes whose reader goes away: xl dies of SIGPIPE, the guest is left suspended and frozen
    assert f["b_returncode"] == -13
    assert names(_rows(f["b_list_after"]))["probe"]["state"] == "---ss-"
    assert not f["b_heartbeat_moved"]
    assert f["b_size_final"] < f["a_size_final"]
    assert f["b_shutdown_suspended"]["rc"] == "timeout"  # shutdown of a suspended guest waits for ever
    ok(f["b_save_suspended"], f)  # ... but saving it again works (after libxl's 60 s suspend wait)
    assert "guest didn't acknowledge suspend" in f["b_save_suspended"]["stderr"]
    assert len(f["b_boots_after_resave"]) == 1
    ok(f["b_restore_truncated"], f, rc=1)
    # the committed captures (tests/fixtures/xen/real-4.17, which the simulator is tested against) still hold
    assert _mask(f["b_restore_truncated"]["stderr"]) == _mask((REAL / "xl_restore_truncated.stderr").read_text())
    assert _mask(f["a_stderr"]) == _mask((REAL / "xl_save.stderr").read_text())
    assert f["xl_list"]["stdout"].splitlines()[0] == (REAL / "xl_list.stdout").read_text().splitlines()[0]


def _rows(step: dict) -> list[dict]:
    rows = []
    for line in step["stdout"].splitlines()[1:]:
        m = re.match(r"^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+([\d.]+)\s*$", line)
        if m:
            rows.append({"name": m[1].strip(), "domid": int(m[2]), "state": m[5]})
    return rows


def _mask(text: str) -> str:
    text = re.sub(r"(Saving to|Loading new save file) \S+", r"\1 IMG", text)
    text = re.sub(r"info 0x3/0x0/\d+", "info 0x3/0x0/LEN", text)
    return re.sub(r"[Dd]omain \d+", "domain N", text)


@pytest.mark.realxen("killsave")
def test_a_stop_killed_mid_save_loses_nothing_the_next_start_restores_the_guest(realxen):
    f = facts(realxen, "killsave")
    assert f["written_at_kill"] > 20 * MIB
    # real xl outlived the SIGKILLed xendomains (its own session, output to a file) and finished the save
    assert f["xl_save_outlived"] == "ended"
    assert "victim" not in names(f["xl_list"]["after_kill"]), f["xl_list"]["after_kill"]
    ok(f["start"], f)
    assert "victim" in names(f["xl_list"]["after_start"])
    assert f["boots_after"] == f["boots_before"]  # restored: the same boot goes on
    assert f["heartbeat_after"] and f["heartbeat_after"] > f["heartbeat_before"]
    assert [n for n in f["save_dir_after_start"] if not n.startswith(".")] == []
