"""The console App and its one factory, `make_app` — used by the CLI, the tests and the screenshot script.

The app owns the runs it starts (one main run, plus "run one stage now" side
runs beside it): each is a `RunSession` awaited in a worker on the app's own
loop, whose events come back through the EventBus as `EventsArrived`
messages, batched per loop turn.  Worker failures are handled in one place
(`on_worker_state_changed`).  Leaving — by q, ctrl+q, SIGHUP (the SSH session
dropped) or SIGTERM — never leaves a run half-done: the run is aborted (no new
stage starts), the app waits for it so the Service releases the lock, then exits.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from xdcore.events import Event

from .commands import HostCommands
from .follow import headless_run_in_progress
from .host import HostContext
from .messages import EventsArrived, PrefsChanged, RunFinishedLocally
from .providers import Providers
from .runs import RunPrefs, RunRequest, RunSession
from .screens.attach import AttachScreen
from .screens.dialogs import ConfirmDialog
from .screens.host import HostScreen


class XdApp(App[int]):
    """xdtui: the host view, the stage board, and attach."""

    CSS_PATH = "app.tcss"
    TITLE = "xendomains"
    COMMANDS = App.COMMANDS | {HostCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]
    POLLER_RETRY = 5.0  # seconds before a failed poller (watcher, lists, figures) starts again

    def __init__(self, host: HostContext, providers: Providers | None = None, *, attach: str = "auto",
                 attach_poll: float = 0.2, handle_signals: bool = False) -> None:
        super().__init__()
        self.host = host
        self.providers = providers or Providers()
        self.attach_mode = attach  # "auto" | "force" | "off"
        self.attach_poll = attach_poll
        self.handle_signals = handle_signals
        self.prefs = RunPrefs()
        self.session: RunSession | None = None
        self.side_sessions: list[RunSession] = []
        self.closing = False
        self.exit_reason = ""
        self._pending: list[Event] = []
        self.host_screen: HostScreen | None = None
        label = host.label or self.providers.hostname()
        self.sub_title = label
        self.title = "xendomains console"

    def get_driver_class(self):
        """On Linux/Unix, a driver that survives the terminal going away (see xdtui.terminal)."""
        from textual import constants

        if constants.DRIVER is None and sys.platform != "win32":
            from .terminal import HangupSafeDriver

            return HangupSafeDriver
        return super().get_driver_class()

    # -- start-up ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.host_screen = HostScreen()
        self.push_screen(self.host_screen)
        if self.attach_mode == "force" or (self.attach_mode == "auto" and headless_run_in_progress(self.host.cfg.progress)):
            self.attach()
        if self.handle_signals:
            import asyncio

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
            loop.add_signal_handler(signal.SIGTERM, self.leave_cleanly, "terminated")

    def attach(self) -> None:
        if not isinstance(self.screen, AttachScreen):
            self.push_screen(AttachScreen(self.attach_poll))

    # -- runs ------------------------------------------------------------------------------------------------

    @property
    def run_active(self) -> bool:
        return self.session is not None or bool(self.side_sessions)

    def board_is_start(self) -> bool:
        return self.session is not None and self.session.verb == "start"

    def _sink(self, e: Event) -> None:
        """EventBus sink (called synchronously on this loop): batch events, post once per loop turn."""
        self._pending.append(e)
        if len(self._pending) == 1:
            self.call_next(self._flush)

    def _flush(self) -> None:
        events, self._pending = self._pending, []
        if events and self.host_screen is not None:
            self.host_screen.post_message(EventsArrived(events, source="live"))

    def start_run(self, req: RunRequest) -> RunSession:
        if req.side:
            main = self.session
            if main is not None:
                for g in req.only or ():
                    main.skip_guest(g)  # the side run handles them now
            progress = main.progress if main is not None else None
            session = RunSession(self.host, self.prefs, req, self._sink, progress=progress)
            self.side_sessions.append(session)
            self.run_side(session)
        else:
            session = RunSession(self.host, self.prefs, req, self._sink)
            self.session = session
            self.run_main(session)
        return session

    @work(exclusive=True, group="run", exit_on_error=False)
    async def run_main(self, session: RunSession) -> None:
        try:
            outcome = await session.run()
        finally:
            if self.session is session:
                self.session = None
            self._flush()
        self._ended(outcome.verb, outcome.exit_code, outcome.summary)

    @work(exclusive=False, group="side-run", exit_on_error=False)
    async def run_side(self, session: RunSession) -> None:
        try:
            outcome = await session.run()
        finally:
            if session in self.side_sessions:
                self.side_sessions.remove(session)
            self._flush()
        self._ended(outcome.verb, outcome.exit_code, outcome.summary)

    def _ended(self, verb: str, code: int, summary: str) -> None:
        if self.host_screen is not None:
            self.host_screen.post_message(RunFinishedLocally(verb, code, summary))
        if not self.run_active:
            if self.closing:
                self.exit(0)
            else:
                self.notify(f"{verb}: {summary or 'done'}" + ("" if code == 0 else f" (exit {code})"),
                            severity="information" if code == 0 else "warning")

    def sessions(self) -> list[RunSession]:
        return ([self.session] if self.session else []) + list(self.side_sessions)

    def _owner(self, guest: str) -> RunSession | None:
        """The run that handles `guest` now (a side run wins over the main run)."""
        for s in reversed(self.side_sessions):
            if guest in (s.req.only or ()):
                return s
        return self.session

    def running_stage(self, guest: str) -> str | None:
        s = self._owner(guest)
        return s.control.running_stage(guest) if s else None

    def skip_stage(self, guest: str) -> bool:
        s = self._owner(guest)
        return bool(s and s.skip_stage(guest))

    def skip_guest(self, guest: str) -> None:
        s = self._owner(guest)
        if s is not None:
            s.skip_guest(guest)

    def abort_runs(self, now: bool = False) -> None:
        for s in self.sessions():
            s.abort(now=now)

    # -- operator choices (before and during a run) ---------------------------------------------------------------

    def _prefs_changed(self) -> None:
        if self.host_screen is not None:
            self.host_screen.post_message(PrefsChanged())

    def set_stage(self, name: str, enabled: bool) -> None:
        (self.prefs.disabled.discard if enabled else self.prefs.disabled.add)(name)
        if self.session is not None:
            self.session.set_stage(name, enabled)
        self._prefs_changed()

    def set_parallel(self, n: int) -> None:
        self.prefs.parallel = n
        if self.session is not None:
            self.session.set_parallel(n)
        self._prefs_changed()

    def set_migrate_target(self, words: Sequence[str] | None) -> None:
        self.prefs.migrate_target = tuple(words) if words else None
        if self.session is not None:
            if self.prefs.migrate_target and not self.session.cfg.migrate:
                self.notify("This run started without a migration stage; the target applies to the next run.",
                            severity="warning")
            else:
                self.session.set_migrate_target(self.prefs.migrate_target)
        self._prefs_changed()

    # -- leaving -----------------------------------------------------------------------------------------------------

    def _hangup(self) -> None:
        """SIGHUP: the terminal is gone — stop drawing, then leave as cleanly as for q."""
        gone = getattr(self._driver, "terminal_gone", None)
        if gone is not None:
            gone()
        self.leave_cleanly("hangup")

    def leave_cleanly(self, reason: str = "quit") -> None:
        """Abort our runs (no new stage starts), let them finish so the lock is released, then exit."""
        self.exit_reason = reason
        self.closing = True
        if not self.run_active:
            self.exit(0)
            return
        self.abort_runs(now=False)
        if reason == "quit":
            self.notify("Aborting: running stages finish, then the console exits.", severity="warning", timeout=30)

    async def action_quit(self) -> None:
        if not self.run_active:
            self.closing = True
            self.exit(0)
            return

        def done(ok: bool | None) -> None:
            if ok:
                self.leave_cleanly("quit")

        self.push_screen(ConfirmDialog("Quit", "A run is in progress. Abort it (stages running now finish, nothing new "
                                       "starts, the lock is released) and quit when it has stopped?", yes="Abort and quit"),
                         done)

    # -- the one place worker failures are handled ----------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's failure lands here (screens forward theirs: the message does not bubble)."""
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        err = worker.error
        text = f"{worker.group}: {type(err).__name__}: {err}"
        if self.host_screen is not None and self.host_screen.is_attached:
            from .widgets.event_log import EventLog

            self.host_screen.query_one(EventLog).note(text, level="error", at=self.providers.clock())
        self.notify(text, severity="error", timeout=10)
        if worker.group in ("run", "side-run"):
            # the Service's finally has released the lock and the worker's finally forgot the session
            if not self.run_active and self.closing:
                self.exit(1)
        elif not self.closing and hasattr(worker.node, "restart_worker"):
            node = worker.node  # a poller or follower: try again a little later
            self.set_timer(self.POLLER_RETRY, lambda: node.is_attached and node.restart_worker(worker.group))


def make_app(host: HostContext, providers: Providers | None = None, *, attach: str = "auto",
             attach_poll: float = 0.2, handle_signals: bool = False) -> XdApp:
    """The one factory: CLI, tests and the screenshot script build the console here."""
    return XdApp(host, providers, attach=attach, attach_poll=attach_poll, handle_signals=handle_signals)
