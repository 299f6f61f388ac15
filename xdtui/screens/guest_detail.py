"""Enter on a guest: everything the console knows about it, on one scrollable page.

The domain as the watcher sees it, its config file (the auto directory's),
its save image, every stage of the run on the board with start times and
durations, every stage of the last start and stop (their reports), and the
whole stderr of each command that failed.  Built from values the host view
already holds (`GuestFacts`), so opening it does no I/O but reading the
config file and the reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from xdcore.config import Config
from xdcore.model import AutoConfig, Domain, SaveImage
from xdcore.report import RunReport, load_last

from .. import board as B
from ..formatting import age, clock, duration, mib, size
from ..widgets.stage_board import stage_title

CONFIG_LINES = 40


@dataclass(frozen=True)
class GuestFacts:
    """What the host view knows of one guest when Enter is pressed."""

    name: str
    domain: Domain | None = None
    auto: AutoConfig | None = None
    image: SaveImage | None = None
    row: B.GuestRow | None = None
    verb: str = ""
    now: float = 0.0
    run: str = ""  # the board's run: its report is not shown a second time under "Last runs"


def _head(t: Text, title: str) -> None:
    t.append(f"\n{title}\n", style="bold underline")


def _config_text(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read: {exc.strerror or exc})"
    more = len(lines) - CONFIG_LINES
    return "\n".join(lines[:CONFIG_LINES]) + (f"\n… and {more} more lines" if more > 0 else "")


def _once(detail: str, said: str) -> str:
    """A stage's detail, unless it is the guest's own, said on the line above (one line per fact)."""
    return f"  {detail}" if detail and detail != said else ""


def _report_part(t: Text, rep: RunReport | None, verb: str, name: str, board_run: str = "") -> None:
    g = rep.guest(name) if rep is not None else None
    if g is None:
        t.append(f"  no {verb} report names {name}\n", style="dim")
        return
    when = clock(rep.started_at)
    if board_run and rep.run == board_run:
        t.append(f"  {verb} at {when}: the run above\n", style="dim")
        return
    t.append(f"  {verb} at {when}: ")
    t.append(g.outcome, style="bold")
    t.append(f" in {duration(g.elapsed)}" + (f" — {g.detail}" if g.detail else "") + "\n")
    for s in g.stages:
        t.append(f"    {stage_title(s.stage):<12} {s.outcome:<10} {duration(s.elapsed) if s.elapsed else '':>7}"
                 + _once(s.detail, g.detail) + "\n")
    for n in g.notes:
        if g.detail and g.detail in n:
            n = n.replace(g.detail, "(as above)")
        t.append(f"    {n}\n", style="dim")


def detail_text(f: GuestFacts, cfg: Config, reports: dict[str, RunReport | None]) -> Text:
    t = Text()
    d = f.domain
    _head(t, "Domain")
    if d is None:
        t.append("  not running on this host\n", style="dim")
    else:
        t.append(f"  id {d.domid} · {d.state.words if d.state else '?'} · {mib(d.memory_mib)} · "
                 f"{d.vcpus or '-'} vCPU · CPU time {duration(d.cpu_time)}\n")
    _head(t, "Config")
    if f.auto is None:
        t.append("  not in the auto directory\n", style="dim")
    else:
        t.append(f"  {f.auto.path}\n", style="cyan")
        t.append(_config_text(f.auto.path) + "\n", style="dim")
    _head(t, "Save image")
    im = f.image
    if im is None:
        t.append("  none\n", style="dim")
    else:
        state = "QUARANTINED (a restore failed, or its save did not finish)" if im.quarantined else ("valid " + im.kind.value) if im.valid else "no valid header"
        t.append(f"  {im.path} · {size(im.size)} · {age(im.mtime, f.now)} old · {state}\n")
    _head(t, "This run" + (f" ({f.verb})" if f.verb else ""))
    r = f.row
    if r is None:
        t.append("  not on the board\n", style="dim")
    else:
        t.append("  " + (r.outcome or (f"{stage_title(r.running).lower()}…" if r.running else "waiting")), style="bold")
        t.append((f" in {duration(r.elapsed)}" if r.elapsed else "") + (f" — {r.detail}" if r.detail else "") + "\n")
        for stage, c in r.cells.items():
            if c.status == B.OFF:
                continue
            when = clock(c.started) if c.started else ""
            took = duration(c.elapsed) if c.elapsed is not None else (duration(f.now - c.started) if c.started else "")
            t.append(f"    {stage_title(stage):<12} {c.status:<10} {when:>8} {took:>7}" + _once(c.detail, r.detail) + "\n")
        for cmd, err in r.errors:
            t.append(f"  $ {cmd}\n", style="bold red")
            t.append((err.rstrip() or "(no stderr)") + "\n", style="red")
    _head(t, "Last runs")
    for verb in ("stop", "start"):
        _report_part(t, reports.get(verb), verb, f.name, f.run if r is not None else "")
    return t


class GuestDetail(ModalScreen[None]):
    """One guest, all of it; esc or q closes."""

    DEFAULT_CSS = """
    GuestDetail { align: center middle; }
    GuestDetail > Vertical { width: 96%; max-width: 120; height: 96%; border: heavy $accent;
        background: $surface; padding: 0 1; }
    GuestDetail #detail-title { text-style: bold; height: 1; }
    GuestDetail VerticalScroll { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close", show=False),
                Binding("j", "scroll(1)", "Down", show=False), Binding("k", "scroll(-1)", "Up", show=False)]

    def __init__(self, facts: GuestFacts, cfg: Config) -> None:
        super().__init__()
        self.facts, self.cfg = facts, cfg

    def compose(self) -> ComposeResult:
        reports = {v: load_last(self.cfg, v) for v in ("stop", "start")}
        with Vertical():
            yield Label(f"{self.facts.name} — guest detail (esc closes)", id="detail-title")
            with VerticalScroll():
                yield Static(detail_text(self.facts, self.cfg, reports), id="detail-body")

    def action_scroll(self, lines: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
