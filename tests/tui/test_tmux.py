"""`xdtui --demo` in a real terminal (tmux, a private server), used the way a person would.

send-keys types, capture-pane reads the screen.  The second test chooses "stop
at a clean point" in the plan dialog, hangs up the terminal (kills the tmux
server: SIGHUP) in the middle of the evacuation and checks the console told the
headless run, which stopped at a clean point and released the lock, and that the
console exited.  (The default, "continue", is shown over real SSH in test_ssh.)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.support import PATIENCE

from xdcore.events import RunFinished, from_json
from xdcore.sim import host as simhost

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


class Tmux:
    def __init__(self, tmp: Path):
        self.socket = f"test-xdtui-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=check, capture_output=True, text=True).stdout

    def start(self, command: str, width: int = 100, height: int = 32) -> None:
        env = f"PYTHONPATH={shlex.quote(str(REPO))} TERM=xterm-256color"
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                 f"cd {shlex.quote(str(REPO))} && env {env} {command}")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t", check=False)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + max(timeout, PATIENCE)  # a timeout only ends a test that already failed
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")
            time.sleep(0.1)

    def pane_pid(self) -> int:
        return int(self.run("display-message", "-p", "-t", "t", "#{pane_pid}").strip())

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.kill()


def _console_pid(shell_pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.Process(shell_pid).children(recursive=True):
            if "xdtui.cli" in " ".join(p.cmdline()):
                return p.pid
        time.sleep(0.1)
    raise AssertionError("the console process did not start")


def test_a_person_evacuates_the_demo_host_in_tmux(tmux, tmp_path):
    state, done = tmp_path / "demo", tmp_path / "exit-code"
    from xdtui.demo import demo_host

    demo_host(state, fast=True)
    with simhost.transaction(state) as st:
        st.faults = []  # no hanging save: every guest is evacuated
    tmux.start(f"sh -c '{sys.executable} -m xdtui.cli --demo --fast --state {state}; echo $? > {done}; sleep 60'")
    tmux.wait_for("Domains (12")
    screen = tmux.wait_for("Saved (2)")
    assert "e Evacuate" in screen and "web01" in screen
    tmux.keys("e")
    screen = tmux.wait_for("the plan")
    assert "Save, else Shutdown" in screen
    tmux.keys("y")
    tmux.wait_for("12/12 handled", timeout=30)
    tmux.wait_for("  done", timeout=10)  # the run finished (exit 0)
    tmux.keys("q")
    deadline = time.monotonic() + PATIENCE
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.read_text().strip() == "0"
    assert {d.name for d in simhost.load(state).domains if d.domid} == {"legacy-app"}


def test_hanging_up_during_a_run_chosen_to_stop_stops_it_cleanly_and_releases_the_lock(tmux, tmp_path):
    state = tmp_path / "demo"
    from xdtui.demo import demo_host

    host = demo_host(state, fast=True)
    with simhost.transaction(state) as st:
        st.latency["save"] = 1.0  # slow enough to hang up in the middle
    tmux.start(f"{sys.executable} -m xdtui.cli --demo --state {state}")
    tmux.wait_for("Saved (2)")
    pane = tmux.pane_pid()
    pid = pane if "xdtui.cli" in " ".join(psutil.Process(pane).cmdline()) else _console_pid(pane)
    tmux.keys("e")
    tmux.wait_for("the plan")
    tmux.keys("t")  # if this terminal goes away: stop at a clean point
    tmux.keys("y")
    tmux.wait_for("▶")
    assert host.cfg.lockfile.exists()
    tmux.kill()  # the terminal goes away: SIGHUP
    proc = psutil.Process(pid)
    try:
        proc.wait(timeout=20)
    except psutil.TimeoutExpired:
        proc.kill()
        raise AssertionError("the console did not exit after the hangup")
    from tests.support import wait_for

    def events():
        return [from_json(x) for x in host.cfg.progress.read_text().splitlines()]

    wait_for(lambda: isinstance(events()[-1], RunFinished), timeout=30, what="the headless run to stop")
    events = events()
    assert not host.cfg.lockfile.exists()
    hangup = next(e for e in events if e.kind == "control_applied" and e.action == "hangup")
    assert hangup.value == "stop"
    outcomes = {e.guest: e.outcome for e in events if e.kind == "guest_finished"}
    assert "skipped" in outcomes.values()  # the abort: nothing new started
    assert set(outcomes.values()) <= {"saved", "skipped", "shutdown", "zombie"}
    assert not list(host.cfg.save_dir.glob(".xendomains-partial*"))
    assert os.path.isdir(state)


def test_the_demo_without_state_leaves_nothing_behind(tmux, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tmux.start(f"sh -c 'TMPDIR={tmpdir} {sys.executable} -m xdtui.cli --demo --fast; echo $? > {tmp_path}/rc; sleep 60'")
    tmux.wait_for("Saved (2)")
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("xdtui-demo-")]  # the throwaway host exists
    tmux.keys("q")
    deadline = time.monotonic() + PATIENCE
    while not (tmp_path / "rc").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "rc").read_text().strip() == "0"
    assert list(tmpdir.iterdir()) == []
