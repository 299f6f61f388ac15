"""The syslog sink: one line per meaningful event, naming guest and stage; when it is on."""

from __future__ import annotations

import io
import syslog
from pathlib import Path

from xdcore.config import Config
from xdcore.events import CommandStarted, ControlApplied, EventBus, GuestFinished, MessageLogged, StageFinished, StageStarted
from xdcore.service import Service
from xdcore.syslog import SyslogSink, format_event, syslog_wanted

from .fakes import FakeToolstack


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_name_the_guest_and_the_stage():
    assert format_event(StageFinished(stage="save", outcome="done", guest="web01", elapsed=3.24)) == (syslog.LOG_INFO, "web01: save done in 3.2s")
    prio, line = format_event(StageFinished(stage="migrate", outcome="failed", guest="web01", elapsed=1.0, detail="host2 unreachable"))
    assert (prio, line) == (syslog.LOG_WARNING, "web01: migrate failed after 1.0s: host2 unreachable")
    assert format_event(StageStarted(stage="save", guest="web01", timeout=300)) == (syslog.LOG_INFO, "web01: save started (watchdog 300s)")
    assert format_event(GuestFinished(guest="db", outcome="failed", detail="shutdown timeout"))[0] == syslog.LOG_ERR
    assert format_event(MessageLogged(level="error", text="boom", guest="db")) == (syslog.LOG_ERR, "db: boom")
    assert format_event(ControlApplied(action="skip_stage", guest="db", stage="save")) == (syslog.LOG_NOTICE, "operator: skip_stage db save")
    assert format_event(CommandStarted(argv=("xl", "save"))) is None


async def test_a_stop_run_logs_every_guest_through_the_writer(tmp_path: Path):
    lines: list[tuple[int, str]] = []
    cfg = Config(path=None, save_dir=tmp_path / "save", auto_dir=None, lockfile=tmp_path / "lock",
                 progress=tmp_path / "p.jsonl", stop_maxwait=5, usleep_us=0)
    ts = FakeToolstack()
    ts.add("web01"), ts.add("db")
    ts.fail.add(("save", "db"))
    await Service(cfg, ts, EventBus([SyslogSink(lambda p, m: lines.append((p, m)))])).stop()
    text = [m for _, m in lines]
    assert text[0].startswith("stop started (pid ")
    assert "web01: save started (watchdog 5s)" in text
    assert any(m.startswith("web01: save done in ") for m in text)
    assert any(m.startswith("db: save failed after ") and p == syslog.LOG_WARNING for p, m in lines)
    assert any(m.startswith("db: shutdown done") for m in text)
    assert any(m.startswith("web01: saved") for m in text) and any(m.startswith("db: shutdown") for m in text)
    assert text[-1].startswith("stop finished with exit code 0")


def test_a_writer_that_fails_never_breaks_the_run():
    def broken(prio: int, msg: str) -> None:
        raise OSError("no /dev/log")

    sink = SyslogSink(broken)
    sink(GuestFinished(guest="web01", outcome="saved"))
    assert sink.errors == 1


def test_syslog_is_on_off_a_terminal_outside_systemd_and_the_environment_decides_first():
    pipe, tty = io.StringIO(), FakeTty()
    assert syslog_wanted({}, pipe) is True
    assert syslog_wanted({}, tty) is False  # someone is watching
    assert syslog_wanted({"JOURNAL_STREAM": "8:99"}, pipe) is False  # stdout is the journal already
    assert syslog_wanted({"XENDOMAINS_SYSLOG": "yes", "JOURNAL_STREAM": "8:99"}, tty) is True
    assert syslog_wanted({"XENDOMAINS_SYSLOG": "no"}, pipe) is False
