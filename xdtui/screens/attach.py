"""Attach: follow a headless `xendomains` run (the one systemd started at shutdown), and steer it where permitted.

The same stage board and log as a run the console starts, fed by the same
reducer, from events read back from the progress file (see `xdtui.follow`).
The run belongs to another process; it can be steered only through its
control socket (`xdcore.control_socket`: root or the run's own user).  When a run
is found — and again when a new run replaces the progress file — the
socket is asked (`xdtui.steer.probe`, in a thread); the header says
"steering" or "read-only: why".  While steering, the host view's
interventions (skip stage or guest, abort, stage toggles, parallelism,
migration target) work here with the same keys, palette titles and
confirmations, sent as requests over the socket; read-only, the same keys
only say why not.  The guest a key acts on is the board's selected row.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker

from xdcore.pipeline.stages import STAGES

from .. import board as B
from .. import steer
from ..commands import ATTACH_COMMANDS, STEER_COMMANDS, Command, bindings_for
from ..follow import follow, pid_alive
from ..formatting import clock
from ..messages import ControlAnswered, EventsArrived, SteeringChecked
from ..runs import TOGGLABLE
from ..widgets.event_log import EventLog
from ..widgets.stage_board import BoardTable, StageBoard, stage_title, toggle_line
from .dialogs import (ask_migration_target, ask_move_target, ask_parallelism, confirm_abort, confirm_skip_guest,
                      confirm_skip_stage)

if TYPE_CHECKING:
    from ..app import XdApp


class AttachScreen(Screen):
    """The stage board of a headless run, live; steered over its control socket when permitted."""

    BINDINGS = bindings_for(ATTACH_COMMANDS + STEER_COMMANDS)
    app: "XdApp"

    def __init__(self, poll_interval: float = 0.2) -> None:
        super().__init__(id="attach")
        self.poll_interval = poll_interval
        self.board_state: B.BoardState = B.EMPTY_BOARD
        self.steering: steer.Steering = steer.NO_RUN
        self.batches = 0  # batches handled (tests wait on it)
        self.answers: list[steer.Answer] = []  # what the run answered, in order (tests read it)
        self._probing: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="attach-banner")
        yield StageBoard(id="board", classes="pane")
        yield EventLog(id="log", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log").border_title = "Log"
        self.show()
        self.follow_progress()
        self.set_interval(1.0, self._tick, name="attach-tick")
        self.query_one(BoardTable).focus()

    def palette_commands(self) -> list[Command]:
        return list(ATTACH_COMMANDS) + (list(STEER_COMMANDS) if self.steering.allowed else [])

    # -- workers -------------------------------------------------------------------------------------------

    @work(exclusive=True, group="follow", exit_on_error=False)
    async def follow_progress(self) -> None:
        async for batch in follow(self.app.host.cfg.progress, self.poll_interval):
            self.post_message(EventsArrived(batch.events, source="attach", reset=batch.reset))

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def probe_control(self) -> None:
        run = self.board_state.run
        found = await asyncio.to_thread(steer.probe, self.app.host.cfg.progress)
        self.post_message(SteeringChecked(run, found))

    @work(exclusive=False, group="steer", exit_on_error=False)
    async def send_request(self, req: steer.Request) -> None:
        path = self.steering.path
        if path is None:  # read-only since the request was confirmed
            self.post_message(ControlAnswered(steer.Answer(req, False, f"Could not {req.what}: {self.steering.label}")))
            return
        self.post_message(ControlAnswered(await steer.send(path, req)))

    def _probe(self) -> None:
        self._probing = self.probe_control()

    def restart_worker(self, group: str) -> None:
        """Called by the app's worker-failure handler a little after the follower or the probe failed."""
        again = {"follow": self.follow_progress, "probe": self._probe}.get(group)
        if again is not None:
            again()

    def on_worker_state_changed(self, event) -> None:
        self.app.worker_state_changed(event)  # the one place worker failures are handled

    # -- data in -------------------------------------------------------------------------------------------

    def on_events_arrived(self, msg: EventsArrived) -> None:
        log = self.query_one(EventLog)
        before = self.board_state
        if msg.reset:
            self.board_state = B.EMPTY_BOARD
            log.note("— the progress file was replaced: a new run —", level="warning")
        self.board_state = b = B.reduce_all(self.board_state, msg.events)
        log.add(msg.events)
        self.batches += 1
        if b.empty:
            self.steering = steer.NO_RUN
        elif b.finished is not None and not b.active:
            self.steering = steer.FINISHED
        elif msg.reset or b.run != before.run:  # a run found, or a new one replaced it: may we steer it?
            self.steering = steer.CHECKING
            self._probe()
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

    def banner(self) -> Text:
        b = self.board_state
        path = self.app.host.cfg.progress
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" ATTACHED ", style="bold reverse")
        if b.empty:
            t.append(f"  waiting for a run in {path}", style="dim")
            t.append("\n")
            return t
        what = {"stop": "stop (evacuation)", "start": "start"}.get(b.verb, b.verb)
        t.append(f"  headless {what} · pid {b.pid}")
        if b.started:
            t.append(f" · since {clock(b.started)}", style="dim")
        if b.active and b.pid and not pid_alive(b.pid) and not self.app.providers.frozen_clock:
            t.append("  process gone without finishing", style="bold red")
        elif b.finished is not None:
            t.append("  finished", style="green" if b.exit_code == 0 else "bold red")
        t.append(f" · run {b.run}", style="dim")  # last: the first thing cut on a narrow terminal
        t.append("\n")
        s = self.steering
        if s.allowed:
            t.append(" steering ", style="bold reverse green")
            t.append("  k skip stage · g skip guest · x/X abort · p/+/- parallel · 1–5 stages · o target", style="dim")
        else:
            t.append(" read-only ", style="bold reverse")
            t.append(f"  {s.reason}")
        return t

    def _run_config(self):
        """What the run's stages are judged by: this host's config (the run's own, as a rule) and its target now."""
        cfg = self.app.host.cfg
        if self.board_state.migrate_target:
            cfg = cfg.with_overrides(migrate=tuple(self.board_state.migrate_target.split()))
        return cfg

    def prefs_text(self) -> Text | None:
        """The run's stage toggles, migration target and parallelism, as steering changes them."""
        b = self.board_state
        if not self.steering.allowed or b.verb != "stop":
            return None
        cfg = self._run_config()
        states = {name: "n/a" if not STAGES[name].is_enabled(cfg) else "off" if name in b.disabled else "on"
                  for name in TOGGLABLE}
        return toggle_line(states, b.migrate_target, b.parallel)

    def show(self) -> None:
        self.query_one("#board").border_title = "Stage board (steering)" if self.steering.allowed else "Stage board (read-only)"
        self.query_one("#attach-banner", Static).update(self.banner())
        self.query_one(StageBoard).show(self.board_state, self.app.providers.clock(), self.prefs_text())

    # -- which guest a key acts on -------------------------------------------------------------------------------

    def selected_guest(self) -> str | None:
        """The board's selected row."""
        return self.query_one(BoardTable).guest_at_cursor()

    def _may_steer(self) -> bool:
        """True when steering; else a notice saying why not (and nothing is sent)."""
        if self.steering.allowed:
            return True
        self.notify(self.steering.label, severity="warning", markup=False)
        return False

    def _send_if_confirmed(self, dialog, req: steer.Request) -> None:
        run = self.board_state.run

        def done(ok: bool | None) -> None:
            if not ok:
                return
            if self.board_state.run != run:  # never send what was asked about one run to the next
                self.notify("A new run replaced the one you answered about: nothing sent.", severity="warning")
                return
            self.send_request(req)

        self.app.push_screen(dialog, done)

    # -- actions: interventions over the control socket ---------------------------------------------------------

    def action_skip_stage(self) -> None:
        if not self._may_steer():
            return
        guest = self.selected_guest()
        row = self.board_state.rows.get(guest) if guest else None
        if row is None or row.outcome or not row.running:
            self.notify("No stage is running for that guest (put the board's cursor on a running guest).", severity="warning")
            return
        self._send_if_confirmed(confirm_skip_stage(f"{guest}: {stage_title(row.running)}"),
                                steer.skip_stage(row.guest, row.running))

    def action_skip_guest(self) -> None:
        if not self._may_steer():
            return
        guest = self.selected_guest()
        row = self.board_state.rows.get(guest) if guest else None
        if row is None:
            self.notify("No guest under the board's cursor.", severity="warning")
            return
        if row.outcome:
            self.notify(f"{row.guest} is already handled ({row.outcome}).", severity="warning")
            return
        self._send_if_confirmed(confirm_skip_guest([row.guest]), steer.skip_guest(row.guest))

    def action_abort(self) -> None:
        if self._may_steer():
            self._send_if_confirmed(confirm_abort(now=False), steer.abort(now=False))

    def action_abort_now(self) -> None:
        if self._may_steer():
            self._send_if_confirmed(confirm_abort(now=True), steer.abort(now=True))

    def action_toggle_stage(self, name: str) -> None:
        if not self._may_steer():
            return
        if not STAGES[name].is_enabled(self._run_config()):
            why = "set a migration target with o" if name == "migrate" else "the config gives it nothing to do"
            self.notify(f"{stage_title(name)} cannot be turned on: {why}.", severity="warning")
            return
        self.send_request(steer.set_stage(name, enabled=name in self.board_state.disabled))

    def _parallel_now(self) -> int:
        return self.board_state.parallel or self.app.host.cfg.parallel

    def action_parallel(self) -> None:
        if self._may_steer():
            ask_parallelism(self, self._parallel_now(), "How many guests the headless run handles at once.",
                            lambda n: self.send_request(steer.set_parallel(n)))

    def action_parallel_step(self, delta: int) -> None:
        if self._may_steer():
            self.send_request(steer.set_parallel(max(1, self._parallel_now() + delta)))

    def action_move_target(self) -> None:
        if not self._may_steer():
            return
        guest = self.selected_guest()
        if not guest:
            self.notify("No guest under the board's cursor.", severity="warning")
            return
        ask_move_target(self, guest, self.board_state, lambda t: self.send_request(steer.move_guest(guest, t)))

    def action_migrate_target(self) -> None:
        if self._may_steer():
            cur = self.board_state.migrate_target or " ".join(self.app.host.cfg.migrate)
            ask_migration_target(self, cur, "the headless run",
                                 lambda words: self.send_request(steer.set_migrate_target(words)))

    # -- leaving --------------------------------------------------------------------------------------------------

    def action_host_view(self) -> None:
        self.dismiss()

    async def action_quit(self) -> None:
        await self.app.action_quit()
