"""The plan confirmation: what each guest will go through under the current choices.

Shown before every run the console launches (`xdcore.plan.stop_plan` /
`start_plan`, the same plan `xendomains plan` prints).  Each guest's stages
read as the fallback chain they are ("Save, else Shutdown"); guests left out
are named with why; a guest whose estimate exceeds its watchdog is warned
about.  Long lists are capped ("… and 437 more") so the dialog stays quick
and its buttons stay on screen; the table scrolls.

It also asks what the run does if this terminal goes away (`t` toggles):
continue (the default) or stop at a clean point.  A `ModalScreen[str | None]`:
"continue" / "stop" runs it, None cancels.

With several migration targets it lists each target's room, and `m` moves the
guest under the cursor to another target before the run: refused at once when
it would over-commit the target or names one left out (`xdcore.plan.move_problem`),
else the plan is made again with the move (`replan`, the stop's own check:
pins, apart) and shown.  The choices are in `placements` for the run's
`--place GUEST=TARGET`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from xdcore.pipeline.stages import STAGES
from xdcore.errors import XendomainsError
from xdcore.plan import GuestPlan, Plan, move_problem
from xdcore.run_options import RunOptionsError
from xdcore.timeline import plan_bars

from ..board import row_key
from ..formatting import duration, size
from ..widgets.stage_board import stage_title
from ..widgets.timeline import TimelineView
from .dialogs import ask_move_target

#: rows shown in the table (planned guests, then those left out); the rest are counted
ROW_CAP = 200
#: names listed inline in the summary lines
NAME_CAP = 8


def chain(stages: Sequence[str], target: str = "", placed_by: str = "") -> str:
    """'SysRq, then Migrate, else Save, else Shutdown': a stage that ends the guest falls through with 'else'.
    With several targets the migration names its target ('Migrate to xen03', '… (moved)' when the operator chose it)."""
    out = ""
    for i, s in enumerate(stages):
        if i:
            prev = STAGES.get(stages[i - 1])
            out += ", else " if prev is None or prev.terminal else ", then "
        out += stage_title(s)
        if s == "migrate" and target:
            out += f" to {target}" + (" (moved)" if placed_by == "operator" else "")
    return out or "nothing"


def names(items: Sequence[str], cap: int = NAME_CAP) -> str:
    """'a, b, c … and 437 more'."""
    shown = ", ".join(items[:cap])
    return shown + (f" … and {len(items) - cap} more" if len(items) > cap else "")


def common_reasons(plan: Plan) -> tuple[str, ...]:
    """Reasons every planned guest shares (said once above the table instead of on every row)."""
    staged = [g for g in plan.guests if not g.untouched]
    if len(staged) < 2:
        return ()
    return tuple(r for r in staged[0].reasons if all(r in g.reasons for g in staged[1:]))


def over_watchdog(plan: Plan, watchdog: float) -> list[GuestPlan]:
    """Guests whose estimate exceeds the watchdog of one command (XENDOMAINS_STOP_MAXWAIT)."""
    if watchdog <= 0 or plan.verb != "stop":
        return []
    return [g for g in plan.guests if g.estimate_s > watchdog and any(STAGES[s].watchdog for s in g.stages if s in STAGES)]


def plan_summary(plan: Plan, watchdog: float = 0.0) -> Text:
    t = Text()
    t.append(f"{len(plan.guests)} guest{'s' if len(plan.guests) != 1 else ''}", style="bold")
    t.append(f", {plan.parallel} at a time" if plan.parallel else ", auto")
    t.append(f", about {duration(plan.estimate_s)} ({plan.estimate_source})")
    if plan.skipped:
        t.append(f"; {len(plan.skipped)} left out", style="yellow")
    if plan.save_dir_free is not None and plan.save_needed:
        t.append(f"\nsave directory: {size(plan.save_needed)} needed, {size(plan.save_dir_free)} free")
    if plan.no_room:
        t.append("\nno room to save (shut down instead): " + names(plan.no_room), style="yellow")
    if plan.host_stages and plan.verb == "stop":
        t.append("\nhost stages: " + ", then ".join(stage_title(s) for s in plan.host_stages), style="dim")
    late = over_watchdog(plan, watchdog)
    if late:
        t.append(f"\nwatchdog {duration(watchdog)} (XENDOMAINS_STOP_MAXWAIT) is shorter than the estimate of "
                 + names([f"{g.guest} ({duration(g.estimate_s)})" for g in late], 4), style="bold yellow")
    for e in plan.errors:
        t.append(f"\nerror: {e}", style="bold red")
    for r in common_reasons(plan):
        t.append(f"\n{r}", style="dim")
    for n in plan.notes:
        t.append(f"\nnote: {n}", style="yellow")
    return t


def targets_text(plan: Plan) -> Text:
    """Several migration targets: each one's room left after the placement, its migrations at once, its guests."""
    t = Text("migration targets (m moves the guest under the cursor to another):", style="dim")
    for r in plan.targets:
        t.append(f"\n  {r.name}: ", style="bold")
        if r.error:
            t.append(f"left out ({r.error})", style="yellow")
        else:
            at_once = f", {r.at_once} at a time" if r.at_once else ""
            t.append(f"{size(r.room_left_mib * 2**20)} left of {size(r.free_mib * 2**20)} free{at_once}: "
                     f"{names(r.guests, 4) or 'no guest'}")
    return t


