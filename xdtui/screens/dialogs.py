"""Dialogs that ask before acting: yes/no confirmation and a one-line prompt.

Typed: `ConfirmDialog` is a `ModalScreen[bool]`, `PromptDialog` a
`ModalScreen[str | None]` (None when cancelled).  Keys: y / enter to accept,
n / escape to refuse.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    """Ask before a destructive action."""

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical { width: 64; max-width: 95%; height: auto; max-height: 90%;
        border: heavy $warning; background: $surface; padding: 1 2; }
    ConfirmDialog #confirm-title { text-style: bold; margin-bottom: 1; }
    ConfirmDialog #confirm-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmDialog Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, body: str, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.title_text, self.body, self.yes, self.no = title, body, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="confirm-title")
            yield Static(self.body, id="confirm-body")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button(f"{self.no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptDialog(ModalScreen["str | None"]):
    """Ask for one value (migration target, parallelism)."""

    DEFAULT_CSS = """
    PromptDialog { align: center middle; }
    PromptDialog > Vertical { width: 64; max-width: 95%; height: auto; border: heavy $accent;
        background: $surface; padding: 1 2; }
    PromptDialog #prompt-title { text-style: bold; }
    PromptDialog #prompt-help { color: $text-muted; margin-bottom: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, title: str, help: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.help, self.value, self.placeholder = title, help, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="prompt-title")
            yield Static(self.help, id="prompt-help")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


# -- the questions asked before an intervention: the same for a run of this console and a headless one --------------


def confirm_skip_stage(what: str) -> ConfirmDialog:
    """`what`: one "guest: Stage" per guest."""
    return ConfirmDialog("Skip stage", f"Stop the running stage and fall through to the next one?\n\n{what}", yes="Skip stage")


def confirm_skip_guest(guests: list[str]) -> ConfirmDialog:
    return ConfirmDialog("Skip guest", "Leave these guests out of the run (a running stage is stopped)?\n\n"
                         + ", ".join(guests), yes="Skip")


def confirm_abort(now: bool) -> ConfirmDialog:
    body = ("Kill the commands running now and start nothing new?" if now else
            "Start nothing new? Stages running now finish.") + "\nGuests already handled stay handled; the lock is released."
    return ConfirmDialog("Abort run now" if now else "Abort run", body, yes="Abort")


# -- the prompts of the knobs: the same for a run of this console and a headless one ---------------------------


def ask_parallelism(screen: Screen, current: int, help_text: str, apply: Callable[[int], None]) -> None:
    """Prompt for a parallelism (a whole number ≥ 1) and `apply` it."""

    def done(value: str | None) -> None:
        if value is None:
            return
        if not value.isdigit() or int(value) < 1:
            screen.notify("Parallelism is a whole number, at least 1.", severity="error")
            return
        apply(int(value))

    screen.app.push_screen(PromptDialog("Parallelism", help_text, str(current)), done)


def ask_move_target(screen: Screen, guest: str, targets: Iterable, apply: Callable[[str], None],
                    current: str = "") -> None:
    """Prompt for the migration target `guest` should go to, among the run's (or the plan's) targets:
    `targets` hold .name, .room_left_mib and .error (board.TargetView, placement.TargetRoom)."""
    targets = list(targets)
    names = [t.name for t in targets if not t.error]
    if not names:
        screen.notify("This run has no migration targets (XENDOMAINS_MIGRATE_TARGETS).", severity="warning")
        return
    rooms = ", ".join(f"{t.name} {t.room_left_mib} MiB left" for t in targets if not t.error)
    out = "; ".join(f"{t.name} ({t.error})" for t in targets if t.error)
    now = f"Now: {current}. " if current else ""

    def done(value: str | None) -> None:
        if value:
            apply(value.strip())

    default = next((n for n in names if n != current), names[0])
    screen.app.push_screen(PromptDialog(f"Move {guest} to target", f"{now}One of: {rooms}."
                                        + (f" Left out: {out}." if out else ""), "", default), done)


def ask_migration_target(screen: Screen, current: str, for_what: str,
                         apply: Callable[[tuple[str, ...] | None], None]) -> None:
    """Prompt for a migration target (host and xl migrate options, shell words); empty = back to the config."""

    def done(value: str | None) -> None:
        if value is None:
            return
        try:
            words = tuple(shlex.split(value))
        except ValueError as exc:
            screen.notify(f"Cannot read that: {exc}", severity="error")
            return
        apply(words or None)

    screen.app.push_screen(PromptDialog("Migration target", f"Host (and migrate options) for {for_what}, e.g. "
                                        "'host2' or '-s \"ssh -p 2222\" host2'. Empty: back to XENDOMAINS_MIGRATE.", current, "host2"), done)
