"""The schedule as a picture: one bar per guest on a time axis, grouped by the resource it used.

`plan --timeline` draws the planned bars, `report --timeline` the planned and
the actual bar of each guest one above the other, so an administrator sees
at a glance that the disk and the link were busy at once and where the time
went.  Plain text (no Rich: xdcore stays headless); the console draws the
same `Bar`s with its own widget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .plan import busy_time

PLANNED, ACTUAL = "░", "█"


@dataclass(frozen=True)
class Bar:
    """One guest's time on a resource: seconds after the per-guest stages began."""

    guest: str
    resource: str  # "disk", "link:HOST", "" (no shared resource: shutdown)
    start: float
    finish: float
    kind: str = "planned"  # planned | actual
    label: str = ""  # stage or outcome


def resource_title(res: str) -> str:
    if res == "disk":
        return "disk (save directory)"
    if res.startswith("link:"):
        return f"link to {res[5:]}"
    return "no shared resource (shutdown)"


def group(bars: Iterable[Bar]) -> dict[str, list[Bar]]:
    """Bars by resource: disk first, then links by name, then the rest; inside, by planned start."""
    out: dict[str, list[Bar]] = {}
    for b in bars:
        out.setdefault(b.resource, []).append(b)
    order = sorted(out, key=lambda r: (0 if r == "disk" else 1 if r.startswith("link:") else 2, r))
    return {r: out[r] for r in order}


def _axis(span: float, width: int) -> tuple[str, str]:
    """The tick row and the label row of a time axis `span` seconds long, `width` cells wide."""
    ticks = [" "] * (width + 1)
    labels = ""
    pos = 0
    for k in range(0, int(span) + 1, max(1, round(span / 5))):
        col = int(k / span * width) if span else 0
        if col <= width:
            ticks[col] = "┬"
        text = f"{k}s"
        if col >= pos:
            labels += " " * (col - pos) + text
            pos = col + len(text)
    return "".join(ticks), labels


def draw(bars: Sequence[Bar], width: int = 60, name_width: int | None = None) -> list[str]:
    """Lines of text: per resource a title, then per guest its planned and/or actual bar."""
    if not bars:
        return ["(nothing to draw)"]
    span = max(b.finish for b in bars) or 1.0
    nw = name_width or min(24, max(len(b.guest) for b in bars))
    kinds = {b.kind for b in bars}
    both = len(kinds) > 1
    lines: list[str] = []
    pad = 2 + nw + (6 if both else 0) + 1
    ticks, labels = _axis(span, width)
    lines.append(" " * pad + ticks)
    lines.append(" " * pad + labels)
    for res, items in group(bars).items():
        busy = busy_time([(b.start, b.finish) for b in items if b.kind == ("actual" if both else b.kind)])
        lines.append(f"{resource_title(res)}: busy {busy:.1f}s of {span:.1f}s")
        guests: list[str] = []
        for b in sorted(items, key=lambda b: (b.start if b.kind == "planned" else b.start + 1e-6, b.guest)):
            if b.guest not in guests:
                guests.append(b.guest)
        for g in guests:
            for b in sorted((b for b in items if b.guest == g), key=lambda b: b.kind != "planned"):
                a = int(b.start / span * width)
                z = max(a + 1, int(round(b.finish / span * width)))
                mark = PLANNED if b.kind == "planned" else ACTUAL
                cells = " " * a + mark * (z - a)
                name = (g if b.kind == "planned" or not both or not _has_planned(items, g) else "")[:nw]
                tag = (" plan " if b.kind == "planned" else " run  ") if both else ""
                lines.append(f"  {name:<{nw}}{tag}│{cells:<{width}}│ {b.start:5.1f}–{b.finish:.1f}s {b.label}".rstrip())
    return lines


def _has_planned(items: Sequence[Bar], guest: str) -> bool:
    return any(b.guest == guest and b.kind == "planned" for b in items)


def plan_bars(plan) -> list[Bar]:  # plan: xdcore.plan.Plan
    return [Bar(g.guest, g.resource, g.start_s, g.finish_s, "planned", g.planned)
            for g in plan.guests if g.planned]


def report_bars(report) -> list[Bar]:  # report: xdcore.report.RunReport
    """Planned slots and actual stage times of a run report."""
    out: list[Bar] = []
    for g in report.guests:
        if g.planned:
            p = g.planned
            out.append(Bar(g.guest, str(p.get("resource", "")), float(p.get("start", 0.0)), float(p.get("finish", 0.0)),
                           "planned", str(p.get("stage", ""))))
        spans = [s for s in g.stages if s.started >= 0 and s.stage in ("migrate", "save", "shutdown", "destroy", "restore")]
        done = [s for s in spans if s.outcome == "done"]
        last = done[-1] if done else (spans[-1] if spans else None)
        if last is None:
            continue
        res = {"save": "disk", "restore": "disk"}.get(last.stage, "")
        if last.stage == "migrate":
            res = str(g.planned.get("resource", "")) if g.planned and str(g.planned.get("resource", "")).startswith("link:") else "link:?"
        first = min(s.started for s in spans)
        out.append(Bar(g.guest, res, first, last.started + last.elapsed, "actual", g.outcome))
    return out


__all__ = ["ACTUAL", "PLANNED", "Bar", "draw", "group", "plan_bars", "report_bars", "resource_title"]
