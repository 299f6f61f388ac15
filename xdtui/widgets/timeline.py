"""The schedule as bars on a time axis, grouped by disk and links: the plan dialog and a finished run.

Draws `xdcore.timeline.Bar`s (the same picture `xendomains plan|report
--timeline` prints) with the planned bars dim and the actual ones bright.
Self-contained: give it bars (`set_bars`), place it anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from xdcore.timeline import ACTUAL, PLANNED, Bar, draw


def timeline_text(bars: Sequence[Bar], width: int = 50) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, line in enumerate(draw(bars, width=width) if bars else []):
        if i:
            t.append("\n")
        if not line.startswith(" "):
            t.append(line, style="bold")
            continue
        for ch in line:
            t.append(ch, style="cyan" if ch == PLANNED else "green" if ch == ACTUAL else "")
    return t


class TimelineView(Static):
    """One bar per guest over time, grouped by the resource it waits on; planned vs actual."""

    DEFAULT_CSS = """
    TimelineView { height: auto; padding: 0 1; }
    """

    def __init__(self, bars: Sequence[Bar] = (), *, width: int = 50, **kw) -> None:
        self._bars, self._width = tuple(bars), width
        super().__init__(timeline_text(self._bars, width), **kw)

    def set_bars(self, bars: Sequence[Bar]) -> None:
        self._bars = tuple(bars)
        self.update(timeline_text(self._bars, self._width))
