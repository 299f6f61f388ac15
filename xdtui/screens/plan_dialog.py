"""The plan confirmation: what each guest will go through under the current choices.

Shown before every run the console starts (`xdcore.plan.stop_plan` /
`start_plan`, the same plan `xendomains plan` prints).  A `ModalScreen[bool]`:
True runs it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from xdcore.plan import Plan
from xdcore.timeline import plan_bars

from ..formatting import duration, size
from ..widgets.stage_board import stage_title
from ..widgets.timeline import TimelineView


def common_reasons(plan: Plan) -> tuple[str, ...]:
    """Reasons every planned guest shares (said once above the table instead of on every row)."""
    staged = [g for g in plan.guests if g.stages != ("zombie",)]
    if len(staged) < 2:
        return ()
    return tuple(r for r in staged[0].reasons if all(r in g.reasons for g in staged[1:]))


def plan_summary(plan: Plan) -> Text:
    t = Text()
    t.append(f"{len(plan.guests)} guest{'s' if len(plan.guests) != 1 else ''}", style="bold")
    t.append(f", {plan.parallel} at a time" if plan.parallel else ", auto")
    t.append(f", about {duration(plan.estimate_s)}")
    if plan.skipped:
        t.append(f"; {len(plan.skipped)} left out", style="yellow")
    if plan.save_dir_free is not None and plan.save_needed:
        t.append(f"\nsave directory: {size(plan.save_needed)} needed, {size(plan.save_dir_free)} free")
    if plan.no_room:
        t.append("\nno room to save (shut down instead): " + ", ".join(plan.no_room), style="yellow")
    if plan.host_stages and plan.verb == "stop":
        t.append("\nhost stages: " + " → ".join(stage_title(s) for s in plan.host_stages), style="dim")
    for r in common_reasons(plan):
        t.append(f"\n{r}", style="dim")
    for n in plan.notes:
        t.append(f"\nnote: {n}", style="yellow")
    return t


class PlanDialog(ModalScreen[bool]):
    """The plan, then Run or Cancel."""

    DEFAULT_CSS = """
    PlanDialog { align: center middle; }
    PlanDialog > Vertical { width: 92%; max-width: 110; height: auto; max-height: 96%;
        border: heavy $warning; background: $surface; padding: 0 1; }
    PlanDialog #plan-title { text-style: bold; padding: 0 1; }
    PlanDialog #plan-summary { padding: 0 1; height: auto; }
    PlanDialog DataTable { height: auto; max-height: 12; margin: 1 0 0 0; }
    PlanDialog #plan-timeline { max-height: 14; overflow-y: auto; }
    PlanDialog #plan-buttons { height: auto; align-horizontal: right; }
    PlanDialog Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Run", show=False),
        Binding("n,escape", "answer(False)", "Cancel", show=False),
    ]

    def __init__(self, title: str, plan: Plan, run_label: str = "Run") -> None:
        super().__init__()
        self.title_text, self.plan, self.run_label = title, plan, run_label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text + " — the plan", id="plan-title")
            yield Static(plan_summary(self.plan), id="plan-summary")
            yield DataTable(cursor_type="row", id="plan-table")
            if self.plan.scheduled:
                yield TimelineView(plan_bars(self.plan), id="plan-timeline")
            with Horizontal(id="plan-buttons"):
                yield Button(f"{self.run_label} (y)", variant="warning", id="run", disabled=not self.plan.guests and self.plan.verb != "start")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Guest", "Goes through", "Est.", "Why")
        common = set(common_reasons(self.plan))
        for g in self.plan.guests:
            stages = " → ".join(stage_title(s) for s in g.stages) if g.stages else "nothing"
            why = g.note or "; ".join(r for r in g.reasons if r not in common)
            table.add_row(g.guest, stages, duration(g.estimate_s), Text(why, style="yellow" if g.note else "dim"), key=g.guest)
        for name, why in self.plan.skipped:
            if name in {g.guest for g in self.plan.guests}:
                continue
            table.add_row(Text(name, style="dim"), Text("left out", style="yellow"), "", Text(why, style="dim"))
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "run")

    def action_answer(self, yes: bool) -> None:
        if yes and not self.plan.guests and self.plan.verb != "start":
            return
        self.dismiss(yes)
