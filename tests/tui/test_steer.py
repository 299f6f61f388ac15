"""Steering a headless `xendomains stop` from `xdtui --attach` over its control socket (Pilot, real subprocess).

The run is the installed `xendomains` on a simulated host (tests/e2e/helpers.py lays it out), its progress
file and control socket under tmp_path; the console attaches to it in-process.  The run's own --json events
are the witness of what the console changed.
"""

from __future__ import annotations

import asyncio
import os
import socket

from tests.e2e.helpers import E2EHost, kill_xl_children
from xdcore import events as ev
from xdcore.config import load_config
from xdcore.control_socket import ControlClient, ControlServer, socket_path
from xdcore.events import GuestPlanned, RunStarted, StageStarted
from xdcore.pipeline.control import RunControl
from xdcore.sim.inprocess import SimToolstack
from xdtui import steer
from xdtui.app import make_app
from xdtui.follow import headless_run_in_progress
from xdtui.host import HostContext
from xdtui.providers import Providers
from xdtui.screens.attach import AttachScreen
from xdtui.screens.dialogs import ConfirmDialog
from xdtui.widgets.stage_board import BoardTable

from .conftest import wait_for, wait_until
from .test_pilot import SIZE


def console_for(h: E2EHost) -> HostContext:
    """The console pointed at the same simulated host and config as the headless run."""
    return HostContext(load_config(str(h.config)), SimToolstack(h.state), label="test host", watch_interval=0.5,
                       lock_wait=5.0)


def recorded_notices(app) -> list[tuple[str, str]]:
    """Make app.notify record (text, severity) as well as show the toast."""
    seen: list[tuple[str, str]] = []
    real = app.notify

    def notify(message, *a, **kw):
        seen.append((str(message), kw.get("severity", "information")))
        return real(message, *a, **kw)

    app.notify = notify
    return seen


async def start_headless(h: E2EHost):
    proc = h.popen("stop")
    await wait_until(lambda: headless_run_in_progress(h.progress) or proc.poll() is not None, timeout=30,
                     what="the headless run to take the lock")
    assert proc.poll() is None, h.finish(proc).describe()
    return proc


def stop_headless(h: E2EHost, proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)
    kill_xl_children(h.layout.bin_dir)


async def attached(pilot, app) -> AttachScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen), what="the console to attach on its own")
    screen = app.screen
    await wait_for(pilot, lambda: screen.steering.allowed, what=f"steering (header says {screen.steering.label})")
    return screen


async def test_skipping_a_hung_save_from_attach_reaches_the_headless_run_and_its_outcome_is_shown(tmp_path):
    h = E2EHost.make(tmp_path / "h", guests=[("web01", 512, 1), ("stuck", 512, 1)], XENDOMAINS_STOP_MAXWAIT=300)
    h.sim("fault", "save", "stuck", "hang")
    proc = await start_headless(h)
    try:
        app = make_app(console_for(h), Providers(), attach="auto", attach_poll=0.05)
        async with app.run_test(size=SIZE) as pilot:
            notices = recorded_notices(app)
            screen = await attached(pilot, app)
            assert "steering" in str(screen.banner())
            assert "Skip stage" in {c.title for c in screen.palette_commands()}
            await wait_for(pilot, lambda: (r := screen.board_state.rows.get("stuck")) and r.running == "save",
                           timeout=30, what="stuck's save to hang")
            await pilot.press("plus")  # no question asked: one more guest at once
            await wait_for(pilot, lambda: screen.board_state.parallel == 2, what="the run to apply parallel 2")
            board = screen.query_one(BoardTable)
            board.move_cursor(row=board.get_row_index("stuck"))
            assert screen.board_guest() == "stuck"
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the skip confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: len(screen.answers) == 2, what="the run's answer")
            assert [(a.ok, a.request.wire()) for a in screen.answers] == [
                (True, {"op": "set_parallel", "value": 2}),
                (True, {"op": "skip_stage", "guest": "stuck", "stage": "save"})]
            assert any("accepted" in text and "stuck" in text for text, _ in notices)
            await wait_for(pilot, lambda: screen.board_state.finished is not None, timeout=30, what="the run to finish")
            # killing a save after its suspend point leaves the guest suspended (real xl): said, not hidden
            assert screen.board_state.rows["stuck"].outcome == "suspended"
            assert screen.steering == steer.FINISHED and "read-only" in str(screen.banner())
        res = h.finish(proc)
    finally:
        stop_headless(h, proc)
    assert res.returncode == 1, res.describe()
    assert res.stage_outcomes("stuck") == {"save": "cancelled"}
    assert res.outcomes == {"web01": "saved", "stuck": "suspended"}
    assert [(e.action, e.guest, e.stage, e.value) for e in res.of(ev.ControlApplied)] == [
        ("set_parallel", "", "", "2"), ("skip_stage", "stuck", "save", "")]
    assert set(h.domains()) == {"stuck"} and h.domains()["stuck"].flags == "---ss-"
    h.assert_lock_gone()


