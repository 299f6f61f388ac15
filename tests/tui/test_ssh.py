"""The console over a real SSH session: the connection drops mid-evacuation, the run goes on.

Debian's OpenSSH server is started by the test on a loopback port with a throwaway host key and an
authorized key in a temporary directory; `ssh -tt` runs `xdtui --demo` inside tmux.  The first
console starts an evacuation and its ssh client is killed (the connection is gone: sshd hangs up the
session).  The evacuation must go on to the end — every guest evacuated — and `xendomains report
stop` must show the whole run and the hangup.  A second `ssh -tt … xdtui` finds the run, attaches
with full steering and skips a stage in it; afterwards it starts the host and aborts that run.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.support import wait_for
from tests.tui.conftest import hang_sysrq_instead
from tests.tui.test_tmux import REPO, Tmux
from xdcore import events as ev
from xdcore.sim import host as simhost
from xdtui import board as B

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen") and shutil.which("tmux")),
    reason="needs openssh-server, openssh-client and tmux (.ci/run installs them)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """A private sshd on 127.0.0.1:PORT that lets this user in with a key made for the test."""

    def __init__(self, d: Path):
        self.dir = d
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        (d / "authorized_keys").chmod(0o600)
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nPrintMotd no\nPrintLastLog no\nLogLevel ERROR\n"
            "ClientAliveInterval 0\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
        wait_for(lambda: self._listening() or self.proc.poll() is not None, what="sshd to listen")
        if self.proc.poll() is not None:
            pytest.skip(f"sshd would not start here: {(d / 'sshd.log').read_text()[-500:]}")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def ssh(self, remote: str) -> str:
        """The `ssh -tt` command line running `remote` on the loopback server."""
        opts = ["-tt", "-i", str(self.dir / "client_key"), "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}", "-o", "LogLevel=ERROR"]
        return shlex.join(["ssh", *opts, f"{self.user}@127.0.0.1", remote])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def short_tmp():
    # short: the demo host's control socket path must fit in 107 bytes
    d = Path(tempfile.mkdtemp(prefix="xds", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sshd(short_tmp):
    (short_tmp / "ssh").mkdir()
    s = Sshd(short_tmp / "ssh")
    yield s
    s.stop()


def progress_events(path: Path) -> list[ev.Event]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(ev.from_json(line))
        except ValueError:
            pass
    return out


def console_command(state: Path) -> str:
    venv_python = sys.executable
    return (f"cd {shlex.quote(str(REPO))} && exec env PYTHONPATH={shlex.quote(str(REPO))} TERM=xterm-256color "
            f"XDTUI_NO_SYSTEMD=1 "  # sshd gives a fresh environment: no transient units even where systemd runs
            f"{shlex.quote(venv_python)} -m xdtui.cli --demo --state {shlex.quote(str(state))}")


def ssh_client_of(tmux: Tmux) -> psutil.Process:
    pane = psutil.Process(tmux.pane_pid())
    for p in [pane, *pane.children(recursive=True)]:
        if p.name() == "ssh":
            return p
    raise AssertionError("no ssh client in the tmux pane")


def test_a_dropped_ssh_session_leaves_the_evacuation_running_and_a_new_session_steers_it(sshd, short_tmp):
    from xdtui.demo import demo_host

    state = short_tmp / "demo"
    host = demo_host(state, fast=True)
    conf = state / "xendomains.conf"
    # SysRq on, and backup's hangs: with a long watchdog it waits for the operator to skip it (skipping a
    # SysRq falls through to the save; a skipped save would leave the guest suspended, as real xl does)
    hang_sysrq_instead(state, "backup")
    with simhost.transaction(state) as st:
        st.latency.update({"save": 0.3, "restore": 1.0})
    progress = host.cfg.progress

    first = Tmux(short_tmp)
    first.socket += "-a"
    second = Tmux(short_tmp)
    second.socket += "-b"
    try:
        first.start(sshd.ssh(console_command(state)), width=100, height=32)
        first.wait_for("Saved (2)", timeout=60)
        first.keys("e")
        first.wait_for("the plan", timeout=60)
        first.keys("y")
        first.wait_for("▶", timeout=60)  # a stage runs: the evacuation is under way
        console = [p for p in psutil.process_iter(["cmdline"]) if "xdtui.cli" in " ".join(p.info["cmdline"] or ())
                   and str(state) in " ".join(p.info["cmdline"] or ())]
        ssh_client_of(first).kill()  # the connection is gone; sshd hangs up the session
        wait_for(lambda: any(isinstance(e, ev.ControlApplied) and e.action == "hangup" for e in progress_events(progress)),
                 timeout=60, what="the console to tell the run its terminal went away")
        for p in console:
            p.wait(timeout=60)  # the first console left

        started = next(e for e in progress_events(progress) if isinstance(e, ev.RunStarted))
        assert started.on_hangup == "continue" and psutil.pid_exists(started.pid)

        # a second session finds the run and steers it
        second.start(sshd.ssh(console_command(state)), width=120, height=40)
        second.wait_for("ATTACHED", timeout=60)
        second.wait_for(" steering ", timeout=60)

        def backup_hangs() -> bool:
            evs = progress_events(progress)
            running = {e.guest for e in evs if isinstance(e, ev.StageStarted) and e.guest and e.stage == "sysrq"}
            finished = {e.guest for e in evs if isinstance(e, ev.GuestFinished)}
            return "backup" in running and "backup" not in finished

        wait_for(backup_hangs, timeout=60, what="backup's SysRq to hang")
        board = B.reduce_all(B.EMPTY_BOARD, progress_events(progress))
        order = list(board.order)  # the board's rows, as drawn (keys: the zombie is "(null) domid N")
        second.wait_for("sysrq…", timeout=60)  # the console's board has reached backup's hung SysRq too
        second.keys(*["j"] * order.index("backup"))
        second.keys("n")
        second.wait_for("Stop the running stage", timeout=60)  # the confirmation names it
        assert "backup: SysRq" in second.screen()
        second.keys("y")
        wait_for(lambda: isinstance(progress_events(progress)[-1], ev.RunFinished), timeout=60, what="the run to end")
        evs = progress_events(progress)
        outcomes = {e.guest: e.outcome for e in evs if isinstance(e, ev.GuestFinished)}
        assert outcomes.pop("(null)") == "zombie"  # legacy-app, dying: xl lists it without its name
        assert set(outcomes.values()) == {"saved"} and len(outcomes) == 11
        assert {d.name for d in simhost.load(state).domains if d.domid} == {"legacy-app"}  # every guest evacuated
        skip = next(e for e in evs if isinstance(e, ev.ControlApplied) and e.action == "skip_stage")
        assert skip.guest == "backup" and skip.by.startswith(f"uid {os.getuid()} tty /dev/pts/")

        env = dict(os.environ, PATH=f"{state / 'bin'}{os.pathsep}{os.environ['PATH']}", XDSIM_STATE=str(state))
        xendomains = str(Path(sys.executable).parent / "xendomains")
        report = subprocess.run([xendomains, "--config", str(conf), "report", "stop"], capture_output=True,
                                text=True, env=env, timeout=30).stdout
        assert "if its terminal went away: continue" in report
        assert "hangup: the console's terminal went away (uid" in report and "the run continued" in report
        assert f"skip_stage backup sysrq (by {skip.by})" in report
        for guest in (board.rows[k].guest for k in order):
            assert f"  {guest} " in report, report

        # the same console starts the host again, and aborts that run
        second.keys("h")
        second.wait_for("Domains (1", timeout=60)
        second.keys("s")
        second.wait_for("the plan", timeout=60)
        second.keys("y")
        wait_for(lambda: (evs := progress_events(progress)) and isinstance(evs[0], ev.RunStarted)
                 and evs[0].verb == "start" and any(isinstance(e, ev.StageStarted) and e.guest for e in evs),
                 timeout=40, what="the start to run")
        second.wait_for("▶", timeout=60)
        second.wait_for("Abort", timeout=60)
        second.keys("x")
        second.wait_for("Abort run", timeout=60)
        second.keys("y")
        wait_for(lambda: isinstance(progress_events(progress)[-1], ev.RunFinished), timeout=60, what="the start to end")
        evs = progress_events(progress)
        abort = next(e for e in evs if isinstance(e, ev.ControlApplied) and e.action == "abort")
        assert abort.by.startswith(f"uid {os.getuid()} tty /dev/pts/")
        restored = {e.guest for e in evs if isinstance(e, ev.GuestFinished) and e.outcome == "restored"}
        left = {e.guest for e in evs if isinstance(e, ev.GuestSkipped) and "operator" in e.reason}
        assert restored and left and not restored & left  # the restore running finished; nothing new started
    finally:
        first.kill()
        second.kill()
        started = [e for e in progress_events(progress) if isinstance(e, ev.RunStarted)] if progress.exists() else []
        for e in started:  # never leave a run behind
            if psutil.pid_exists(e.pid):
                try:
                    psutil.Process(e.pid).kill()
                except psutil.Error:
                    pass
        from tests.e2e.helpers import kill_xl_children

        kill_xl_children(state / "bin")  # each xl has a session of its own: a hung one outlives its run