def hangup_text(on_hangup: str) -> Text:
    """One line that fits 80 columns (the key first, as in the footer): the buttons below stay on screen."""
    t = Text("t", style="bold")
    t.append(" If this terminal goes away: ")
    t.append("continue", style="bold reverse" if on_hangup == "continue" else "dim")
    t.append(" / ")
    t.append("stop at a clean point", style="bold reverse" if on_hangup == "stop" else "dim")
    return t


class PlanDialog(ModalScreen["str | None"]):
    """The plan, the hangup choice, then Run or Cancel."""

    DEFAULT_CSS = """
    PlanDialog { align: center middle; }
    PlanDialog > Vertical { width: 96%; max-width: 120; height: 100%;
        border: heavy $warning; background: $surface; padding: 0 1; }
    PlanDialog #plan-title { text-style: bold; padding: 0 1; height: 1; }
    PlanDialog #plan-summary { padding: 0 1; height: auto; max-height: 6; overflow-y: auto; }
    PlanDialog #plan-targets { padding: 0 1; height: auto; max-height: 5; overflow-y: auto; }
    PlanDialog DataTable { height: 1fr; min-height: 6; }
    PlanDialog #plan-timeline { height: auto; max-height: 7; overflow-y: auto; }
    PlanDialog #plan-hangup { padding: 0 1; height: 1; }
    PlanDialog #plan-buttons { height: 1; align-horizontal: right; }
    PlanDialog Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Run", show=False),
        Binding("n,escape", "answer(False)", "Cancel", show=False),
        Binding("t", "toggle_hangup", "If the terminal goes away", show=False),
        Binding("m", "move_target", "Move guest to another target", show=False),
    ]

    def __init__(self, title: str, plan: Plan, run_label: str = "Run", watchdog: float = 0.0,
                 replan: "Callable[[Mapping[str, str]], Awaitable[Plan]] | None" = None) -> None:
        super().__init__()
        self.title_text, self.plan, self.run_label, self.watchdog = title, plan, run_label, watchdog
        self.on_hangup = "continue"
        self.replan = replan  # the plan again under the operator's placements (None: no moves here)
        self.placements: dict[str, str] = {}  # guest -> target the operator chose (the run's --place)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text + " — the plan", id="plan-title")
            yield Static(plan_summary(self.plan, self.watchdog), id="plan-summary")
            if self.plan.targets:
                yield Static(targets_text(self.plan), id="plan-targets")
            yield DataTable(cursor_type="row", id="plan-table")
            if self.plan.scheduled:
                yield TimelineView(plan_bars(self.plan), id="plan-timeline")
            yield Static(hangup_text(self.on_hangup), id="plan-hangup")
            with Horizontal(id="plan-buttons"):
                yield Button(f"{self.run_label} (y)", variant="warning", id="run", disabled=not self.runnable, compact=True)
                yield Button("Cancel (n)", id="cancel", compact=True)

    @property
    def runnable(self) -> bool:
        return bool(self.plan.guests) or self.plan.verb == "start"

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Guest", "Goes through", "Est.", "Why")
        self._fill(table)
        self.query_one("#cancel", Button).focus()

    def _fill(self, table: DataTable) -> None:
        common = set(common_reasons(self.plan))
        late = {g.guest for g in over_watchdog(self.plan, self.watchdog)}
        rows = 0
        for g in self.plan.guests[:ROW_CAP]:
            why = g.note or "; ".join(r for r in g.reasons if r not in common)
            est = Text(duration(g.estimate_s) + (" ⚠" if g.guest in late else ""), style="bold yellow" if g.guest in late else "")
            key = row_key(g.guest, g.domid)  # every zombie is "(null)": each its own row, by domid
            table.add_row(key, chain(g.stages, g.target, g.placed_by), est,
                          Text(why, style="yellow" if g.note else "dim"), key=key)
            rows += 1
        planned = {g.guest for g in self.plan.guests}
        left_out = [(n, why) for n, why in self.plan.skipped if n not in planned]
        for name, why in left_out[: max(0, ROW_CAP - rows)]:
            table.add_row(Text(name, style="dim"), Text("left out", style="yellow"), "", Text(why, style="dim"))
            rows += 1
        more = len(self.plan.guests) + len(left_out) - rows
        if more > 0:
            table.add_row(Text(f"… and {more} more", style="dim italic"), "", "", "")

    def _show(self, plan: Plan) -> None:
        """Show a plan made again (after a move): summary, table (cursor kept on its guest), timeline."""
        table = self.query_one(DataTable)
        row = table.cursor_row
        self.plan = plan
        self.query_one("#plan-summary", Static).update(plan_summary(plan, self.watchdog))
        if self.query("#plan-targets"):
            self.query_one("#plan-targets", Static).update(targets_text(plan))
        table.clear()
        self._fill(table)
        table.move_cursor(row=min(row, max(0, table.row_count - 1)))
        if plan.scheduled and self.query("#plan-timeline"):
            self.query_one("#plan-timeline", TimelineView).set_bars(plan_bars(plan))

    def _cursor_guest(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((g.guest for g in self.plan.guests if row_key(g.guest, g.domid) == key), None)

    def action_move_target(self) -> None:
        if self.replan is None or not self.plan.targets:
            self.notify("Moving a guest to another target needs several migration targets "
                        "(XENDOMAINS_MIGRATE_TARGETS).", severity="warning")
            return
        guest = self._cursor_guest()
        if guest is None:
            self.notify("Put the cursor on a guest of the plan first.", severity="warning")
            return
        g = next(g for g in self.plan.guests if g.guest == guest)
        ask_move_target(self, guest, self.plan.targets, lambda target: self.move(guest, target), current=g.target)

    def move(self, guest: str, target: str) -> None:
        """Send `guest` to `target` before the run: refused at once when the plan says it cannot be."""
        current = next((g.target for g in self.plan.guests if g.guest == guest), "")
        if target == current:
            return
        problem = move_problem(self.plan, guest, target)
        if problem is not None:
            self.notify(f"Cannot move {guest} to {target}: {problem}", severity="error", markup=False)
            return
        self.replan_with({**self.placements, guest: target}, guest, target)

    @work(exclusive=True, group="replan", exit_on_error=False)
    async def replan_with(self, placements: dict[str, str], guest: str, target: str) -> None:
        assert self.replan is not None
        try:
            plan = await self.replan(placements)
        except (XendomainsError, RunOptionsError) as exc:
            self.notify(f"Cannot move {guest} to {target}: {exc}", severity="error", markup=False)
            return
        refused = [e for e in plan.errors if e.startswith("--place ")]
        if refused:  # what the stop itself would refuse (kept apart, pinned …): the move is not kept
            self.notify(f"Cannot move {guest} to {target}: " + "; ".join(refused), severity="error", markup=False)
            return
        self.placements = placements
        self._show(plan)
        self.notify(f"{guest} goes to {target}.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "run")

    def action_toggle_hangup(self) -> None:
        self.on_hangup = "stop" if self.on_hangup == "continue" else "continue"
        self.query_one("#plan-hangup", Static).update(hangup_text(self.on_hangup))

    def action_answer(self, yes: bool) -> None:
        if yes and not self.runnable:
            return
        self.dismiss(self.on_hangup if yes else None)
