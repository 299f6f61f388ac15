"""`T`: the timeline of the last finished run — one bar per guest, grouped by disk and links, planned vs actual.

The same picture as `xendomains report stop|start --timeline` (`xdcore.timeline.report_bars`
of the run's report, `load_last`), drawn by `TimelineView`.  It opens on the verb of
the run the board shows (the last stop when the board is empty); `s` switches between
the last stop and the last start.  The board learns that a run finished from the
progress file, which may be read a moment before the run writes its final report:
while the report of the run the board showed is missing or unfinished, the screen
says so and reads it again shortly.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from xdcore.config import Config
from xdcore.report import RunReport, load_last
from xdcore.timeline import report_bars

from ..formatting import clock, duration
from ..widgets.timeline import TimelineView

#: seconds between reads while the finished run's report is not written yet, and how many reads
RELOAD_EVERY, RELOADS = 0.3, 40


def report_heading(rep: RunReport | None, verb: str) -> Text:
    t = Text()
    if rep is None:
        t.append(f"No {verb} report yet: the timeline appears after a {verb} run.", style="dim")
        return t
    t.append(f"last {verb}", style="bold")
    t.append(f" · run {rep.run} · started {clock(rep.started_at)}")
    if rep.finished_at is None:
        t.append(" · not finished", style="bold yellow")
    else:
        t.append(f" · took {duration(rep.finished_at - rep.started_at)} · exit {rep.exit_code}",
                 style="green" if rep.exit_code == 0 else "bold red")
    t.append(f"\n{len(rep.guests)} guest{'s' if len(rep.guests) != 1 else ''}", style="dim")
    if not any(g.planned for g in rep.guests):
        t.append(" · no planned slots (the run was not scheduled): actual bars only", style="dim")
    t.append("   ░ planned  █ actual", style="dim")
    return t


class RunTimeline(ModalScreen[None]):
    """The last stop's or start's timeline; `s` switches, esc closes."""

    DEFAULT_CSS = """
    RunTimeline { align: center middle; }
    RunTimeline > Vertical { width: 96%; max-width: 130; height: auto; max-height: 96%;
        border: heavy $accent; background: $surface; padding: 0 1; }
    RunTimeline #timeline-title { text-style: bold; }
    RunTimeline #timeline-heading { height: auto; }
    RunTimeline VerticalScroll { height: auto; max-height: 1fr; }
    """
    BINDINGS = [
        Binding("escape,q,T", "close", "Close", show=False),
        Binding("s", "switch", "Last stop / last start", show=False),
    ]

    def __init__(self, cfg: Config, verb: str = "stop", expect_run: str = "") -> None:
        super().__init__()
        self.cfg, self.verb, self.expect_run = cfg, verb, expect_run
        self.report: RunReport | None = None
        self._reloads = 0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Timeline of the last run (s: stop ↔ start, esc closes)", id="timeline-title")
            yield Static(id="timeline-heading")
            with VerticalScroll():
                yield TimelineView(id="run-timeline", width=60)

    def on_mount(self) -> None:
        self.load()

    def waiting(self) -> bool:
        """The board's finished run is this verb's, but its final report is not written yet."""
        rep = self.report
        return bool(self.expect_run) and (rep is None or rep.run != self.expect_run or rep.exit_code is None)

    def load(self) -> None:
        self.report = load_last(self.cfg, self.verb)
        heading = report_heading(self.report, self.verb)
        if self.waiting() and self._reloads < RELOADS:
            self._reloads += 1
            heading.append(f"\nwaiting for the report of run {self.expect_run} …", style="yellow")
            self.set_timer(RELOAD_EVERY, self.load)
        self.query_one("#timeline-heading", Static).update(heading)
        self.query_one(TimelineView).set_bars(report_bars(self.report) if self.report else ())

    def action_switch(self) -> None:
        self.verb = "start" if self.verb == "stop" else "stop"
        self.expect_run, self._reloads = "", 0
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)
