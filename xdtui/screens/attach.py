"""Attach: the run in progress, full screen — the board, the log, and who may steer it.

The host view shows the same run beside the domains; this screen gives it
the whole terminal (`a`, or `xdtui --attach`) and says in a banner whose run
it is (pid, since when, this console's or another's) and whether this
console may steer it ("steering" or "read-only: why").  Following and
steering are `RunView`'s: the same keys, palette titles and confirmations
as the host view; the guest a key acts on is the board's selected row.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer, Header, Static

from ..commands import ATTACH_COMMANDS, STEER_COMMANDS, Command, bindings_for
from ..follow import pid_alive
from ..formatting import clock
from ..state import ConsoleState
from ..widgets.event_log import EventLog
from ..widgets.stage_board import BoardTable, StageBoard
from .run_view import RunView


class AttachScreen(RunView):
    """The stage board of the run in progress, live; steered over its control socket when permitted."""

    BINDINGS = bindings_for(ATTACH_COMMANDS + STEER_COMMANDS)

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state, id="attach")

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")  # Textual's ⭘ is missing from common terminal and SVG fonts
        yield Static(id="attach-banner")
        yield StageBoard(id="board", classes="pane")
        yield EventLog(id="log", classes="pane", said_once=self.state.said_once)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log").border_title = "Log"
        self.show()
        self.follow_progress()
        self.set_interval(1.0, self._tick, name="attach-tick")
        self.query_one(BoardTable).focus()

    def help_commands(self) -> list[Command]:
        return list(ATTACH_COMMANDS + STEER_COMMANDS)

    def palette_commands(self) -> list[Command]:
        return list(ATTACH_COMMANDS) + (list(STEER_COMMANDS) if self.steering.allowed else [])

    def banner(self) -> Text:
        b = self.board_state
        path = self.host.cfg.progress
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" ATTACHED ", style="bold reverse")
        if b.empty:
            t.append(f"  waiting for a run in {path}", style="dim")
            t.append("\n")
            return t
        what = {"stop": "stop (evacuation)", "start": "start"}.get(b.verb, b.verb)
        whose = "this console's" if self.state.owns(b.run) else "headless"
        t.append(f"  {whose} {what} · pid {b.pid}")
        if b.started:
            t.append(f" · since {clock(b.started)}", style="dim")
        if b.active and b.pid and not pid_alive(b.pid) and not self.state.providers.frozen_clock:
            t.append("  process gone without finishing", style="bold red")
        elif b.finished is not None:
            t.append("  finished", style="green" if b.exit_code == 0 else "bold red")
            t.append(" · T timeline", style="dim")
        t.append(f" · run {b.run}", style="dim")  # last: the first thing cut on a narrow terminal
        t.append("\n")
        s = self.steering
        if s.allowed:
            t.append(" steering ", style="bold reverse green")
            t.append("  n skip stage · g skip guest · x/X abort · p/+/- parallel · 1–5 stages · o target", style="dim")
        else:
            t.append(" read-only ", style="bold reverse")
            t.append(f"  {s.reason}")
        return t

    def show(self) -> None:
        self.query_one("#board").border_title = "Stage board (steering)" if self.steering.allowed else "Stage board (read-only)"
        self.query_one("#attach-banner", Static).update(self.banner())
        super().show()

    def action_host_view(self) -> None:
        self.dismiss()
