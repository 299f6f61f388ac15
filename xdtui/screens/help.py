"""`?`: every key of the screen underneath and what it does, from the same command table as its bindings."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ..commands import Command

_KEY_NAMES = {"question_mark": "?", "space": "space", "escape": "esc", "plus": "+", "minus": "-", "slash": "/"}


def key_label(key: str) -> str:
    return _KEY_NAMES.get(key, key)


def help_text(commands: Sequence[Command]) -> Text:
    t = Text()
    seen: set[str] = set()
    for c in commands:
        if c.key in seen:
            continue
        seen.add(c.key)
        t.append(f"{key_label(c.key):>6}  ", style="bold")
        t.append(c.title)
        t.append(f"  {c.help}\n", style="dim")
    t.append(f"{'j / k':>6}  ", style="bold")
    t.append("Move down / up in a table (arrows too)\n")
    t.append(f"{'enter':>6}  ", style="bold")
    t.append("Guest detail: config, image, every stage of this run and the last, errors\n")
    t.append(f"{'ctrl+s':>6}  ", style="bold")
    t.append("Sort the domains by the next column (a header click too; again: reverse)\n")
    t.append(f"{'tab':>6}  ", style="bold")
    t.append("Next pane (domains, board, lists)\n")
    t.append(f"{'ctrl+p':>6}  ", style="bold")
    t.append("Every command by name\n")
    return t


class HelpScreen(ModalScreen[None]):
    """The keys, then any key closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 96%; max-width: 110; height: auto; max-height: 96%;
        border: heavy $accent; background: $surface; padding: 0 1; }
    HelpScreen #help-title { text-style: bold; }
    HelpScreen VerticalScroll { height: auto; max-height: 1fr; }
    HelpScreen Static { width: 1fr; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", show=False)]

    def __init__(self, title: str, commands: Sequence[Command]) -> None:
        super().__init__()
        self.title_text, self.commands = title, tuple(commands)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"{self.title_text} — keys (esc closes)", id="help-title")
            with VerticalScroll():
                yield Static(help_text(self.commands))

    def action_close(self) -> None:
        self.dismiss(None)
