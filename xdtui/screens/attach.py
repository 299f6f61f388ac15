"""Attach: follow the progress file of a headless `xendomains` run, read-only.

The same stage board and log as a run the console starts, fed by the same
reducer, from events read back from the file (see `xdtui.follow`).  Nothing
here can change the run: it belongs to another process (often the one
systemd started at shutdown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from .. import board as B
from ..commands import ATTACH_COMMANDS, Command, bindings_for
from ..follow import follow, pid_alive
from ..formatting import clock
from ..messages import EventsArrived
from ..widgets.event_log import EventLog
from ..widgets.stage_board import StageBoard

if TYPE_CHECKING:
    from ..app import XdApp


class AttachScreen(Screen):
    """The stage board of a headless run, live, read-only."""

    BINDINGS = bindings_for(ATTACH_COMMANDS)
    app: "XdApp"

    def __init__(self, poll_interval: float = 0.2) -> None:
        super().__init__(id="attach")
        self.poll_interval = poll_interval
        self.board_state: B.BoardState = B.EMPTY_BOARD
        self.batches = 0  # batches handled (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="attach-banner")
        yield StageBoard(id="board", classes="pane")
        yield EventLog(id="log", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#board").border_title = "Stage board (read-only)"
        self.query_one("#log").border_title = "Log"
        self.show()
        self.follow_progress()
        self.set_interval(1.0, self._tick, name="attach-tick")

    def palette_commands(self) -> list[Command]:
        return list(ATTACH_COMMANDS)

    @work(exclusive=True, group="follow", exit_on_error=False)
    async def follow_progress(self) -> None:
        async for batch in follow(self.app.host.cfg.progress, self.poll_interval):
            self.post_message(EventsArrived(batch.events, source="attach", reset=batch.reset))

    def restart_worker(self, group: str) -> None:
        """Called by the app's worker-failure handler a little after the follower failed."""
        self.follow_progress()

    def on_worker_state_changed(self, event) -> None:
        self.app.worker_state_changed(event)  # the one place worker failures are handled

    def on_events_arrived(self, msg: EventsArrived) -> None:
        log = self.query_one(EventLog)
        if msg.reset:
            self.board_state = B.EMPTY_BOARD
            log.note("— the progress file was replaced: a new run —", level="warning")
        self.board_state = B.reduce_all(self.board_state, msg.events)
        log.add(msg.events)
        self.batches += 1
        self.show()

    def _tick(self) -> None:
        if self.board_state.active:
            self.show()

    def banner(self) -> Text:
        b = self.board_state
        path = self.app.host.cfg.progress
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" ATTACHED ", style="bold reverse")
        if b.empty:
            t.append(f"  waiting for a run in {path}", style="dim")
            return t
        what = {"stop": "stop (evacuation)", "start": "start"}.get(b.verb, b.verb)
        t.append(f"  headless {what} · run {b.run} · pid {b.pid}")
        if b.started:
            t.append(f" · since {clock(b.started)}", style="dim")
        if b.active and b.pid and not pid_alive(b.pid) and not self.app.providers.frozen_clock:
            t.append("  process gone without finishing", style="bold red")
        elif b.finished is not None:
            t.append("  finished", style="green" if b.exit_code == 0 else "bold red")
        t.append("  · read-only", style="dim")
        return t

    def show(self) -> None:
        self.query_one("#attach-banner", Static).update(self.banner())
        self.query_one(StageBoard).show(self.board_state, self.app.providers.clock())

    def action_host_view(self) -> None:
        self.dismiss()

    async def action_quit(self) -> None:
        await self.app.action_quit()