async def test_aborting_from_attach_skips_the_remaining_guests_and_the_headless_run_exits(tmp_path):
    h = E2EHost.make(tmp_path / "h", guests=[("a1", 512, 1), ("a2", 512, 1), ("a3", 512, 1)], XENDOMAINS_PARALLEL=1,
                     XENDOMAINS_STOP_MAXWAIT=300)
    h.sim("fault", "save", "a1", "hang")  # the queue waits on a1 until we act: no race with the run
    proc = await start_headless(h)
    try:
        app = make_app(console_for(h), Providers(), attach="auto", attach_poll=0.05)
        async with app.run_test(size=SIZE) as pilot:
            screen = await attached(pilot, app)
            assert {"Abort run", "Abort run now"} <= {c.title for c in screen.palette_commands()}
            await wait_for(pilot, lambda: (r := screen.board_state.rows.get("a1")) and r.running == "save",
                           timeout=30, what="a1's save to hang")
            await pilot.press("x")  # abort: nothing new starts, the running save goes on
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the abort confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: screen.board_state.aborted, what="the run to apply the abort")
            assert proc.poll() is None and screen.board_state.rows["a1"].running == "save"
            await pilot.press("X")  # abort now: the hung save is killed too
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the abort-now confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: proc.poll() is not None, timeout=30, what="the headless run to exit")
            await wait_for(pilot, lambda: screen.board_state.finished is not None, what="the board to show the end")
            assert [a.ok for a in screen.answers] == [True, True]
            assert "Abort run" not in {c.title for c in screen.palette_commands()}  # nothing left to steer
        res = h.finish(proc)
    finally:
        stop_headless(h, proc)
    assert [e.action for e in res.of(ev.ControlApplied)] == ["abort", "abort_now"]
    assert res.outcomes["a2"] == res.outcomes["a3"] == "skipped", res.describe()
    assert res.outcomes["a1"] != "saved" and not h.has_valid_image("a1")
    assert h.running() == {"a1", "a2", "a3"}  # nothing was stopped after the abort
    h.assert_lock_gone()
    assert not socket_path(h.progress).exists()


