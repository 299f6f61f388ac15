"""Every operator action in one table: its key, its palette title, its help.

The host screen's key bindings and the command palette (ctrl+p) are both
built from `HOST_COMMANDS`, so no action is reachable one way only.  Keys are
letters, digits, space, F-keys and ctrl+letter: they survive SSH and tmux.
j/k move in every table (k9s, lazygit, htop), so Skip stage is `n` (next stage).
Attach mode offers the interventions among them (`STEER_COMMANDS`, same keys
and titles) when it may steer the headless run over its control socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True, slots=True)
class Command:
    """An action of the host screen: `action` is the screen's action_<name> (with arguments)."""

    key: str
    action: str
    title: str
    help: str
    footer: str = ""  # short label shown in the footer ("" = hidden there)


HOST_COMMANDS: tuple[Command, ...] = (
    Command("e", "evacuate", "Evacuate host", "Run the stop pipeline for every guest, after showing the plan", "Evacuate"),
    Command("E", "evacuate_selected", "Evacuate selected", "Run the stop pipeline for the marked guests (or the one under the cursor)"),
    Command("s", "start", "Start host", "Run the start pipeline: restore saved guests, create the auto ones", "Start"),
    Command("m", "one_stage('migrate')", "Migrate selected", "Migrate the marked guests now (no save or shutdown)"),
    Command("v", "one_stage('save')", "Save selected", "Save the marked guests now (no migrate or shutdown)"),
    Command("d", "one_stage('shutdown')", "Shut down selected", "Shut down the marked guests now (no migrate or save)"),
    Command("space", "mark", "Mark guest", "Mark or unmark the guest under the cursor for the 'selected' actions", "Mark"),
    Command("c", "clear_marks", "Clear marks", "Unmark every guest"),
    Command("slash", "filter", "Filter guests", "Show only the guests whose name or state holds a text (empty: all)"),
    Command("n", "skip_stage", "Skip stage", "Skip the stage the guest under the cursor is running: it falls through to the next", "Skip stage"),
    Command("g", "skip_guest", "Skip guest", "Leave the guest under the cursor (or the marked ones) out of the run"),
    Command("x", "abort", "Abort run", "Start nothing new; running stages finish; the lock is released", "Abort"),
    Command("X", "abort_now", "Abort run now", "Kill the running commands too; handled guests stay handled"),
    Command("1", "toggle_stage('sysrq')", "Toggle stage: SysRq", "Turn the SysRq stage on or off for this and later runs"),
    Command("2", "toggle_stage('migrate')", "Toggle stage: Migrate", "Turn the Migrate stage on or off"),
    Command("3", "toggle_stage('save')", "Toggle stage: Save", "Turn the Save stage on or off"),
    Command("4", "toggle_stage('shutdown')", "Toggle stage: Shutdown", "Turn the Shutdown stage on or off"),
    Command("5", "toggle_stage('shutdown_all')", "Toggle stage: Shutdown all", "Turn the final shutdown --all on or off"),
    Command("o", "migrate_target", "Set migration target", "Override the migration target (host and options) for this run"),
    Command("t", "move_target", "Move guest to target",
            "Send the guest under the cursor to another of the run's migration targets (before its migration begins)"),
    Command("p", "parallel", "Set parallelism", "How many guests are handled at once"),
    Command("plus", "parallel_step(1)", "More parallel", "One more guest at once", "Parallel"),
    Command("minus", "parallel_step(-1)", "Less parallel", "One guest fewer at once"),
    Command("a", "attach", "Show the run full screen", "The run in progress (whoever started it) full screen, and whether this console may steer it"),
    Command("T", "timeline", "Timeline of the last run",
            "The last stop's (or start's) guests as bars over time, grouped by disk and link: planned vs actual"),
    Command("r", "refresh", "Refresh", "Read domains, lists and figures now"),
    Command("z", "zoom", "Zoom pane", "The focused pane (domains, board, log, lists) full screen; z again: back"),
    Command("question_mark", "help", "Keys", "Every key of this screen and what it does", "Help"),
    Command("q", "quit", "Quit", "Leave the console (a run goes on: it is headless)", "Quit"),
)


ATTACH_COMMANDS: tuple[Command, ...] = (
    Command("h", "host_view", "Back to host view", "Leave the attached run (it goes on) and show this host", "Host view"),
    Command("escape", "host_view", "Back to host view", "Leave the attached run (it goes on) and show this host"),
    Command("T", "timeline", "Timeline of the last run",
            "The finished run's guests as bars over time, grouped by disk and link: planned vs actual"),
    Command("z", "zoom", "Zoom pane", "The focused pane (board, log) full screen; z again: back"),
    Command("question_mark", "help", "Keys", "Every key of this screen and what it does", "Help"),
    Command("q", "quit", "Quit", "Leave the console (the run goes on: it is headless)", "Quit"),
)

#: the interventions attach offers over the headless run's control socket: the host view's own
#: keys and titles, so a run is steered the same way whoever started it
STEER_ACTIONS = frozenset({"skip_stage", "skip_guest", "abort", "abort_now", "toggle_stage", "migrate_target", "move_target",
                           "parallel", "parallel_step"})
_STEER_HELP = {
    "skip_guest": "Leave the guest under the board's cursor out of the run (a running stage is stopped)",
    "migrate_target": "Override the migration target (host and options) of the headless run",
}


def action_name(action: str) -> str:
    """'toggle_stage('save')' -> 'toggle_stage'."""
    return action.split("(", 1)[0]


STEER_COMMANDS: tuple[Command, ...] = tuple(
    Command(c.key, c.action, c.title,
            _STEER_HELP.get(action_name(c.action), c.help.replace(" for this and later runs", " for this run")), c.footer)
    for c in HOST_COMMANDS if action_name(c.action) in STEER_ACTIONS
)


def bindings_for(commands: tuple[Command, ...]) -> list[Binding]:
    return [Binding(c.key, c.action, c.footer or c.title, show=bool(c.footer), tooltip=c.help) for c in commands]


class HostCommands(Provider):
    """The palette's view of the current screen's command table (`palette_commands()`)."""

    def _commands(self) -> list[tuple[str, str, object]]:
        screen = self.screen
        table = getattr(screen, "palette_commands", None)
        if table is None:
            return []
        out, seen = [], set()
        for c in table():
            if c.title in seen:
                continue
            seen.add(c.title)
            out.append((c.title, c.help, partial(screen.run_action, c.action)))
        return out

    async def discover(self) -> Hits:
        for title, help, cb in self._commands():
            yield DiscoveryHit(title, cb, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help, cb in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), cb, text=title, help=help)
