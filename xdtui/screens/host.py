"""The host view: live domains, the auto and saved lists, host figures, the stage board and the log.

It polls with one-shot workers re-armed by timers (domains come from the
core's watcher: XenStore when reachable, polling otherwise), draws a run's
events through the board reducer, and turns the operator's keys into
requests to the app (which owns the runs).  Every action here is listed in
`xdtui.commands.HOST_COMMANDS`, which builds both the key bindings and the
command palette.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header

from xdcore import savedir
from xdcore.events import EventBus, GuestFinished, RunFinished
from xdcore.xenstore.watcher import watch_domains

from .. import board as B
from ..commands import HOST_COMMANDS, Command, bindings_for
from ..follow import headless_run_in_progress
from ..messages import DomainsRefreshed, EventsArrived, HostFiguresMeasured, HostListsRead, PrefsChanged, RunFinishedLocally
from ..runs import ONE_STAGE, TOGGLABLE, RunRequest, compute_plan
from ..widgets.domain_table import DomainTable
from ..widgets.event_log import EventLog
from ..widgets.host_figures import HostFigures
from ..widgets.host_lists import AutoList, SavedList
from ..widgets.stage_board import BoardTable, StageBoard, stage_title, toggle_line
from .dialogs import (ask_migration_target, ask_move_target, ask_parallelism, confirm_abort, confirm_skip_guest,
                      confirm_skip_stage)
from .plan_dialog import PlanDialog

if TYPE_CHECKING:
    from ..app import XdApp

#: actions that only make sense while a run of this console is going on
RUN_ONLY = {"skip_stage", "abort", "abort_now"}


class HostScreen(Screen):
    """This host, and the runs the console starts on it."""

    BINDINGS = bindings_for(HOST_COMMANDS)
    LISTS_INTERVAL = 5.0
    FIGURES_INTERVAL = 2.0
    XEN_INFO_EVERY = 5  # xl info once per this many figure polls

    app: "XdApp"

    def __init__(self) -> None:
        super().__init__(id="host")
        self.board_state: B.BoardState = B.EMPTY_BOARD
        self.autos: tuple = ()
        self.images: tuple = ()
        self.running_names: frozenset[str] = frozenset()
        self._poll_timers: dict[str, Timer] = {}
        self._figure_polls = 0
        self._xen = None
        self._xen_error = ""
        self.domains_seen = 0  # DomainsRefreshed handled (tests wait on it)

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield HostFigures(id="figures")
        with Vertical(id="domains-pane", classes="pane"):
            yield DomainTable(id="domains")
        yield StageBoard(id="board", classes="pane")
        yield EventLog(id="log", classes="pane")
        yield AutoList(id="auto", classes="pane")
        yield SavedList(id="saved", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        host = self.app.host
        self.query_one("#domains-pane").border_title = "Domains"
        self.query_one("#board").border_title = "Stage board"
        self.query_one("#log").border_title = "Log"
        cfg = host.cfg
        self.query_one(AutoList).border_title = "Auto"
        self.query_one(SavedList).border_title = "Saved"
        self.show_board()
        self.query_one(EventLog).note(
            f"{host.toolstack.name} toolstack · config {cfg.path or 'defaults'} · progress file {cfg.progress}")
        self.watch_domains()
        self.poll_lists()
        self.poll_figures()
        self.set_interval(1.0, self._tick, name="board-tick")
        self.query_one(DomainTable).focus()

    # -- pollers: one-shot workers, re-armed by a timer -----------------------------------------------

    def _rearm(self, name: str, delay: float, fn) -> None:
        old = self._poll_timers.pop(name, None)
        if old is not None:
            old.stop()
        if self.is_attached and not self.app.closing:
            self._poll_timers[name] = self.set_timer(delay, fn, name=name)

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def watch_domains(self) -> None:
        async for change in watch_domains(self.app.host.toolstack, interval=self.app.host.watch_interval):
            self.post_message(DomainsRefreshed(change))

    @work(exclusive=True, group="lists", exit_on_error=False)
    async def poll_lists(self) -> None:
        try:
            svc = self.app.host.service(EventBus())
            autos = await svc.auto_configs()
            images = await asyncio.to_thread(savedir.scan, self.app.host.cfg.save_dir)
            self.post_message(HostListsRead(autos, images))
        finally:
            self._rearm("lists", self.LISTS_INTERVAL, self.poll_lists)

    @work(exclusive=True, group="figures", exit_on_error=False)
    async def poll_figures(self) -> None:
        try:
            dom0 = self.app.providers.dom0()
            if self._figure_polls % self.XEN_INFO_EVERY == 0:
                try:
                    self._xen, self._xen_error = await self.app.host.toolstack.host_info(), ""
                except Exception as exc:  # a figure we cannot read is shown as such, never fatal
                    self._xen, self._xen_error = None, f"xl info: {exc}"
            self._figure_polls += 1
            self.post_message(HostFiguresMeasured(dom0, self._xen, self._xen_error))
        finally:
            self._rearm("figures", self.FIGURES_INTERVAL, self.poll_figures)

    def on_worker_state_changed(self, event) -> None:
        self.app.worker_state_changed(event)  # the one place worker failures are handled

    def restart_worker(self, group: str) -> None:
        """Called by the app's worker-failure handler a little after a poller failed."""
        {"watch": self.watch_domains, "lists": self.poll_lists, "figures": self.poll_figures}[group]()

    # -- data in ---------------------------------------------------------------------------------------

    def on_domains_refreshed(self, msg: DomainsRefreshed) -> None:
        table = self.query_one(DomainTable)
        table.set_domains(msg.change.domains)
        names = frozenset(d.name for d in msg.change.domains if not d.is_dom0)
        if names != self.running_names:
            self.running_names = names
            self.query_one(AutoList).show(self.autos, names)
        self.query_one("#domains-pane").border_title = f"Domains ({len(names)}, {msg.change.source})"
        self.domains_seen += 1

    def on_host_lists_read(self, msg: HostListsRead) -> None:
        self.autos, self.images = msg.autos, msg.images
        self.query_one(DomainTable).set_lists({a.name for a in msg.autos if a.name},
                                              {i.guest for i in msg.images if i.guest and not i.quarantined})
        self.query_one(AutoList).show(msg.autos, self.running_names)
        self.query_one(SavedList).show(msg.images, self.app.providers.clock)
        self.query_one(AutoList).border_title = f"Auto ({len(msg.autos)})"
        self.query_one(SavedList).border_title = f"Saved ({len(msg.images)})"

    def on_host_figures_measured(self, msg: HostFiguresMeasured) -> None:
        self.query_one(HostFigures).show(msg.dom0, msg.xen, msg.xen_error)

    def on_events_arrived(self, msg: EventsArrived) -> None:
        before = self.board_state
        self.board_state = B.reduce_all(self.board_state, msg.events)
        self.query_one(EventLog).add(msg.events)
        self.set_class(self.board_state.active, "-running")
        if self.board_state is not before:
            self.show_board()
        if any(isinstance(e, (GuestFinished, RunFinished)) for e in msg.events):
            self._rearm("lists", 0.3, self.poll_lists)  # images appear, guests go: look soon

    def on_run_finished_locally(self, msg: RunFinishedLocally) -> None:
        self.set_class(self.board_state.active, "-running")
        self.show_board()

    def on_prefs_changed(self, msg: PrefsChanged) -> None:
        self.show_board()

    def _tick(self) -> None:
        if self.board_state.active:
            self.show_board()

    def show_board(self) -> None:
        self.query_one(StageBoard).show(self.board_state, self.app.providers.clock(), self.prefs_text())

    def prefs_text(self) -> Text:
        """Stage toggles, migration target and parallelism, as the next (or current) run uses them."""
        app = self.app
        states = {name: app.prefs.stage_state(app.host.cfg, name) for name in TOGGLABLE}
        target = " ".join(app.prefs.migrate_target) if app.prefs.migrate_target else None
        return toggle_line(states, target, app.prefs.parallel or app.host.cfg.parallel)

    def selected_guests(self) -> list[str]:
        """Marked guests; else the guest under the cursor of the focused table."""
        table = self.query_one(DomainTable)
        if table.marked:
            return sorted(table.marked, key=lambda n: table.domain(n).domid if table.domain(n) else 0)
        guest = self.cursor_guest()
        return [guest] if guest else []

    def cursor_guest(self) -> str | None:
        focused = self.focused
        if isinstance(focused, BoardTable):
            return focused.guest_at_cursor()
        return self.query_one(DomainTable).guest_at_cursor()

    # -- palette ---------------------------------------------------------------------------------------------

    def palette_commands(self) -> list[Command]:
        active = self.app.run_active
        return [c for c in HOST_COMMANDS if active or c.action not in RUN_ONLY]

    # -- actions: runs ---------------------------------------------------------------------------------------------

    def _refuse_if_busy(self, side_ok: bool = False) -> bool:
        """True (and a notice) when a run stands in the way."""
        if self.app.run_active and not side_ok:
            self.notify("A run is in progress: skip, abort or wait for it.", severity="warning")
            return True
        headless = headless_run_in_progress(self.app.host.cfg.progress)
        if headless is not None and not self.app.run_active:
            self.notify(f"A headless {headless.verb} (pid {headless.pid}) is in progress: press a to follow it.",
                        severity="warning")
            return True
        return False

    def action_evacuate(self) -> None:
        if not self._refuse_if_busy():
            self.confirm_and_run(RunRequest("stop"))

    def action_evacuate_selected(self) -> None:
        guests = self.selected_guests()
        if not guests:
            self.notify("Mark guests with space first.", severity="warning")
        elif not self._refuse_if_busy():
            self.confirm_and_run(RunRequest("stop", only=tuple(guests)))

    def action_start(self) -> None:
        if not self._refuse_if_busy():
            self.confirm_and_run(RunRequest("start"))

    def action_one_stage(self, stage: str) -> None:
        assert stage in ONE_STAGE
        guests = self.selected_guests()
        if not guests:
            self.notify("Mark guests with space first (or put the cursor on one).", severity="warning")
            return
        if self._refuse_if_busy(side_ok=True):
            return
        app = self.app
        if app.run_active and app.board_is_start():
            self.notify("A start is in progress: wait for it before stopping guests.", severity="warning")
            return
        cfg = app.prefs.config_for(app.host.cfg)
        if stage == "migrate" and not cfg.migrate:
            self.notify("No migration target: set one with o first.", severity="warning")
            return
        if stage == "save" and cfg.save_dir is None:
            self.notify("XENDOMAINS_SAVE is empty: there is no save directory.", severity="warning")
            return
        self.confirm_and_run(RunRequest("stop", only=tuple(guests), stage=stage, side=app.run_active))

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def confirm_and_run(self, req: RunRequest) -> None:
        plan = await compute_plan(self.app.host, self.app.prefs, req)
        label = {"migrate": "Migrate", "save": "Save", "shutdown": "Shut down", None: "Evacuate"}[req.stage]
        if req.verb == "start":
            label = "Start"
        ok = await self.app.push_screen_wait(PlanDialog(req.title, plan, run_label=label))
        if ok:
            self.app.start_run(req)

    # -- actions: interventions ----------------------------------------------------------------------------------------

    def action_mark(self) -> None:
        table = self.query_one(DomainTable)
        guest = table.guest_at_cursor()
        if guest:
            table.toggle_mark(guest)
            table.action_cursor_down()

    def action_clear_marks(self) -> None:
        self.query_one(DomainTable).clear_marks()

    def _run_guests(self) -> list[str]:
        """Guests for skip actions: the board's cursor when it has focus, else marked / domain cursor."""
        if isinstance(self.focused, BoardTable):
            g = self.focused.guest_at_cursor()
            return [g] if g else []
        return self.selected_guests()

    def action_skip_stage(self) -> None:
        if not self.app.run_active:
            self.notify("No run in progress: turn stages off with 1–5 instead.", severity="warning")
            return
        guests = [g for g in self._run_guests() if self.app.running_stage(g)]
        if not guests:
            self.notify("No stage is running for that guest (put the board's cursor on a running guest).", severity="warning")
            return
        what = ", ".join(f"{g}: {stage_title(self.app.running_stage(g) or '')}" for g in guests)

        def done(ok: bool | None) -> None:
            if ok:
                for g in guests:
                    self.app.skip_stage(g)

        self.app.push_screen(confirm_skip_stage(what), done)

    def action_skip_guest(self) -> None:
        guests = self._run_guests()
        if not guests:
            self.notify("No guest under the cursor.", severity="warning")
            return
        if not self.app.run_active:
            prefs = self.app.prefs
            for g in guests:
                prefs.skipped_guests ^= {g}
            now = sorted(prefs.skipped_guests)
            self.notify("Left out of the next run: " + (", ".join(now) if now else "nobody"))
            return

        def done(ok: bool | None) -> None:
            if ok:
                for g in guests:
                    self.app.skip_guest(g)

        self.app.push_screen(confirm_skip_guest(guests), done)

    def action_abort(self) -> None:
        self._abort(now=False)

    def action_abort_now(self) -> None:
        self._abort(now=True)

    def _abort(self, now: bool) -> None:
        if not self.app.run_active:
            self.notify("No run in progress.", severity="warning")
            return
        def done(ok: bool | None) -> None:
            if ok:
                self.app.abort_runs(now=now)

        self.app.push_screen(confirm_abort(now), done)

    def action_toggle_stage(self, name: str) -> None:
        app = self.app
        state = app.prefs.stage_state(app.host.cfg, name)
        if state == "n/a":
            why = "set a migration target with o" if name == "migrate" else "the config gives it nothing to do"
            self.notify(f"{stage_title(name)} cannot be turned on: {why}.", severity="warning")
            return
        app.set_stage(name, enabled=(state == "off"))

    def action_move_target(self) -> None:
        guests = self._run_guests()
        session = self.app.session
        if not guests or session is None or not self.app.run_active:
            self.notify("Moving a guest to another target works during an evacuation with several targets.",
                        severity="warning")
            return

        def apply(target: str) -> None:
            problem = session.control.move_guest(guests[0], target)
            if problem:
                self.notify(f"Could not move {guests[0]}: {problem}", severity="error")

        ask_move_target(self, guests[0], self.board_state, apply)

    def action_migrate_target(self) -> None:
        cur = " ".join(self.app.prefs.migrate_target or self.app.host.cfg.migrate)
        ask_migration_target(self, cur, "this run", self.app.set_migrate_target)

    def action_parallel(self) -> None:
        ask_parallelism(self, self.app.prefs.parallel or self.app.host.cfg.parallel,
                        "How many guests are handled at once.", self.app.set_parallel)

    def action_parallel_step(self, delta: int) -> None:
        cur = self.app.prefs.parallel or self.app.host.cfg.parallel
        self.app.set_parallel(max(1, cur + delta))

    def action_attach(self) -> None:
        self.app.attach()

    def action_refresh(self) -> None:
        self.poll_lists()
        self.poll_figures()
        self.watch_domains()

    async def action_quit(self) -> None:
        await self.app.action_quit()
