"""The stage board: a row per guest, a column per stage, progress and host-wide stages.

It draws a `BoardState` (see `xdtui.board`) and nothing else, so a live run
and an attached one look the same.  Redraws are by diff: rows whose
`GuestRow` object is unchanged are skipped, except running rows, whose
elapsed time and watchdog countdown tick once a second.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from xdcore.pipeline.stages import STAGES

from .. import board as B
from ..board import BoardState, GuestRow
from ..formatting import duration
from .cells import KeyedTable, Spec


#: short stage names of the toggle line ("1SysRq 2Migr 3Save 4Shut 5All"), keys 1..5 in this order
SHORT = {"sysrq": "SysRq", "migrate": "Migr", "save": "Save", "shutdown": "Shut", "shutdown_all": "All"}
_TOGGLE_STYLE = {"on": "green", "off": "yellow", "n/a": "dim"}


def toggle_line(states: dict[str, str], migrate_target: str | None, parallel: int | None) -> Text:
    """The stage toggles ('on' / 'off' / 'n/a' per stage, in key order), migration target and parallelism."""
    t = Text(no_wrap=True, overflow="ellipsis", justify="right")
    for i, (name, state) in enumerate(states.items(), 1):
        t.append(f"{i}", style="bold")
        t.append(SHORT[name], style=_TOGGLE_STYLE[state])
        if state != "on":  # in words, not colour alone: reads on a terminal without colours
            t.append(f":{state}", style=_TOGGLE_STYLE[state])
        t.append(" ")
    if migrate_target:
        t.append("→" + migrate_target + " ", style="cyan")
    if parallel:
        t.append(f"{parallel}×", style="bold")
    return t

_OUTCOME_STYLE = {"migrated": "green", "saved": "green", "shutdown": "green", "restored": "green", "created": "green",
                  "zombie": "magenta", "failed": "bold red", "skipped": "yellow", "destroyed": "red", "running": "green",
                  "suspended": "bold red"}
#: outcomes that are not "handled" in the progress count
NOT_HANDLED = frozenset({"failed", "skipped", "suspended", "running"})


def watchdog_style(left: float, timeout: float) -> str:
    """Coloured by how close the watchdog is to firing: plain, then yellow (half gone), then red (last fifth)."""
    if timeout <= 0:
        return ""
    frac = left / timeout
    return "bold red" if frac < 0.2 or left < 10 else "yellow" if frac < 0.5 else ""


def stage_title(name: str) -> str:
    st = STAGES.get(name)
    return st.title if st else name.capitalize()


def cell_spec(c: B.Cell, now: float) -> Spec:
    s = c.status
    if s == B.PENDING:
        return "·", "dim"
    if s == B.RUNNING:
        return "▶ " + duration(now - c.started if c.started is not None else 0), "bold yellow"
    if s == B.DONE:
        return "✓ " + duration(c.elapsed), "green"
    if s == B.FAILED:
        return "✗ " + duration(c.elapsed), "bold red"
    if s == B.TIMEOUT:
        return "✗ t/o", "bold red"
    if s == B.CANCELLED:
        return "– " + duration(c.elapsed), "yellow"
    if s == B.SKIPPED:
        return "–", "yellow"
    if s == B.DISABLED:
        return "off", "dim"
    return "", ""  # off / unneeded


def row_specs(r: GuestRow, columns: tuple[str, ...], now: float) -> tuple[Spec, ...]:
    cells = tuple(cell_spec(r.cell(c), now) for c in columns)
    if r.outcome:
        elapsed = duration(r.elapsed) if r.elapsed else ""
        result = (r.outcome, _OUTCOME_STYLE.get(r.outcome, ""))
    elif r.running:
        elapsed = duration(now - r.started) if r.started is not None else ""
        result = (stage_title(r.running).lower() + "…", "yellow")
    else:
        elapsed, result = "", ("waiting", "dim")
    if r.gate:  # a readiness gate after the guest is up (start in order groups)
        gate_style = {"waiting": "yellow", "ready": "green", "not ready": "bold yellow"}.get(r.gate, "")
        result = (("up, " if r.gate != "ready" else "") + r.gate + ("…" if r.gate == "waiting" else ""), gate_style)
    left = r.watchdog_left(now)
    wd = (duration(max(0.0, left)), watchdog_style(left, r.command_timeout or r.cell(r.running).timeout)) if left is not None else ("", "")
    name = f"{r.group + 1}│{r.key}" if r.group >= 0 else r.key  # a nameless domain: "(null) domid 15"
    return ((name, "bold" if r.running else ""),) + cells + ((elapsed, ""), wd, result)


def host_line(b: BoardState, now: float) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if b.empty:
        t.append("stages for the next run →", style="dim")
        return t
    for i, (name, c) in enumerate(b.host.items()):
        if i:
            t.append(" · ", style="dim")
        text, style = cell_spec(c, now)
        t.append(stage_title(name) + " ")
        t.append(text or c.status, style=style)
    if b.aborted:
        t.append("  ABORTED", style="bold red")
    if b.targets:  # several migration targets: migrations in flight (of its link's cap) and room left
        t.append("  │ ", style="dim")
        for i, tv in enumerate(b.targets.values()):
            if i:
                t.append(" │ ", style="dim")
            t.append(tv.name + " ", style="cyan")
            if tv.error:
                t.append("left out", style="red")
                continue
            if tv.in_flight or tv.at_once:
                flying = f"{len(tv.in_flight)}/{tv.at_once}" if tv.at_once else str(len(tv.in_flight))
                t.append(f"{flying} migrating", style="bold yellow" if tv.in_flight else "dim")
                t.append(" · ", style="dim")
            t.append(f"{tv.room_left_mib / 1024:.1f} GiB left", style="dim")
    return t


class BoardTable(KeyedTable):
    """The grid of the board, keyed by guest."""

    DEFAULT_CSS = """
    BoardTable { height: 1fr; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._columns: tuple[str, ...] | None = None
        self._rows: dict[str, GuestRow] = {}

    def guest_at_cursor(self) -> str | None:
        return self.key_at_cursor()

    def show(self, b: BoardState, now: float) -> None:
        if b.columns != self._columns:
            self.set_columns([("guest", "Guest", None)] + [("s:" + c, stage_title(c), 7) for c in b.columns]
                             + [("time", "Time", 6), ("wd", "Watchdog", 8), ("result", "Result", 10)])
            self._columns = b.columns
            self._rows.clear()
        want: dict[str, tuple[Spec, ...]] = {}
        for name in b.order:
            row = b.rows[name]
            if self._rows.get(name) is row and not (row.running and not row.outcome):
                want[name] = self._shown[name]  # unchanged and not ticking: no work
            else:
                want[name] = row_specs(row, b.columns, now)
                self._rows[name] = row
        for name in [n for n in self._rows if n not in b.rows]:
            del self._rows[name]
        self.apply_rows(want, b.order)


class StageBoard(Vertical):
    """Progress line, host-wide stages line, and the per-guest grid."""

    DEFAULT_CSS = """
    StageBoard { height: 1fr; }
    StageBoard .board-line { height: 1; }
    StageBoard #board-progress { width: 25; padding-left: 1; }
    StageBoard #board-progress Bar { width: 18; }
    StageBoard #board-status { width: 1fr; height: 1; padding: 0 1; }
    StageBoard #board-host { width: 1fr; height: 1; padding: 0 1; }
    StageBoard #board-prefs { width: auto; max-width: 60%; height: 1; padding: 0 1; }
    StageBoard BoardTable { scrollbar-size-vertical: 1; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(classes="board-line"):
            yield ProgressBar(total=1, show_eta=False, id="board-progress")
            yield Static(id="board-status")
        with Horizontal(classes="board-line"):
            yield Static(id="board-host")
            yield Static(id="board-prefs")
        yield BoardTable(id="board-table")

    @property
    def table(self) -> BoardTable:
        return self.query_one(BoardTable)

    def show(self, b: BoardState, now: float, prefs_text: Text | None = None) -> None:
        _done, total = b.progress()
        counts = b.outcomes()
        skipped, failed = counts.get("skipped", 0), sum(counts.get(o, 0) for o in ("failed", "suspended"))
        handled = sum(n for o, n in counts.items() if o not in NOT_HANDLED)
        bar = self.query_one(ProgressBar)
        bar.display = not b.empty
        if not b.empty:  # handled guests only: a run that skipped or failed some never reads 100 %
            bar.update(total=max(total, 1), progress=handled if total else (1 if b.finished and b.exit_code == 0 else 0))
        status = Text(no_wrap=True, overflow="ellipsis")
        if b.empty:
            status.append("No run in progress.  e: evacuate host · s: start host · ?: keys", style="dim")
        else:
            what = {"stop": "Evacuation", "start": "Start"}.get(b.verb, b.verb)
            status.append(f"{what} ", style="bold")
            status.append(f"{handled}/{total} handled")
            if skipped:
                status.append(f" · {skipped} skipped", style="yellow")
            if failed:
                status.append(f" · {failed} failed", style="bold red")
            if b.aborted:
                status.append(" · aborted", style="bold yellow")
            if b.active:
                status.append(f" · {duration(now - b.started) if b.started else ''}")
                left = b.remaining(now)
                if left is not None:  # from the plan's estimates; absent when the run has none
                    status.append(f" · about {duration(left)} left" if left > 0 else " · past the plan's estimate",
                                  style="" if left > 0 else "yellow")
                status.append("  running", style="bold yellow")
            elif b.finished is not None:
                ok = b.exit_code == 0
                status.append(f" · {duration(b.finished - (b.started or b.finished))}")
                status.append("  done" if ok else f"  failed (exit {b.exit_code})", style="green" if ok else "bold red")
            if b.parallel:
                status.append(f" · parallel {b.parallel}", style="dim")
        self.query_one("#board-status", Static).update(status)
        self.query_one("#board-prefs", Static).update(prefs_text or "")
        self.query_one("#board-host", Static).update(host_line(b, now))
        self.table.show(b, now)
