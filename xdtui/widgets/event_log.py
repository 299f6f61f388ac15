"""The log pane: one line per fact worth reading (see `xdtui.eventtext`).

A guest left out before it started is said once (its GuestSkipped, with the
reason), not again by the GuestFinished that closes it; a killed command is
said by its stage's timeout / cancelled line, not by a second "killed" line.
The xenstored probe each run makes (`xenstore-read /tool/xenstored/domid`)
is left out; when it fails (a host without xenstored) one dim note says so,
once per console session (`said_once` is shared by the console's screens).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from xdcore.events import CommandFinished, Event, GuestFinished, GuestSkipped

from ..eventtext import describe, xenstored_probe
from ..formatting import clock

_STYLE = {"error": "red", "warning": "yellow", "success": "green", "info": ""}


class EventLog(RichLog):
    """Timestamped event lines, colour by level; keeps the last 2,000."""

    DEFAULT_CSS = """
    EventLog { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    def __init__(self, said_once: set[str] | None = None, **kw) -> None:
        super().__init__(max_lines=2000, wrap=True, markup=False, auto_scroll=True, **kw)
        self.lines_written = 0
        self._said_skipped: set[tuple[str, str]] = set()
        self.said_once = said_once if said_once is not None else set()

    def add(self, events: Iterable[Event]) -> None:
        for e in events:
            if xenstored_probe(e):
                if isinstance(e, CommandFinished) and e.returncode != 0 and "xenstored-probe" not in self.said_once:
                    self.said_once.add("xenstored-probe")
                    err = e.stderr.strip().splitlines()[-1] if e.stderr.strip() else \
                        ("killed" if e.returncode is None else f"exit {e.returncode}")
                    self.write(Text(f"{clock(e.at)} no xenstored answered ({err}): no xenstore stub domain "
                                    "to leave out (not repeated this session)", style="dim"))
                    self.lines_written += 1
                continue
            if isinstance(e, GuestSkipped):
                self._said_skipped.add((e.run, e.guest))
            elif isinstance(e, GuestFinished) and e.outcome == "skipped" and (e.run, e.guest) in self._said_skipped:
                continue  # one line per fact: the skip was said, with its reason
            line = describe(e)
            if line is None:
                continue
            level, text = line
            t = Text(clock(e.at) + " ", style="dim")
            t.append(text, style=_STYLE.get(level, ""))
            self.write(t)
            self.lines_written += 1

    def note(self, text: str, level: str = "info", at: float | None = None) -> None:
        """A line from the console itself (not an event of a run)."""
        t = Text((clock(at) + " ") if at else "", style="dim")
        t.append(text, style=_STYLE.get(level, "") or "italic")
        self.write(t)
        self.lines_written += 1
