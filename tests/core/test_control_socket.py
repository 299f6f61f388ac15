"""The control socket: a headless stop steered from outside, over the fake toolstack."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from xdcore.config import Config
from xdcore.control_socket import (
    ControlClient,
    ControlError,
    ControlServer,
    PeerCred,
    can_control,
    peer_permitted,
    socket_path,
)
from xdcore.events import ControlApplied, EventBus, GuestFinished, RunStarted, StageFinished
from xdcore.pipeline.control import RunControl
from xdcore.service import Service

from .fakes import FakeToolstack


@pytest.fixture
def rundir():
    # a short directory: a Unix socket path must fit in 107 bytes, pytest's tmp_path may not
    d = Path(tempfile.mkdtemp(prefix="xdc", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Run:
    def __init__(self, rundir: Path, **kw):
        base = dict(path=None, save_dir=rundir / "save", auto_dir=rundir / "auto", lockfile=rundir / "lock",
                    progress=rundir / "progress.jsonl", usleep_us=0, create_usleep_us=0, stop_maxwait=60)
        base.update(kw)
        self.cfg = Config(**base)
        self.ts = FakeToolstack()
        self.events: list = []
        self.bus = EventBus([self.events.append])
        self.control = RunControl(self.cfg.parallel, emit=self.bus.emit)
        self.svc = Service(self.cfg, self.ts, self.bus, control=self.control)
        self.server = ControlServer(socket_path(self.cfg.progress), self.control)
        self.bus.subscribe(self.server)
        self.client = ControlClient(self.server.path)

    def outcomes(self) -> dict[str, str]:
        return {e.guest: e.outcome for e in self.events if isinstance(e, GuestFinished)}

    async def stop(self):
        try:
            return await self.svc.stop()
        finally:
            await self.server.aclose()


async def until(pred, what: str, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_skipping_a_hung_save_over_the_socket_makes_the_guest_fall_to_shutdown(rundir):
    r = Run(rundir)
    r.ts.add("web01")
    r.ts.hang.add(("save", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    reply = await asyncio.to_thread(r.client.skip_stage, "web01")
    assert reply == {"ok": True, "guest": "web01", "stage": "save"}
    out = await run
    assert out.exit_code == 0
    assert r.outcomes() == {"web01": "shutdown"}
    saves = [e for e in r.events if isinstance(e, StageFinished) and e.stage == "save"]
    assert [(e.outcome, e.detail) for e in saves] == [("cancelled", "skipped by operator")]
    assert any(isinstance(e, ControlApplied) and e.action == "skip_stage" and e.guest == "web01" for e in r.events)


async def test_abort_now_over_the_socket_ends_the_run_and_skips_what_was_left(rundir):
    r = Run(rundir)
    r.ts.add("web01"), r.ts.add("db")
    r.ts.hang.add(("save", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    assert (await r.client.call({"op": "abort", "now": True})) == {"ok": True, "now": True}
    out = await run
    assert out.exit_code == 1
    assert r.outcomes() == {"web01": "skipped", "db": "skipped"}
    assert ("shutdown", "db") not in {(c[1], c[-1]) for c in r.ts.calls}


async def test_raising_parallelism_over_the_socket_lets_the_waiting_guest_start(rundir):
    r = Run(rundir)  # parallel 1
    r.ts.add("web01"), r.ts.add("db")
    r.ts.hang.update({("save", "web01"), ("save", "db")})
    run = asyncio.create_task(r.stop())
    await until(lambda: len(r.server.running) == 1, "the first save")
    assert (await r.client.call({"op": "set_parallel", "value": 2}))["parallel"] == 2
    await until(lambda: len(r.server.running) == 2, "the second guest to start in parallel")
    status = await r.client.call({"op": "status"})
    assert status["verb"] == "stop" and status["parallel"] == 2
    assert status["running"] == {"web01": "save", "db": "save"}
    await r.client.call({"op": "abort", "now": True})
    await run


async def test_skip_guest_and_stage_toggles_are_applied_to_the_run(rundir):
    r = Run(rundir, migrate=("host2",))
    r.ts.add("web01"), r.ts.add("db")
    r.ts.hang.add(("migrate", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "migrate", "the migration")
    await r.client.call({"op": "set_stage", "stage": "migrate", "enabled": False})
    await r.client.call({"op": "skip_guest", "guest": "web01"})
    out = await run
    assert r.outcomes() == {"web01": "skipped", "db": "saved"}
    assert [c for c in r.ts.calls if c[1] == "migrate"] == [("xl", "migrate", "1", "host2")]  # db never migrated
    assert out.exit_code == 1


async def test_bad_requests_get_an_error_reply_and_change_nothing(rundir):
    r = Run(rundir)
    r.ts.add("web01")
    r.ts.hang.add(("save", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    for req, msg in [({"op": "fly"}, "unknown op"),
                     ({"op": "set_parallel", "value": 0}, "from 1 to 1024"),
                     ({"op": "set_parallel", "value": True}, "from 1 to 1024"),
                     ({"op": "set_parallel", "value": 1025}, "from 1 to 1024"),
                     ({"op": "set_parallel", "value": 10 ** 3999}, "from 1 to 1024"),
                     ({"op": "set_stage", "stage": "shutdown_everything", "enabled": False}, "unknown stage"),
                     ({"op": "set_stage", "stage": "select", "enabled": False}, "required"),
                     ({"op": "skip_stage", "guest": "nobody"}, "running no stage"),
                     ({"op": "skip_guest"}, "'guest'")]:
        with pytest.raises(ControlError, match=msg):
            await r.client.call(req)
    assert r.control.parallel == 1 and not r.control.disabled_stages

    def raw(line: bytes) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(r.server.path))
            s.sendall(line)
            return json.loads(s.makefile().readline())

    assert await asyncio.to_thread(raw, b"hello\n") == {"ok": False, "error": "not a JSON object"}
    assert await asyncio.to_thread(raw, b"[1, 2]\n") == {"ok": False, "error": "not a JSON object"}
    await r.client.call({"op": "skip_stage", "guest": "web01", "stage": "save"})
    await run


async def test_the_socket_is_private_and_removed_when_the_run_ends(rundir):
    r = Run(rundir)
    r.ts.add("web01")
    r.ts.hang.add(("save", "web01"))
    assert not r.server.path.exists()  # nothing before the run holds the lock
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    st = os.lstat(r.server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert await asyncio.to_thread(can_control, r.server.path)
    await r.client.call({"op": "skip_stage", "guest": "web01"})
    await run
    assert not r.server.path.exists()
    assert not can_control(r.server.path)


async def test_a_stale_socket_from_a_crashed_run_is_replaced(rundir):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(rundir / "control.sock"))
    stale.close()  # the file stays, nobody listens
    r = Run(rundir)
    r.ts.add("web01")
    r.ts.hang.add(("save", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    assert (await r.client.call({"op": "status"}))["ok"]
    await r.client.call({"op": "skip_stage", "guest": "web01"})
    await run


def test_only_root_and_the_runs_own_user_may_steer():
    assert peer_permitted(PeerCred(pid=1, uid=0, gid=0), own_uid=0)
    assert not peer_permitted(PeerCred(pid=1, uid=1000, gid=1000), own_uid=0)
    assert peer_permitted(PeerCred(pid=1, uid=1000, gid=1000), own_uid=1000)
    assert peer_permitted(PeerCred(pid=1, uid=0, gid=0), own_uid=1000)
    assert not peer_permitted(PeerCred(pid=1, uid=1001, gid=1001), own_uid=1000)


async def test_a_peer_that_is_not_permitted_is_refused_and_cannot_steer(rundir):
    control = RunControl(1)
    seen: list[PeerCred] = []

    def deny(peer: PeerCred, own: int) -> bool:
        seen.append(peer)
        return False

    server = ControlServer(rundir / "control.sock", control, permitted=deny)
    server(RunStarted(verb="stop"))
    try:
        with pytest.raises(ControlError, match="permission denied"):
            await ControlClient(server.path).call({"op": "set_parallel", "value": 8})
        assert not await asyncio.to_thread(can_control, server.path)
    finally:
        await server.aclose()
    assert control.parallel == 1
    assert seen and seen[0].uid == os.geteuid() and seen[0].pid == os.getpid()


async def test_a_socket_path_too_long_is_reported_and_the_run_goes_on(rundir):
    deep = rundir / ("d" * 120)
    r = Run(rundir, progress=deep / "progress.jsonl")
    r.ts.add("web01")
    out = await r.stop()
    assert out.exit_code == 0
    assert "longer than 107 bytes" in (r.server.error or "")


def test_the_client_names_the_socket_when_no_run_listens(rundir):
    with pytest.raises(ControlError, match=str(rundir / "control.sock")):
        ControlClient(rundir / "control.sock").status()
    assert not can_control(rundir / "control.sock")


async def test_a_run_that_finds_the_service_running_does_not_take_the_socket(rundir):
    from xdcore.events import LockHeld

    server = ControlServer(rundir / "control.sock", RunControl(1))
    server(LockHeld(path=str(rundir / "lock")))  # start found the lock: no RunStarted follows
    assert not server.listening and not server.path.exists()
    await server.aclose()


async def test_no_client_behaviour_disturbs_the_run_or_leaves_a_traceback(rundir, monkeypatch, caplog):
    """Deep nesting, huge lines, bytes that are not UTF-8, half-closed, silent and slow clients."""
    from xdcore import control_socket

    monkeypatch.setattr(control_socket, "REQUEST_TIMEOUT", 0.5)
    r = Run(rundir)
    r.ts.add("web01")
    r.ts.hang.add(("save", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    path = str(r.server.path)

    def talk(data: bytes, half_close: bool = False) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if half_close:
                s.shutdown(socket.SHUT_WR)
            out = b""
            try:
                while (chunk := s.recv(65536)) and not out.endswith(b"\n"):
                    out += chunk
                    if out.endswith(b"\n"):
                        break
            except ConnectionResetError:
                pass
            return out

    async def reply(data: bytes, **kw) -> dict:
        return json.loads((await asyncio.to_thread(talk, data, **kw)).split(b"\n")[0])

    assert "nested deeper" in (await reply(b"[" * 10000 + b"\n"))["error"]
    assert "nested deeper" in (await reply(b'{"op": "status", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"))["error"]
    assert "too long" in (await reply(b"[" * 60000 + b"\n"))["error"]
    assert "too long" in (await reply(b'{"op": "' + b"a" * 100000 + b'"}\n'))["error"]
    assert (await reply(b"\xff\xfe\n"))["error"] == "request is not UTF-8"
    assert (await reply(b"{\"op\": \"set_parallel\", \"value\": " + b"9" * 5000 + b"}\n"))["error"] == "not a JSON object"
    assert (await reply(b'{"op": "status"}', half_close=True))["ok"] is True  # no newline, then EOF: still answered
    assert await asyncio.to_thread(talk, b"", half_close=True) == b""  # connects and leaves: nothing to say
    assert "within" in (await reply(b'{"op": "sta'))["error"]  # a slow client is dropped after the request timeout
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)  # still connected when the run ends
    assert r.control.parallel == 1 and not r.control.skipped_guests and not r.control.aborted
    await r.client.call({"op": "skip_stage", "guest": "web01", "stage": "save"})
    outcome = await run
    silent.close()
    assert outcome.exit_code == 0 and r.outcomes() == {"web01": "shutdown"}
    assert not r.server.path.exists()
    assert "Traceback" not in caplog.text and "CancelledError" not in caplog.text


@pytest.mark.parametrize("value", ["0", "1025", "9" * 4000, "²", "-3", "4.5"])
def test_the_control_verb_refuses_a_parallelism_out_of_range_before_connecting(rundir, capsys, value):
    from xdcore import cli

    conf = rundir / "xendomains.conf"
    conf.write_text(f"XENDOMAINS_PROGRESS={rundir}/progress.jsonl\n")
    assert cli.main(["--config", str(conf), "control", "set-parallel", value]) == 2
    err = capsys.readouterr().err
    assert "from 1 to 1024" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "1025", "9" * 4000])
def test_the_parallel_option_is_bounded_like_the_config_key(rundir, capsys, value):
    from xdcore import cli

    conf = rundir / "xendomains.conf"
    conf.write_text(f"XENDOMAINS_PROGRESS={rundir}/progress.jsonl\n")
    assert cli.main(["--config", str(conf), "--parallel", value, "status"]) == 2
    assert "Traceback" not in capsys.readouterr().err


# -- who steered: every intervention is logged with the sender's uid and terminal ----------------------------


async def test_each_intervention_is_logged_with_the_senders_uid_and_tty(rundir):
    from xdcore.report import RunReportWriter

    r = Run(rundir)
    r.ts.add("web01"), r.ts.add("db")
    r.ts.hang.add(("save", "web01"))
    report = RunReportWriter([rundir])
    r.bus.subscribe(report)
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    await ControlClient(r.server.path, tty="/dev/pts/7").call({"op": "set_parallel", "value": 3})
    await r.client.call({"op": "skip_stage", "guest": "web01", "tty": "/dev/pts/9"})
    await run
    applied = [e for e in r.events if isinstance(e, ControlApplied)]
    uid = os.geteuid()
    assert [(e.action, e.by) for e in applied] == [("set_parallel", f"uid {uid} tty /dev/pts/7"),
                                                   ("skip_stage", f"uid {uid} tty /dev/pts/9")]
    rep = json.loads((rundir / "last-stop.json").read_text())
    assert f"skip_stage web01 save (by uid {uid} tty /dev/pts/9)" in rep["interventions"]


def test_a_tty_field_that_is_not_a_short_printable_name_is_left_out_of_the_log():
    from xdcore.control_socket import sender

    peer = PeerCred(1, 1000, 1000)
    assert sender(peer, "/dev/pts/3") == "uid 1000 tty /dev/pts/3"
    assert sender(peer, "x" * 500) == "uid 1000"
    assert sender(peer, "evil\nline") == "uid 1000"
    assert sender(peer, 42) == "uid 1000"
    assert sender(None, None) == ""


@pytest.mark.parametrize("policy, outcomes", [
    ("continue", {"web01": "saved", "db": "saved"}),
    ("stop", {"web01": "saved", "db": "skipped"}),
])
async def test_a_hangup_continues_or_stops_the_run_at_a_clean_point_as_chosen(rundir, policy, outcomes):
    from xdcore.report import RunReportWriter, format_report, load_report

    r = Run(rundir)  # parallel 1: db waits while web01 saves
    r.control.on_hangup = policy
    r.ts.add("web01"), r.ts.add("db")
    r.ts.delay["save"] = 0.3
    report = RunReportWriter([rundir])
    r.bus.subscribe(report)
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the first save")
    reply = await ControlClient(r.server.path, tty="/dev/pts/4").call({"op": "hangup"})
    assert reply == {"ok": True, "on_hangup": policy}
    await run
    assert r.outcomes() == outcomes  # a clean point: the save running went on to the end
    started = next(e for e in r.events if isinstance(e, RunStarted))
    assert started.on_hangup == policy
    rep = load_report(rundir / "last-stop.json")
    assert rep is not None and rep.on_hangup == policy
    lines: list[str] = []
    format_report(rep, lines.append)
    text = "\n".join(lines)
    assert "if its terminal went away: " + ("continue" if policy == "continue" else "stop at a clean point") in text
    assert f"hangup: the console's terminal went away (uid {os.geteuid()} tty /dev/pts/4)" in text
    assert ("the run continued" if policy == "continue" else "the run stopped at a clean point") in text


async def test_a_client_that_hangs_up_mid_request_leaves_no_traceback(rundir, caplog):
    r = Run(rundir)
    r.ts.add("web01")
    r.ts.hang.add(("save", "web01"))
    run = asyncio.create_task(r.stop())
    await until(lambda: r.server.running.get("web01") == "save", "the save to start")
    for _ in range(5):  # connect, send half a request or a whole one, and vanish without reading
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(r.server.path))
        s.sendall(b'{"op": "status"}\n{"op": "sta')
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    assert (await r.client.call({"op": "status"}))["ok"]
    await r.client.call({"op": "abort", "now": True})
    await run
    assert not [rec for rec in caplog.records if rec.exc_info or "Traceback" in rec.getMessage()]