async def test_without_a_control_socket_attach_is_read_only_and_sends_nothing(demo, monkeypatch):
    sent: list[object] = []

    async def call(self, req):
        sent.append(req)
        return {"ok": True}

    monkeypatch.setattr(ControlClient, "call", call)
    monkeypatch.setattr(ControlClient, "request", lambda self, req: sent.append(req) or {"ok": True})
    progress = demo.cfg.progress
    progress.parent.mkdir(parents=True, exist_ok=True)
    assert not socket_path(progress).exists()
    progress.write_text("".join(e.to_json() + "\n" for e in (
        RunStarted(run="r1", verb="stop", pid=os.getppid()),
        GuestPlanned(run="r1", guest="web01", stages=("save", "shutdown")),
        StageStarted(run="r1", stage="save", guest="web01"))))
    app = make_app(demo, Providers(), attach="force", attach_poll=0.05)
    async with app.run_test(size=SIZE) as pilot:
        notices = recorded_notices(app)
        await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen), what="attach")
        screen = app.screen
        await wait_for(pilot, lambda: screen.steering not in (steer.NO_RUN, steer.CHECKING), what="the socket asked")
        assert screen.steering.label == "read-only: the run has no control socket"
        assert "the run has no control socket" in str(screen.banner())
        assert screen.board_guest() == "web01" and screen.board_state.rows["web01"].running == "save"
        for key in ("n", "g", "x", "X", "3", "plus", "p"):
            await pilot.press(key)
        await pilot.pause(0.2)
        assert isinstance(app.screen, AttachScreen)  # no confirmation, no prompt
        assert notices and all(text == "read-only: the run has no control socket" for text, _ in notices)
        titles = {c.title for c in screen.palette_commands()}
        assert "Skip stage" not in titles and "Abort run" not in titles and "Back to host view" in titles
    assert sent == [] and not screen.answers


async def test_the_header_says_why_a_run_cannot_be_steered(tmp_path):
    progress = tmp_path / "run" / "progress.jsonl"
    progress.parent.mkdir()
    path = socket_path(progress)
    assert steer.probe(progress) == steer.Steering(False, "the run has no control socket", path)

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a crashed run's socket: nobody listens
    stale.bind(str(path))
    stale.close()
    found = await asyncio.to_thread(steer.probe, progress)
    assert not found.allowed and "cannot reach" in found.reason and str(path) in found.reason
    path.unlink()

    for permitted, want in ((lambda peer, uid: False, steer.Steering(False, f"no permission on {path}", path)),
                            (lambda peer, uid: True, steer.Steering(True, path=path))):
        server = ControlServer(path, RunControl(1), permitted=permitted)
        assert server.open()
        try:
            assert await asyncio.to_thread(steer.probe, progress) == want
        finally:
            await server.aclose()


async def test_moving_a_waiting_guest_to_another_target_from_attach_reaches_the_headless_run(tmp_path):
    from xdtui.screens.dialogs import PromptDialog

    h = E2EHost.make(tmp_path / "h", guests=[("first", 2048, 1), ("second", 1024, 1)], XENDOMAINS_STOP_MAXWAIT=300,
                     XENDOMAINS_PARALLEL=1)
    for name, gib in (("xen02", 16), ("xen03", 24)):
        h.add_peer(name, 2048 + gib * 1024)
    h.configure(XENDOMAINS_MIGRATE_TARGETS="xen02 xen03")
    h.sim("fault", "migrate", "first", "hang")  # holds the only slot while the operator moves `second`
    proc = await start_headless(h)
    try:
        app = make_app(console_for(h), Providers(), attach="auto", attach_poll=0.05)
        async with app.run_test(size=SIZE) as pilot:
            screen = await attached(pilot, app)
            assert "Move guest to target" in {c.title for c in screen.palette_commands()}
            await wait_for(pilot, lambda: (t := screen.board_state.targets.get("xen03")) and t.in_flight == ("first",),
                           timeout=30, what="first's migration to xen03 to be shown in flight")
            board = screen.query_one(BoardTable)
            board.move_cursor(row=board.get_row_index("second"))
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, PromptDialog), what="the target prompt")
            await pilot.press(*"xen02", "enter")
            await wait_for(pilot, lambda: screen.answers, what="the run's answer")
            assert [(a.ok, a.request.wire()) for a in screen.answers] == [
                (True, {"op": "move_guest", "guest": "second", "target": "xen02"})]
            await wait_for(pilot, lambda: ("second", 1024) in screen.board_state.targets["xen02"].guests,
                           what="the board to show second on xen02")
            ControlClient(socket_path(h.progress)).skip_stage("first", "migrate")
            await wait_for(pilot, lambda: screen.board_state.finished is not None, timeout=60, what="the run to finish")
        res = h.finish(proc)
    finally:
        stop_headless(h, proc)
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"first": "saved", "second": "migrated"}
    assert "second" in h.pool_guests()["xen02"]
