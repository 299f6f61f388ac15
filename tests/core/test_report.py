"""The run report (last-stop.json / last-start.json) and `status` reconciling it with the host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xdcore import cli
from xdcore.config import Config
from xdcore.events import EventBus, LockHeld, RunStarted, StageFinished
from xdcore.report import (
    STATE_DIR,
    RunReport,
    RunReportWriter,
    load_last,
    load_report,
    reconcile,
    report_dirs,
)
from xdcore.plan import ThroughputRecorder
from xdcore.service import Service

from .fakes import FakeToolstack


def make(tmp_path: Path, ts: FakeToolstack | None = None, **kw):
    base = dict(path=None, save_dir=tmp_path / "save", auto_dir=tmp_path / "auto", lockfile=tmp_path / "lock",
                progress=tmp_path / "run" / "progress.jsonl", usleep_us=0, create_usleep_us=0, stop_maxwait=5)
    base.update(kw)
    cfg = Config(**base)
    ts = ts or FakeToolstack()
    writer = RunReportWriter.for_config(cfg)
    svc = Service(cfg, ts, EventBus([writer]))
    return cfg, svc, ts, writer


def auto(cfg: Config, ts: FakeToolstack, *names: str) -> None:
    cfg.auto_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        p = cfg.auto_dir / f"{n}.cfg"
        p.write_text(f'name = "{n}"\n')
        ts.configs[p] = n


async def test_a_stop_writes_each_guests_outcome_reason_and_stage_times(tmp_path):
    cfg, svc, ts, _ = make(tmp_path, migrate=("host2",))
    ts.add("web01"), ts.add("db"), ts.add("undead", flags="-b---d")
    ts.fail.update({("migrate", "web01"), ("migrate", "db"), ("save", "db")})
    out = await svc.stop()
    path = tmp_path / "run" / "last-stop.json"
    rep = load_report(path)
    assert rep is not None and rep.verb == "stop" and rep.exit_code == out.exit_code == 0
    assert rep.finished_at >= rep.started_at
    web, db, undead = rep.guest("web01"), rep.guest("db"), rep.guest("undead")
    assert web.outcome == "saved"
    assert [(s.stage, s.outcome) for s in web.stages] == [("migrate", "failed"), ("save", "done")]
    assert "migrate of web01 failed (fake)" in web.stages[0].detail
    assert db.outcome == "shutdown"
    assert [s.stage for s in db.stages] == ["migrate", "save", "shutdown"]
    assert any("Save of db failed" in n for n in db.notes)
    assert undead.outcome == "zombie" and "dying" in undead.detail
    assert all(s.elapsed >= 0 for s in web.stages) and web.elapsed >= 0
    assert [s.stage for s in rep.host_stages][:1] == ["select"]
    raw = json.loads(path.read_text())
    assert raw["format"] == 1 and {g["guest"] for g in raw["guests"]} == {"web01", "db", "undead"}


async def test_a_failed_guest_makes_the_report_say_failed_and_why(tmp_path):
    cfg, svc, ts, _ = make(tmp_path, save_dir=None)
    ts.add("stuck")
    ts.fail.add(("shutdown", "stuck"))
    out = await svc.stop()
    rep = load_last(cfg, "stop")
    assert out.exit_code == rep.exit_code == 1
    assert rep.guest("stuck").outcome == "failed"
    assert "shutdown failed" in rep.guest("stuck").detail


async def test_a_start_writes_last_start_beside_the_progress_file_and_keeps_the_stop_report(tmp_path):
    cfg, svc, ts, _ = make(tmp_path)
    ts.add("web01")
    await svc.stop()
    auto(cfg, ts, "db")
    cfg2, svc2, _, _ = make(tmp_path, ts=ts)
    out = await svc2.start()
    start = load_last(cfg, "start")
    assert out.exit_code == 0 and start.verb == "start"
    assert {g.guest: g.outcome for g in start.guests} == {"web01": "restored", "db": "created"}
    assert [s.stage for s in start.guest("web01").stages] == ["restore"]
    assert load_last(cfg, "stop").guest("web01").outcome == "saved"


def test_a_run_that_never_finished_leaves_an_interrupted_report(tmp_path):
    w = RunReportWriter([tmp_path])
    w(RunStarted(verb="stop", run="r1", pid=42))
    w(StageFinished(stage="save", outcome="done", guest="web01", elapsed=1.0))
    w.close()
    rep = load_report(tmp_path / "last-stop.json")
    assert rep.interrupted and rep.exit_code is None and rep.pid == 42
    assert rep.guest("web01").outcome == "interrupted"


def test_a_run_that_never_started_writes_nothing_so_the_last_real_report_stays(tmp_path):
    (tmp_path / "last-start.json").write_text("keep")
    w = RunReportWriter([tmp_path])
    w(LockHeld(path="/var/lock/xendomains"))
    w.close()
    assert (tmp_path / "last-start.json").read_text() == "keep"


def test_reports_on_a_tmpfs_are_also_kept_where_a_reboot_does_not_wipe_them(tmp_path):
    assert report_dirs(Config(path=None)) == [Path("/run/xendomains"), STATE_DIR]
    assert report_dirs(Config(path=None, progress=tmp_path / "p.jsonl")) == [tmp_path]


def test_the_newest_copy_of_a_report_wins_and_garbage_is_ignored(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, t in ((a, 100.0), (b, 200.0)):
        d.mkdir()
        rep = RunReport(verb="stop", run=d.name, started_at=t - 1, finished_at=t, exit_code=0)
        (d / "last-stop.json").write_text(rep.to_json())
    assert load_last(Config(path=None), "stop", dirs=[a, b]).run == "b"
    (b / "last-stop.json").write_text("{not json")
    assert load_last(Config(path=None), "stop", dirs=[a, b]).run == "a"


def test_a_report_round_trips_through_json():
    from xdcore.report import GuestRecord, StageRecord

    rep = RunReport(verb="stop", run="r", started_at=1.0, finished_at=2.0, exit_code=1, summary="1 failed",
                    guests=(GuestRecord("g", "failed", "why", 1.5, 3, (StageRecord("save", "timeout", 1.5, "x"),), ("n",)),),
                    host_stages=(StageRecord("select", "done"),), messages=("warning: w",), interventions=("abort",))
    assert RunReport.from_dict(json.loads(rep.to_json())) == rep


# -- reconcile -----------------------------------------------------------------------------------------


async def test_status_after_boot_says_the_saved_guest_was_restored_and_the_auto_guest_started(tmp_path):
    cfg, svc, ts, _ = make(tmp_path, save_dir=tmp_path / "save")
    ts.add("web01"), ts.add("db")
    auto(cfg, ts, "db")
    ts.fail.add(("save", "db"))  # db is shut down instead
    await svc.stop()
    _, svc2, _, _ = make(tmp_path, ts=ts)
    await svc2.start()
    rep = await svc2.status()
    rec = cli.reconcile_status(cfg, rep)
    now = {r.guest: (r.then, r.now, r.ok) for r in rec.guests}
    assert now == {"web01": ("saved", "restored", True), "db": ("shutdown", "started again", True)}
    assert rep.exit_code == 0  # status exit codes are untouched by the reconciliation


async def test_status_flags_a_quarantined_image_and_a_guest_whose_stop_failed(tmp_path):
    cfg, svc, ts, _ = make(tmp_path)
    ts.add("web01"), ts.add("stuck")
    ts.fail.update({("save", "stuck"), ("shutdown", "stuck"), ("shutdown_all", "")})
    await svc.stop()
    ts.fail.clear()
    ts.domains = {k: d for k, d in ts.domains.items() if d.name != "stuck"}  # the host went down anyway
    ts.fail.add(("restore", "web01"))
    _, svc2, _, _ = make(tmp_path, ts=ts)
    await svc2.start()
    rec = cli.reconcile_status(cfg, await svc2.status())
    by = {r.guest: r for r in rec.guests}
    assert (by["web01"].now, by["web01"].ok) == ("quarantined", False)
    assert ".failed" in by["web01"].detail
    assert (by["stuck"].then, by["stuck"].ok) == ("failed", False)
    assert {r.guest for r in rec.problems} == {"web01", "stuck"}


def test_reconcile_before_the_start_reports_the_waiting_image_and_a_lost_guest(tmp_path):
    from xdcore.model import ImageKind, SaveImage
    from xdcore.report import GuestRecord

    stop = RunReport(verb="stop", run="r", started_at=1, finished_at=2, exit_code=0,
                     guests=(GuestRecord("a", "saved"), GuestRecord("b", "saved"), GuestRecord("c", "migrated"),
                             GuestRecord("d", "shutdown"), GuestRecord("e", "shutdown")))
    img = SaveImage(tmp_path / "a", ImageKind.XL, 10, 0.0, "a", False)
    rec = reconcile(stop, running=[], saved=[img], quarantined=[], auto=["e"])
    by = {r.guest: (r.now, r.ok) for r in rec.guests}
    assert by == {"a": ("image waiting", False), "b": ("lost", False), "c": ("on the target host", True),
                  "d": ("off", True), "e": ("not started", False)}


async def test_status_prints_the_reconciliation_and_puts_it_in_the_json(tmp_path, capsys):
    cfg, svc, ts, _ = make(tmp_path)
    ts.add("web01")
    await svc.stop()
    rep = await svc.status()
    rec = cli.reconcile_status(cfg, rep)
    cli.print_status(rep, reconciliation=rec)
    out = capsys.readouterr().out
    assert "Since the last stop (" in out
    assert "web01" in out and "image waiting" in out
    data = json.loads(cli.status_json(rep, rec))
    assert data["reconcile"]["guests"] == [{"guest": "web01", "then": "saved", "now": "image waiting", "ok": False,
                                            "detail": f"not restored yet: {cfg.save_dir / 'web01'}"}]
    assert json.loads(cli.status_json(rep))["reconcile"] is None


# -- through the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_host(tmp_path, monkeypatch):
    """The `xendomains` CLI over the fake toolstack, with its config in tmp_path."""
    ts = FakeToolstack()
    conf = tmp_path / "xendomains.conf"
    conf.write_text(f"XENDOMAINS_SAVE={tmp_path}/save\nXENDOMAINS_AUTO={tmp_path}/auto\n"
                    f"XENDOMAINS_LOCKFILE={tmp_path}/lock\nXENDOMAINS_PROGRESS={tmp_path}/run/progress.jsonl\n"
                    "XENDOMAINS_STOP_MAXWAIT=5\nXENDOMAINS_CREATE_USLEEP=0\n")
    monkeypatch.setattr(cli, "make_service", lambda cfg, bus: (Service(cfg, ts, bus), ThroughputRecorder(cfg)))
    monkeypatch.setenv("XENDOMAINS_SYSLOG", "no")
    return ts, conf


def test_the_stop_verb_writes_the_report_and_leaves_no_control_socket(cli_host, tmp_path, capsys):
    ts, conf = cli_host
    ts.add("web01")
    assert cli.main(["--config", str(conf), "stop"]) == 0
    assert load_report(tmp_path / "run" / "last-stop.json").guest("web01").outcome == "saved"
    assert not (tmp_path / "run" / "control.sock").exists()
    capsys.readouterr()
    assert cli.main(["--config", str(conf), "report"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Last stop (run ") and "web01" in out and "saved" in out
    assert cli.main(["--config", str(conf), "--json", "report", "stop"]) == 0
    assert json.loads(capsys.readouterr().out)["guests"][0]["guest"] == "web01"
    assert cli.main(["--config", str(conf), "report", "start"]) == 3
    assert cli.main(["--config", str(conf), "report", "sideways"]) == 2


def test_status_through_the_cli_keeps_its_exit_code_and_shows_the_section(cli_host, capsys):
    ts, conf = cli_host
    ts.add("web01")
    cli.main(["--config", str(conf), "stop"])
    capsys.readouterr()
    assert cli.main(["--config", str(conf), "status"]) == 3  # not started: the LSB code, as before
    assert "Since the last stop" in capsys.readouterr().out


@pytest.mark.parametrize("after", [0, 3, 8])
def test_a_full_disk_under_the_progress_file_warns_and_changes_nothing_else(cli_host, tmp_path, capsys, monkeypatch, after):
    """ENOSPC injected at the one write helper of every witness (progress, report, throughputs) after `after` writes."""
    import errno
    import os

    from xdcore import output

    ts, conf = cli_host
    ts.add("web01"), ts.add("db")
    real_write, writes = os.write, [0]

    def write(fd, data):
        writes[0] += 1
        if writes[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(output.os, "write", write)
    def atomic(path, text, mode=0o644, tag="", **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("xdcore.report.write_atomic", atomic)
    monkeypatch.setattr("xdcore.plan.write_atomic", atomic)

    assert cli.main(["--config", str(conf), "stop"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "warning: cannot write the progress file" in err and "No space left on device" in err
    assert "warning: cannot write the run report" in err and "warning: cannot store the measured throughputs" in err
    assert ts.by_name("web01") is None and ts.by_name("db") is None  # both saved
    run = tmp_path / "run"
    assert not (run / "control.sock").exists()
    text = (run / "progress.jsonl").read_text() if (run / "progress.jsonl").exists() else ""
    assert text == "" or text.endswith("\n"), "a half-written line was left for followers"


# -- status in systemctl's words; zombies dying; a newer stop we did not run (issue 13) -----------------------


async def test_status_words_active_degraded_inactive_with_the_lsb_codes(tmp_path, capsys):
    cfg, svc, ts, _ = make(tmp_path)
    ts.add("web01")
    auto(cfg, ts, "web01")
    rep = await svc.status()
    assert (rep.exit_code, rep.words()) == (3, "inactive: no lock file")
    await svc.start()  # web01 runs already: the lock is taken and kept
    rep = await svc.status()
    assert (rep.exit_code, rep.words()) == (0, "active")
    jail = cfg.save_dir / ".failed"
    jail.mkdir(parents=True)
    (jail / "old").write_bytes(b"Xen saved domain, xl format\n \x00")
    rep = await svc.status()
    assert rep.exit_code == 1 and rep.state == "degraded" and rep.words().startswith("degraded: ")
    cli.print_status(rep)
    out = capsys.readouterr().out
    assert out.rstrip().endswith("[" + rep.words() + "]")
    assert "[dead]" not in out and "[running]" not in out
    assert json.loads(cli.status_json(rep))["state"] == "degraded"


async def test_a_zombie_is_shown_dying_while_xl_list_still_lists_it(tmp_path, capsys):
    cfg, svc, ts, _ = make(tmp_path)
    ts.add("web01"), ts.add("undead", flags="-b---d")
    await svc.stop()
    rep = await svc.status()
    assert [d.name for d in rep.dying] == ["undead"]
    rec = cli.reconcile_status(cfg, rep)
    assert {r.guest: r.now for r in rec.guests}["undead"] == "dying"
    cli.print_status(rep, reconciliation=rec)
    out = capsys.readouterr().out
    assert any(ln.startswith(" NOT RUNNING: undead(") and ln.endswith(" dying") for ln in out.splitlines()), out
    assert "zombie     → dying" in out and "→ off" not in out


def test_a_stop_newer_than_our_report_is_not_described_by_it(tmp_path):
    import os

    from xdcore.model import ImageKind, SaveImage
    from xdcore.report import GuestRecord

    stop = RunReport(verb="stop", run="r", started_at=100, finished_at=110, exit_code=0,
                     guests=(GuestRecord("web01", "saved"),))
    old = SaveImage(tmp_path / "web01", ImageKind.XL, 10, 105.0, "web01", False)
    assert reconcile(stop, running=[], saved=[old], quarantined=[], auto=[]).stale == ""
    newer = SaveImage(tmp_path / "db", ImageKind.XL, 10, 500.0, "db", False)
    rec = reconcile(stop, running=[], saved=[old, newer], quarantined=[], auto=[])
    assert "images newer than it" in rec.stale and "db" in rec.stale and rec.to_dict()["guests"] == []
    lines: list[str] = []
    from xdcore.report import print_reconciliation

    print_reconciliation(rec, lines.append)
    assert "did not run" in lines[0] and not any("web01" in ln and "saved" in ln for ln in lines)
    # our start after our stop brought web01 up; web01 is gone now: someone else stopped it
    start = RunReport(verb="start", run="s", started_at=200, finished_at=210, exit_code=0,
                      guests=(GuestRecord("web01", "restored"),))
    rec = reconcile(stop, running=[], saved=[], quarantined=[], auto=[], start=start)
    assert "brought up are gone since: web01" in rec.stale
    assert reconcile(stop, running=["web01"], saved=[], quarantined=[], auto=[], start=start).stale == ""


async def test_a_mistyped_guest_is_compared_with_the_guests_that_have_names_not_a_nameless_row(tmp_path):
    from xdcore.errors import UnknownGuest
    from xdcore.model import Domain, DomainState

    cfg, svc, ts, _ = make(tmp_path)
    ts.add("web01")
    ts.domains[99] = Domain(99, "(null)", memory_mib=0, vcpus=1, has_config=False, nameless=True,
                            state=DomainState.from_flags("--p--d"))
    with pytest.raises(UnknownGuest) as err:
        await svc.check_names(["web0l"])
    assert "web01" in str(err.value) and "(null)" not in str(err.value)
    with pytest.raises(UnknownGuest):
        await svc.check_names(["(null)"])  # a row without a name is no guest to name


async def test_a_quarantined_image_is_not_said_to_come_from_a_failed_restore_when_a_save_may_have_left_it(tmp_path):
    from xdcore.events import MessageLogged

    cfg, svc, ts, _ = make(tmp_path)
    jail = cfg.save_dir / ".failed"
    jail.mkdir(parents=True)
    (jail / "backup").write_bytes(b"Xen saved domain, xl format\n \x00")  # what a save the watchdog killed leaves
    seen: list = []
    svc.bus.subscribe(seen.append)
    await svc.start()
    (warning,) = [e.text for e in seen if isinstance(e, MessageLogged) and "quarantined" in e.text]
    assert "the save that wrote it did not finish" in warning and "after a failed restore" not in warning
