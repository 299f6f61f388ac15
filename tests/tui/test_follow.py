"""Following a progress file: appended lines, half-written lines, a new run replacing the file."""

from __future__ import annotations

import os
import subprocess
import sys

from xdcore.events import GuestPlanned, MessageLogged, RunFinished, RunStarted
from xdtui.follow import ProgressFollower, headless_run_in_progress


def line(e) -> str:
    return e.to_json() + "\n"


def test_appended_events_are_read_once(tmp_path):
    p = tmp_path / "progress.jsonl"
    p.write_text(line(RunStarted(run="a", verb="stop", pid=1)))
    f = ProgressFollower(p)
    first = f.poll()
    assert [e.kind for e in first.events] == ["run_started"] and not first.reset
    assert f.poll() is None
    with p.open("a") as fh:
        fh.write(line(GuestPlanned(run="a", guest="web01")))
    assert [e.guest for e in f.poll().events] == ["web01"]


def test_a_half_written_line_waits_for_its_newline(tmp_path):
    p = tmp_path / "progress.jsonl"
    text = line(MessageLogged(run="a", level="info", text="hello"))
    p.write_text(text[:10])
    f = ProgressFollower(p)
    assert f.poll() is None
    with p.open("a") as fh:
        fh.write(text[10:])
    assert f.poll().events[0].text == "hello"


def test_a_replaced_file_starts_over(tmp_path):
    p = tmp_path / "progress.jsonl"
    p.write_text(line(RunStarted(run="a", verb="stop", pid=1)) + line(RunFinished(run="a", verb="stop", exit_code=0)))
    f = ProgressFollower(p)
    assert len(f.poll().events) == 2
    tmp = tmp_path / ".new"
    tmp.write_text(line(RunStarted(run="b", verb="start", pid=2)))
    os.replace(tmp, p)  # what a new run does: a fresh inode
    batch = f.poll()
    assert batch.reset and [e.run for e in batch.events] == ["b"]


def test_garbage_lines_are_skipped(tmp_path):
    p = tmp_path / "progress.jsonl"
    p.write_text("not json\n" + line(RunStarted(run="a", verb="stop", pid=1)) + '{"event": "from_the_future"}\n')
    assert [e.kind for e in ProgressFollower(p).poll().events] == ["run_started"]


def test_a_headless_run_is_in_progress_only_while_unfinished_and_alive(tmp_path):
    p = tmp_path / "progress.jsonl"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        p.write_text(line(RunStarted(run="a", verb="stop", pid=child.pid)))
        found = headless_run_in_progress(p)
        assert found is not None and found.pid == child.pid and found.verb == "stop"
        assert headless_run_in_progress(p, own_pid=child.pid) is None  # our own run is not "headless"
        with p.open("a") as fh:
            fh.write(line(RunFinished(run="a", verb="stop", exit_code=0)))
        assert headless_run_in_progress(p) is None
    finally:
        child.kill()
        child.wait()
    p.write_text(line(RunStarted(run="b", verb="stop", pid=child.pid)))
    assert headless_run_in_progress(p) is None  # its process is gone


def test_no_file_means_no_run(tmp_path):
    assert headless_run_in_progress(tmp_path / "missing") is None
    assert ProgressFollower(tmp_path / "missing").poll() is None
