"""The host view: live domains, the auto and saved lists, host figures, the stage board and the log.

It polls with one-shot workers re-armed by timers (domains come from the
core's watcher: XenStore when reachable, polling otherwise).  The stage
board shows whatever run the progress file holds — one this console
launched or any other headless run — and the interventions steer it over
its control socket (see `RunView`).  Starting a run shows the plan, then
launches a headless `xendomains` (`xdtui.launch`): the console never owns
a run, so losing the terminal never loses the run.  Before a run, the stage
toggles, parallelism, migration target and "leave out" are the operator's
choices for the next one.  Every action is listed in
`xdtui.commands.HOST_COMMANDS`, which builds both the key bindings and the
command palette.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Footer, Header

from xdcore import savedir
from xdcore.events import EventBus, GuestFinished, RunFinished
from xdcore.xenstore.watcher import watch_domains

from .. import board as B
from ..commands import HOST_COMMANDS, Command, bindings_for
from ..follow import pid_alive
from ..launch import Launched, LaunchError, launch, unit_state
from ..messages import DomainsRefreshed, EventsArrived, HostFiguresMeasured, HostListsRead, RunLaunched
from ..runs import ONE_STAGE, RunRequest, compute_plan
from ..state import ConsoleState
from ..widgets.domain_table import DomainTable
from ..widgets.event_log import EventLog
from ..widgets.host_figures import HostFigures
from ..widgets.host_lists import AutoList, SavedList
from ..widgets.stage_board import BoardTable, StageBoard, toggle_line
from .dialogs import ask_migration_target, ask_parallelism
from .run_view import RunView

#: actions that only make sense while a run is going on
RUN_ONLY = {"skip_stage", "abort", "abort_now"}
#: actions that start a run (one run at a time holds the lock)
STARTS = {"evacuate", "evacuate_selected", "start", "one_stage", "mark", "clear_marks"}

class HostScreen(RunView):
    """This host, and the run in progress on it (whoever started it)."""

    BINDINGS = bindings_for(HOST_COMMANDS)
    LISTS_INTERVAL = 5.0
    FIGURES_INTERVAL = 2.0
    XEN_INFO_EVERY = 5  # xl info once per this many figure polls

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state, id="host", classes="-idle")  # from the start: adding a class restyles every widget
        self.autos: tuple = ()
        self.images: tuple = ()
        self.running_names: frozenset[str] = frozenset()
        self._poll_timers: dict[str, Timer] = {}
        self._figure_polls = 0
        self._xen = None
        self._xen_error = ""
        self.domains_seen = 0  # DomainsRefreshed handled (tests wait on it)
        self._source = ""
        self._others_started = False
        self._others_timer: Timer | None = None
        self.launch_checks = 0  # looks at a launched run not yet in the progress file (tests wait on it)
        self._waiting_said = ""

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")  # Textual's ⭘ is missing from common terminal and SVG fonts
        yield HostFigures(id="figures")
        with Vertical(id="domains-pane", classes="pane"):
            yield DomainTable(id="domains")
        yield StageBoard(id="board", classes="pane")
        yield EventLog(id="log", classes="pane", said_once=self.state.said_once)
        yield AutoList(id="auto", classes="pane")
        yield SavedList(id="saved", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        host = self.host
        self.query_one("#domains-pane").border_title = "Domains"
        self.query_one("#board").border_title = "Stage board"
        self.query_one("#log").border_title = "Log"
        cfg = host.cfg
        self.query_one(AutoList).border_title = "Auto"
        self.query_one(SavedList).border_title = "Saved"
        self.show()
        self.query_one(EventLog).note(
            f"{host.toolstack.name} toolstack · config {cfg.path or 'defaults'} · progress file {cfg.progress}")
        self.watch_domains()
        self.follow_progress()
        # The first frame needs the domains; the auto and saved lists and the figures come right after it
        # (on a loaded machine the 1,000-guest table is on screen sooner), or after a second at the latest.
        self._others_timer = self.set_timer(1.0, self._poll_others)
        self.set_interval(1.0, self._tick, name="board-tick")
        self.query_one(DomainTable).focus()

    def _poll_others(self) -> None:
        """Start the pollers that wait for the first frame (once)."""
        if self._others_started or not self.is_attached:
            return
        self._others_started = True
        if self._others_timer is not None:
            self._others_timer.stop()
        self.poll_lists()
        self.poll_figures()

    # -- pollers: one-shot workers, re-armed by a timer -----------------------------------------------

    def _rearm(self, name: str, delay: float, fn) -> None:
        old = self._poll_timers.pop(name, None)
        if old is not None:
            old.stop()
        if self.is_attached and not self.state.closing:
            self._poll_timers[name] = self.set_timer(delay, fn, name=name)

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def watch_domains(self) -> None:
        async for change in watch_domains(self.host.toolstack, interval=self.host.watch_interval):
            self.post_message(DomainsRefreshed(change))

    @work(exclusive=True, group="lists", exit_on_error=False)
    async def poll_lists(self) -> None:
        try:
            svc = self.host.service(EventBus(), planning=False)
            autos = await svc.auto_configs()
            images = await asyncio.to_thread(savedir.scan, self.host.cfg.save_dir)
            self.post_message(HostListsRead(autos, images))
        finally:
            self._rearm("lists", self.LISTS_INTERVAL, self.poll_lists)

    @work(exclusive=True, group="figures", exit_on_error=False)
    async def poll_figures(self) -> None:
        try:
            dom0 = self.state.providers.dom0()
            if self._figure_polls % self.XEN_INFO_EVERY == 0:
                try:
                    self._xen, self._xen_error = await self.host.toolstack.host_info(), ""
                except Exception as exc:  # a figure we cannot read is shown as such, never fatal
                    self._xen, self._xen_error = None, f"xl info: {exc}"
            self._figure_polls += 1
            self.post_message(HostFiguresMeasured(dom0, self._xen, self._xen_error))
        finally:
            self._rearm("figures", self.FIGURES_INTERVAL, self.poll_figures)

    def restart_worker(self, group: str) -> None:
        again = {"watch": self.watch_domains, "lists": self.poll_lists, "figures": self.poll_figures}.get(group)
        if again is not None:
            again()
        else:
            super().restart_worker(group)

    # -- data in ---------------------------------------------------------------------------------------

    def on_domains_refreshed(self, msg: DomainsRefreshed) -> None:
        table = self.query_one(DomainTable)
        table.set_domains(msg.change.domains)
        names = frozenset(d.name for d in msg.change.domains if not d.is_dom0)
        if names != self.running_names:
            self.running_names = names
            self.query_one(AutoList).show(self.autos, names)
        self._source = msg.change.source
        self._domains_title()
        self.domains_seen += 1
        if not self._others_started:
            self.call_after_refresh(self._poll_others)

    def on_host_lists_read(self, msg: HostListsRead) -> None:
        self.autos, self.images = msg.autos, msg.images
        self.query_one(DomainTable).set_lists({a.name for a in msg.autos if a.name},
                                              {i.guest for i in msg.images if i.guest and not i.quarantined})
        self.query_one(AutoList).show(msg.autos, self.running_names)
        self.query_one(SavedList).show(msg.images, self.state.providers.clock)
        self.query_one(AutoList).border_title = f"Auto ({len(msg.autos)})"
        self.query_one(SavedList).border_title = f"Saved ({len(msg.images)})"

    def on_host_figures_measured(self, msg: HostFiguresMeasured) -> None:
        self.query_one(HostFigures).show(msg.dom0, msg.xen, msg.xen_error, at=self.state.providers.clock())

    def events_drawn(self, msg: EventsArrived, before: B.BoardState) -> None:
        self.set_class(self.board_state.active, "-running")
        self.set_class(self.board_state.empty, "-idle")
        self.show()
        if any(isinstance(e, (GuestFinished, RunFinished)) for e in msg.events):
            self._rearm("lists", 0.3, self.poll_lists)  # images appear, guests go: look soon
        self.refresh_bindings()

    def show(self) -> None:
        b = self.board_state
        title = "Stage board"
        if b.active:
            whose = "this console's" if self.state.owns(b.run) else "headless"
            title += f" — {whose} {b.verb} in progress, pid {b.pid}" + ("" if self.steering.allowed else " (read-only)")
        self.query_one("#board").border_title = title
        super().show()

    def prefs_text(self) -> Text | None:
        """During a run: the run's own toggles (when steering); else the choices for the next run."""
        if self.run_active:
            return self.run_prefs_text()
        prefs, cfg = self.state.prefs, self.host.cfg
        states = prefs.stage_states(cfg)
        target = " ".join(prefs.migrate_target) if prefs.migrate_target else None
        return toggle_line(states, target, prefs.parallel or cfg.parallel)

    def selected_guests(self) -> list[str]:
        """Marked guests; else the guest under the cursor of the focused table."""
        table = self.query_one(DomainTable)
        keys = sorted(table.marked, key=lambda n: table.domain(n).domid if table.domain(n) else 0) if table.marked \
            else [k for k in (self.board_guest(),) if k]
        return [k for k in keys if not ((d := table.domain(k)) and d.nameless)]  # "(null)": nothing to name

    def board_guest(self) -> str | None:
        """The guest a key acts on: the board's cursor when the board has the focus, else the domain table's."""
        focused = self.focused
        if isinstance(focused, BoardTable):
            return focused.guest_at_cursor()
        return self.query_one(DomainTable).guest_at_cursor()

    # -- the footer and the palette follow the state ---------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """During a run: skip, abort, parallelism, help, quit (starting another is refused); idle: no run-only keys."""
        if action in RUN_ONLY or action == "parallel_step":  # before a run, p sets the parallelism
            return self.run_active
        if action in STARTS:
            return not self.run_active
        return True


    def help_commands(self) -> list[Command]:
        return list(HOST_COMMANDS)

    def palette_commands(self) -> list[Command]:
        return [c for c in HOST_COMMANDS if self.check_action(c.action.split("(", 1)[0], ())]

    # -- actions: runs ---------------------------------------------------------------------------------------------

    def _refuse_if_busy(self) -> bool:
        """True (and a notice) when a run stands in the way."""
        b = self.board_state
        if b.active:
            who = "this console's" if self.state.owns(b.run) else "a headless"
            self.notify(f"{who.capitalize()} {b.verb} (pid {b.pid}) is in progress: skip, abort or wait for it.",
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
        if self.board_state.active:
            self.notify("A run is in progress and holds the lock: leave these guests out of it with g, "
                        "or wait for it to end.", severity="warning")
            return
        cfg = self.state.prefs.config_for(self.host.cfg)
        if stage == "migrate" and not cfg.migrate and not cfg.migrate_targets:
            self.notify("No migration target: set one with o first.", severity="warning")
            return
        if stage == "save" and cfg.save_dir is None:
            self.notify("XENDOMAINS_SAVE is empty: there is no save directory.", severity="warning")
            return
        self.confirm_and_run(RunRequest("stop", only=tuple(guests), stage=stage))

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def confirm_and_run(self, req: RunRequest) -> None:
        from .plan_dialog import PlanDialog  # imported on first use: not on the way to the first frame

        prefs = self.state.prefs
        plan = await compute_plan(self.host, prefs, req)
        watchdog = float(prefs.config_for(self.host.cfg).stop_maxwait or 0)
        dialog = PlanDialog(req.title, plan, run_label=req.run_label, watchdog=watchdog,
                            replan=lambda place: compute_plan(self.host, prefs, req, place))
        on_hangup = await self.app.push_screen_wait(dialog)
        if not on_hangup:
            return
        opts = req.options(prefs, on_hangup=on_hangup, place=dialog.placements)  # moves made in the dialog
        guests = list(req.only or ())
        try:
            launched = await asyncio.to_thread(launch, self.host, req.verb, guests, opts, prefs.parallel)
        except LaunchError as exc:
            self.post_message(RunLaunched(None, str(exc)))
            return
        self.post_message(RunLaunched(launched))

    def on_run_launched(self, msg: RunLaunched) -> None:
        log = self.query_one(EventLog)
        now = self.state.providers.clock()
        if msg.launched is None:
            log.note(f"could not start the run: {msg.error}", level="error", at=now)
            self.notify(f"Could not start the run: {msg.error}", severity="error", timeout=15, markup=False)
            return
        la = msg.launched
        self.state.launched, self.state.launched_at, self.state.own_run = la, time.time(), ""
        then = "goes on" if la.on_hangup == "continue" else "stops at a clean point"
        log.note(f"started xendomains {la.verb} headless ({la.how}); if this terminal goes away it {then}", at=now)
        self._rearm_launch_check(la)

    def _rearm_launch_check(self, la: Launched) -> None:
        self.set_timer(self.state.launch_grace, lambda: self.run_worker(
            self._launch_check(la), group="launch-check", exclusive=True, exit_on_error=False))

    def _waiting_for_it(self, la: Launched) -> bool:
        return self.state.launched is la and not self.state.own_run

    async def _launch_check(self, la: Launched) -> None:
        """A launched run not yet in the progress file: still there (waiting for the lock, perhaps), or gone?

        A run started as a systemd unit has no pid of ours: systemd is asked whether its unit is still
        there (and the unit's ExecMainPID becomes the run's pid); "never started" only once the unit is
        gone or failed.  A run in a session of its own: its pid."""
        if not self._waiting_for_it(la):
            return
        log = self.query_one(EventLog)
        if la.unit:
            try:
                unit = await asyncio.to_thread(unit_state, la.unit)
            except LaunchError as exc:
                if self._waiting_for_it(la):
                    log.note(f"the {la.verb} run has not begun yet and systemd cannot tell about its unit "
                             f"({exc}): see journalctl -u {la.unit}", level="warning")
                return
            if not self._waiting_for_it(la):
                return
            self.launch_checks += 1
            if unit.running:
                if unit.pid and unit.pid != la.pid:  # the run's pid: its RunStarted is recognised by it
                    la = self.state.launched = dataclasses.replace(la, pid=unit.pid)
                self._say_waiting(la, unit.words())
                self._rearm_launch_check(la)
                return
            why = f"{unit.words()}; see journalctl -u {la.unit}"
        else:
            self.launch_checks += 1
            if la.pid and pid_alive(la.pid):
                self._say_waiting(la, f"pid {la.pid} running")
                self._rearm_launch_check(la)
                return
            why = la.failure() or "no output"
        log.note(f"the {la.verb} run never started: {why}", level="error")
        self.notify(f"The {la.verb} run never started: {why}", severity="error", timeout=20, markup=False)

    def _say_waiting(self, la: Launched, what: str) -> None:
        """Once per launch: the run is there but has not begun (another run may hold the lock)."""
        if self._waiting_said != la.how:
            self._waiting_said = la.how
            self.query_one(EventLog).note(f"the {la.verb} run has not begun yet: waiting ({what}); "
                                          "another run may hold the lock")

    # -- actions: choices before a run, interventions during one --------------------------------------------------

    def action_mark(self) -> None:
        table = self.query_one(DomainTable)
        guest = table.guest_at_cursor()
        if guest:
            table.toggle_mark(guest)
            table.action_cursor_down()

    def action_clear_marks(self) -> None:
        self.query_one(DomainTable).clear_marks()

    def action_skip_guest(self) -> None:
        if self.run_active:
            super().action_skip_guest()
            return
        guests = self.selected_guests()
        if not guests:
            self.notify("No guest under the cursor.", severity="warning")
            return
        prefs = self.state.prefs
        for g in guests:
            prefs.skipped_guests ^= {g}
        now = sorted(prefs.skipped_guests)
        self.notify("Left out of the next run: " + (", ".join(now) if now else "nobody"))

    def action_toggle_stage(self, name: str) -> None:
        if self.run_active:
            super().action_toggle_stage(name)
            return
        prefs = self.state.prefs
        state = prefs.stage_state(self.host.cfg, name)
        if state == "n/a":
            self.cannot_turn_on(name)
            return
        (prefs.disabled.discard if state == "off" else prefs.disabled.add)(name)
        self.show()

    def action_migrate_target(self) -> None:
        if self.run_active:
            super().action_migrate_target()
            return
        prefs = self.state.prefs

        def apply(words):
            prefs.migrate_target = tuple(words) if words else None
            self.show()

        ask_migration_target(self, " ".join(prefs.migrate_target or self.host.cfg.migrate), "the next run", apply)

    def _set_parallel(self, n: int) -> None:
        self.state.prefs.parallel = n
        self.show()

    def action_parallel(self) -> None:
        if self.run_active:
            super().action_parallel()
            return
        ask_parallelism(self, self.state.prefs.parallel or self.host.cfg.parallel, "How many guests are handled at once.",
                        self._set_parallel)

    def action_parallel_step(self, delta: int) -> None:
        if self.run_active:
            super().action_parallel_step(delta)
            return
        self._set_parallel(max(1, (self.state.prefs.parallel or self.host.cfg.parallel) + delta))

    def guest_facts(self, name: str):
        from .guest_detail import GuestFacts

        table = self.query_one(DomainTable)
        auto = next((a for a in self.autos if a.name == name), None)
        image = next((i for i in self.images if i.guest == name), None)
        return GuestFacts(name, domain=table.domain(name), auto=auto, image=image,
                          row=self.board_state.rows.get(name), verb=self.board_state.verb, run=self.board_state.run,
                          now=self.state.providers.clock())

    def action_filter(self) -> None:
        from .dialogs import PromptDialog

        table = self.query_one(DomainTable)

        def done(value: str | None) -> None:
            if value is not None:
                table.set_filter(value)
                self._domains_title()

        self.app.push_screen(PromptDialog("Filter guests", "A part of a name or a state (running, paused …); "
                                          "empty shows every guest.", table.filter_text, "web"), done)

    def _domains_title(self) -> None:
        table = self.query_one(DomainTable)
        title = f"Domains ({len(self.running_names)}, {self._source})"
        if table.filter_text:
            title += f" /{table.filter_text}: {table.row_count} shown"
        self.query_one("#domains-pane").border_title = title

    def action_attach(self) -> None:
        from .attach import AttachScreen

        if not isinstance(self.app.screen, AttachScreen):
            self.app.push_screen(AttachScreen(self.state))

    def action_refresh(self) -> None:
        self.poll_lists()
        self.poll_figures()
        self.watch_domains()
