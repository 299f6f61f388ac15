"""The log pane: one line per fact worth reading (see `xdtui.eventtext`).

A guest left out before it started is said once (its GuestSkipped, with the
reason), not again by the GuestFinished that closes it; a killed command is
said by its stage's timeout / cancelled line, not by a second "killed" line.
The xenstored probe each run makes (`xenstore-read /tool/xenstored/domid`)
is left out; when it fails (a host without xenstored) one dim note says so,
once per console session (`said_once` is shared by the console's screens).

Lines wrap at the pane's width, and are drawn again when it changes (the
log goes full width during a run, a zoom widens it): nothing is ever cut.
A command line is shortened in the middle to fit one line instead
("$ xl save 11 /tmp/…partial.backup (watchdog 20s)"); `z` gives it the
whole screen, and the guest detail (Enter) has every failed command whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from xdcore.events import CommandFinished, CommandStarted, Event, GuestFinished, GuestSkipped

from ..eventtext import describe, xenstored_probe
from ..formatting import clock

_STYLE = {"error": "red", "warning": "yellow", "success": "green", "info": ""}


def middle(text: str, width: int) -> str:
    """`text` in `width` cells, the middle giving way: "$ xl save 11 /tmp/…partial.backup (watchdog 20s)"."""
    if width < 12 or cell_len(text) <= width:
        return text
    tail = (width - 1) // 2
    head = width - 1 - tail
    return text[:head] + "…" + text[len(text) - tail:]


@dataclass(frozen=True)
class _Said:
    """One line as said (kept to be drawn again at a new width)."""

    prefix: str  # the time, dim
    text: str
    style: str
    command: bool = False  # a command line: shortened in the middle to one line; else wrapped


class EventLog(RichLog):
    """Timestamped event lines, colour by level; keeps the last 2,000."""

    MAX_LINES = 2000
    DEFAULT_CSS = """
    EventLog { height: 1fr; scrollbar-size-vertical: 1; scrollbar-gutter: stable; overflow-x: hidden; }
    """

    def __init__(self, said_once: set[str] | None = None, **kw) -> None:
        # min_width: RichLog wraps at 78 columns at least, and a narrower pane then cuts what it wrapped
        super().__init__(max_lines=self.MAX_LINES, wrap=True, markup=False, auto_scroll=True, min_width=1, **kw)
        self.lines_written = 0
        self._said: deque[_Said] = deque(maxlen=self.MAX_LINES)  # to be drawn again at a new width
        self._drawn_at = 0  # the width the lines were drawn at (0: not yet known, nothing drawn)
        self._said_skipped: set[tuple[str, str]] = set()
        self.said_once = said_once if said_once is not None else set()

    def add(self, events: Iterable[Event]) -> None:
        for e in events:
            if xenstored_probe(e):
                if isinstance(e, CommandFinished) and e.returncode != 0 and "xenstored-probe" not in self.said_once:
                    self.said_once.add("xenstored-probe")
                    err = e.stderr.strip().splitlines()[-1] if e.stderr.strip() else \
                        ("killed" if e.returncode is None else f"exit {e.returncode}")
                    self._say(_Said(clock(e.at) + " ", f"no xenstored answered ({err}): no xenstore stub domain "
                                    "to leave out (not repeated this session)", "dim"))
                continue
            if isinstance(e, GuestSkipped):
                self._said_skipped.add((e.run, e.guest))
            elif isinstance(e, GuestFinished) and e.outcome == "skipped" and (e.run, e.guest) in self._said_skipped:
                continue  # one line per fact: the skip was said, with its reason
            line = describe(e)
            if line is None:
                continue
            level, text = line
            self._say(_Said(clock(e.at) + " ", text, _STYLE.get(level, ""), command=isinstance(e, CommandStarted)))

    def note(self, text: str, level: str = "info", at: float | None = None) -> None:
        """A line from the console itself (not an event of a run)."""
        self._say(_Said((clock(at) + " ") if at else "", text, _STYLE.get(level, "") or "italic"))

    def _say(self, said: _Said) -> None:
        self._said.append(said)
        self.lines_written += 1
        if self._drawn_at:
            self._draw(said, self._drawn_at)

    def _draw(self, said: _Said, width: int, scroll_end: bool | None = None) -> None:
        text = said.text
        if said.command:
            text = middle(text, width - cell_len(said.prefix))
        t = Text(said.prefix, style="dim")
        t.append(text, style=said.style)
        self.write(t, scroll_end=scroll_end)

    def clear(self):
        self._said.clear()
        return super().clear()

    def on_resize(self, event: Resize) -> None:
        """A width at last, or a new one: every line drawn (again) to it — wrapped, commands shortened."""
        if not event.size.width:
            return
        self._size_known = True  # RichLog's own handler (it runs next) has nothing deferred: we never wrote early
        width = self.scrollable_content_region.width or event.size.width
        if width == self._drawn_at:
            return
        at_end = self.is_vertical_scroll_end or not self._drawn_at
        RichLog.clear(self)
        self._drawn_at = width
        for said in self._said:
            self._draw(said, width, scroll_end=False)
        if at_end:
            self.scroll_end(animate=False, immediate=True)
