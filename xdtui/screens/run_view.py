"""What every screen showing a run shares: follow the progress file, steer over the control socket.

Every run the console shows is a headless `xendomains` run — one the console
launched, one systemd started at shutdown, one started from another shell —
so there is one way to show it: the events read back from the progress file
(`xdtui.follow`), drawn through the board reducer, and one way to steer it:
requests over its control socket (`xdtui.steer`; root or the run's own user).
When a run is found, and again when a new run replaces the progress file,
the socket is asked whether we may steer; read-only, the same keys only say
why not.  Each request carries this console's terminal, so the run logs who
sent it.

The screen gets the `ConsoleState` it needs when it is made; it never
reaches into the App (which only hosts the screens and handles leaving).
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from xdcore.events import RunStarted
from xdcore.pipeline.stages import STAGES

from .. import board as B
from .. import steer
from ..follow import follow, pid_alive
from ..messages import ControlAnswered, EventsArrived, SteeringChecked
from ..runs import stage_states
from ..state import ConsoleState
from ..widgets.event_log import EventLog
from ..widgets.stage_board import BoardTable, StageBoard, stage_title, toggle_line
from .dialogs import (ask_migration_target, ask_move_target, ask_parallelism, confirm_abort, confirm_skip_guest,
                      confirm_skip_stage)

#: seconds before a failed poller (watcher, lists, figures, follower) starts again
POLLER_RETRY = 5.0


class RunView(Screen):
    """A screen with a stage board fed from the progress file, steering the run where permitted."""

    def __init__(self, state: ConsoleState, *, id: str, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.state = state
        self.board_state: B.BoardState = B.EMPTY_BOARD
        self.steering: steer.Steering = steer.NO_RUN
        self.batches = 0  # batches handled (tests wait on it)
        self.answers: list[steer.Answer] = []  # what the run answered, in order (tests read it)
        self._probing: Worker | None = None

    @property
    def host(self):
        return self.state.host

    @property
    def run_active(self) -> bool:
        return self.board_state.active

    # -- workers -------------------------------------------------------------------------------------------

    @work(exclusive=True, group="follow", exit_on_error=False)
    async def follow_progress(self) -> None:
        async for batch in follow(self.host.cfg.progress, self.state.attach_poll):
            self.post_message(EventsArrived(batch.events, source="progress", reset=batch.reset))

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def probe_control(self) -> None:
        run = self.board_state.run
        found = await asyncio.to_thread(steer.probe, self.host.cfg.progress)
        self.post_message(SteeringChecked(run, found))

    @work(exclusive=False, group="steer", exit_on_error=False)
    async def send_request(self, req: steer.Request) -> None:
        path = self.steering.path
        if path is None:  # read-only since the request was confirmed
            self.post_message(ControlAnswered(steer.Answer(req, False, f"Could not {req.what}: {self.steering.label}")))
            return
        self.post_message(ControlAnswered(await steer.send(path, req, tty=self.state.tty)))

    def _probe(self) -> None:
        self._probing = self.probe_control()

    def restart_worker(self, group: str) -> None:
        again = {"follow": self.follow_progress, "probe": self._probe}.get(group)
        if again is not None:
            again()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures are handled: said once in the log and a toast; pollers start again."""
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        err = worker.error
        text = f"{worker.group}: {type(err).__name__}: {err}"
        if self.is_attached:
            self.query_one(EventLog).note(text, level="error", at=self.state.providers.clock())
        self.notify(text, severity="error", timeout=10, markup=False)
        if not self.state.closing:
            self.set_timer(POLLER_RETRY, lambda: self.is_attached and self.restart_worker(worker.group))

    # -- data in -------------------------------------------------------------------------------------------

    def on_events_arrived(self, msg: EventsArrived) -> None:
        log = self.query_one(EventLog)
        before = self.board_state
        if msg.reset and not before.empty:
            self.board_state = B.EMPTY_BOARD
            log.note("— the progress file was replaced: a new run —", level="warning")
        for e in msg.events:
            if isinstance(e, RunStarted) and self.state.adopt(e.run, e.pid, e.at):
                log.note(f"this console started run {e.run} (pid {e.pid})", level="info")
        self.board_state = b = B.reduce_all(self.board_state, msg.events)
        log.add(msg.events)
        self.batches += 1
        if b.empty:
            self.steering = steer.NO_RUN
        elif b.finished is not None and not b.active:
            self.steering = steer.FINISHED
        elif msg.reset or b.run != before.run or (b.active and not before.active):
            self.steering = steer.CHECKING  # a run found, or a new one replaced it: may we steer it?
            self._probe()
        self.events_drawn(msg, before)

    def events_drawn(self, msg: EventsArrived, before: B.BoardState) -> None:
        """Redraw after a batch (screens add what else changes)."""
        self.show()

    def on_steering_checked(self, msg: SteeringChecked) -> None:
        b = self.board_state
        if msg.run != b.run or not b.active:  # asked about a run that has since ended or been replaced
            return
        if msg.steering != self.steering:
            self.steering = msg.steering
            self.show()

    def on_control_answered(self, msg: ControlAnswered) -> None:
        a = msg.answer
        self.answers.append(a)
        self.notify(a.text, severity="information" if a.ok else "error", timeout=8 if a.ok else 12, markup=False)
        if not a.ok and self.board_state.active:
            self._probe()  # the socket may be gone: let the header say so

    def _tick(self) -> None:
        b = self.board_state
        if b.active:
            idle = self._probing is None or self._probing.is_finished
            if idle and not self.steering.allowed:
                self._probe()  # the socket opens as the run starts: ask again until it answers
            elif idle and b.pid and not pid_alive(b.pid):
                self._probe()  # killed without finishing: its socket no longer answers
        self.show()

    # -- drawing ---------------------------------------------------------------------------------------------

    def show(self) -> None:
        self.query_one(StageBoard).show(self.board_state, self.state.providers.clock(), self.prefs_text())

    def run_config(self):
        """What the run's stages are judged by: this host's config and the run's migration target now."""
        cfg = self.host.cfg
        if self.board_state.migrate_target:
            cfg = cfg.with_overrides(migrate=tuple(self.board_state.migrate_target.split()))
        return cfg

    def run_prefs_text(self) -> Text | None:
        """The run's stage toggles, migration target and parallelism, as steering changes them."""
        b = self.board_state
        if not self.steering.allowed or b.verb != "stop":
            return None
        return toggle_line(stage_states(self.run_config(), b.disabled), b.migrate_target, b.parallel)

    def prefs_text(self) -> Text | None:
        return self.run_prefs_text()

    # -- which guest a key acts on ---------------------------------------------------------------------------------

    def board_guest(self) -> str | None:
        """The board's selected row."""
        return self.query_one(BoardTable).guest_at_cursor()

    def may_steer(self) -> bool:
        """True when steering; else a notice saying why not (and nothing is sent)."""
        if self.steering.allowed:
            return True
        self.notify(self.steering.label, severity="warning", markup=False)
        return False

    def send_if_confirmed(self, dialog, req: steer.Request) -> None:
        run = self.board_state.run

        def done(ok: bool | None) -> None:
            if not ok:
                return
            if self.board_state.run != run:  # never send what was asked about one run to the next
                self.notify("A new run replaced the one you answered about: nothing sent.", severity="warning")
                return
            self.send_request(req)

        self.app.push_screen(dialog, done)

    # -- interventions over the control socket (the same keys and titles on every screen) -------------------------

    def action_skip_stage(self) -> None:
        if not self.run_active:
            self.notify("No run in progress: turn stages off with 1–5 instead.", severity="warning")
            return
        if not self.may_steer():
            return
        guest = self.board_guest()
        row = self.board_state.rows.get(guest) if guest else None
        if row is None or row.outcome or not row.running:
            self.notify("No stage is running for that guest (put the board's cursor on a running guest).", severity="warning")
            return
        self.send_if_confirmed(confirm_skip_stage(f"{guest}: {stage_title(row.running)}"),
                               steer.skip_stage(row.guest, row.running))

    def action_skip_guest(self) -> None:
        if not self.may_steer():
            return
        guest = self.board_guest()
        row = self.board_state.rows.get(guest) if guest else None
        if row is None:
            self.notify("No guest under the board's cursor.", severity="warning")
            return
        if row.outcome:
            self.notify(f"{row.guest} is already handled ({row.outcome}).", severity="warning")
            return
        self.send_if_confirmed(confirm_skip_guest([row.guest]), steer.skip_guest(row.guest))

    def action_abort(self) -> None:
        self._abort(now=False)

    def action_abort_now(self) -> None:
        self._abort(now=True)

    def _abort(self, now: bool) -> None:
        if not self.run_active:
            self.notify("No run in progress.", severity="warning")
        elif self.may_steer():
            self.send_if_confirmed(confirm_abort(now), steer.abort(now))

    def action_toggle_stage(self, name: str) -> None:
        if not self.may_steer():
            return
        if not STAGES[name].is_enabled(self.run_config()):
            self.cannot_turn_on(name)
            return
        self.send_request(steer.set_stage(name, enabled=name in self.board_state.disabled))

    def cannot_turn_on(self, name: str) -> None:
        """The notice for a stage toggle the config gives nothing to do (the run's or the next run's)."""
        why = "set a migration target with o" if name == "migrate" else "the config gives it nothing to do"
        self.notify(f"{stage_title(name)} cannot be turned on: {why}.", severity="warning")

    def _parallel_now(self) -> int:
        return self.board_state.parallel or self.host.cfg.parallel

    def action_parallel(self) -> None:
        if self.may_steer():
            ask_parallelism(self, self._parallel_now(), "How many guests the run handles at once.",
                            lambda n: self.send_request(steer.set_parallel(n)))

    def action_parallel_step(self, delta: int) -> None:
        if self.may_steer():
            self.send_request(steer.set_parallel(max(1, self._parallel_now() + delta)))

    def action_move_target(self) -> None:
        if not self.run_active:
            self.notify("Moving a guest to another target works during an evacuation with several targets.",
                        severity="warning")
            return
        if not self.may_steer():
            return
        guest = self.board_guest()
        if not guest:
            self.notify("No guest under the board's cursor.", severity="warning")
            return
        ask_move_target(self, guest, self.board_state.targets.values(),
                        lambda t: self.send_request(steer.move_guest(guest, t)))

    def action_migrate_target(self) -> None:
        if self.may_steer():
            cur = self.board_state.migrate_target or " ".join(self.host.cfg.migrate)
            ask_migration_target(self, cur, "the run", lambda words: self.send_request(steer.set_migrate_target(words)))

    def palette_commands(self) -> list:
        return []

    def guest_facts(self, name: str):
        from .guest_detail import GuestFacts

        return GuestFacts(name, row=self.board_state.rows.get(name), verb=self.board_state.verb, run=self.board_state.run,
                          now=self.state.providers.clock())

    def on_data_table_row_selected(self, event) -> None:
        """Enter on a guest's row: its detail."""
        from ..widgets.domain_table import DomainTable

        if not isinstance(event.data_table, (BoardTable, DomainTable)):
            return
        name = event.row_key.value if event.row_key is not None else None
        if name:
            self.open_detail(str(name))

    def open_detail(self, name: str) -> None:
        from .guest_detail import GuestDetail

        self.app.push_screen(GuestDetail(self.guest_facts(name), self.host.cfg))

    def action_timeline(self) -> None:
        """The timeline of the last run: the verb of the run on the board (a finished one: wait for its report)."""
        from .run_timeline import RunTimeline

        b = self.board_state
        verb = b.verb if b.verb in ("stop", "start") else "stop"
        finished = b.run if b.finished is not None and not b.active else ""
        self.app.push_screen(RunTimeline(self.host.cfg, verb, expect_run=finished))

    def action_zoom(self) -> None:
        """The focused pane full screen (Textual's maximize), or back."""
        if self.maximized is not None:
            self.minimize()
            return
        if self.focused is not None:
            self.maximize(self.focused)

    def action_help(self) -> None:
        from .help import HelpScreen

        title = "Host view" if self.id == "host" else "Attached run"
        self.app.push_screen(HelpScreen(title, self.help_commands()))

    def help_commands(self) -> list:
        """Every key of the screen, whether or not it applies right now."""
        return self.palette_commands()

    async def action_quit(self) -> None:
        """Leave the console; a run goes on (it is headless)."""
        await self.app.action_quit()
