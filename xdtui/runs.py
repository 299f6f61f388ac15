"""Runs the console starts: the operator's choices, and one Service + RunControl per run.

No Textual here.  `RunPrefs` holds what the operator chose before or during a
run (stages off, migration target, parallelism, guests to skip).  A
`RunSession` is one run: a fresh EventBus and RunControl, the prefs applied,
the progress file written as `xendomains` would (so `xdtui --attach` in
another terminal can follow it), and the Service coroutine to await.

"Run one stage now" (migrate / save / shut down the selected guests) is a stop
limited to those guests with every other per-guest stage and the host-wide
shutdown-all turned off.  While an evacuation runs it becomes a *side run*:
the guests are skipped in the main run and handled by a second stop that
shares the main run's lock (it does not take it again) and progress file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdcore.config import Config
from xdcore.events import Event, EventBus, RunFinished, RunStarted
from xdcore.output import ProgressFile
from xdcore.pipeline.control import RunControl
from xdcore.pipeline.stages import STAGES, STOP_GUEST_STAGES
from xdcore.plan import Plan, ThroughputRecorder, start_plan, stop_plan
from xdcore.service import RunOutcome, Service, new_run_id

from .host import HostContext

#: stages the operator may turn on or off, in key order 1..5
TOGGLABLE = ("sysrq", "migrate", "save", "shutdown", "shutdown_all")
#: the stages "run one stage now" offers
ONE_STAGE = ("migrate", "save", "shutdown")


@dataclass
class RunPrefs:
    """The operator's choices for the next run (and, mirrored, the current one)."""

    disabled: set[str] = field(default_factory=set)
    migrate_target: tuple[str, ...] | None = None
    parallel: int | None = None
    skipped_guests: set[str] = field(default_factory=set)

    def config_for(self, cfg: Config) -> Config:
        kw: dict[str, object] = {}
        if self.migrate_target:
            kw["migrate"] = self.migrate_target
        if self.parallel:
            kw["parallel"] = self.parallel
        return cfg.with_overrides(**kw) if kw else cfg

    def stage_state(self, cfg: Config, name: str) -> str:
        """'on', 'off' (operator) or 'n/a' (the config gives it nothing to do)."""
        st = STAGES[name]
        if not st.is_enabled(self.config_for(cfg)):
            return "n/a"
        return "off" if name in self.disabled else "on"


@dataclass(frozen=True)
class RunRequest:
    """What to run: verb, guests (None = all), and the stages to force off for this run only."""

    verb: str
    only: tuple[str, ...] | None = None
    stage: str | None = None  # "run one stage now": migrate / save / shutdown
    side: bool = False  # beside an active run of this console (shares its lock)

    @property
    def title(self) -> str:
        if self.stage:
            return {"migrate": "Migrate", "save": "Save", "shutdown": "Shut down"}[self.stage] + " " + ", ".join(self.only or ())
        if self.verb == "start":
            return "Start host"
        return "Evacuate " + (", ".join(self.only) if self.only else "host")


def forced_off(req: RunRequest) -> set[str]:
    """Stages a request turns off beyond the operator's toggles."""
    off: set[str] = set()
    if req.verb == "stop" and req.only is not None:
        off.add("shutdown_all")  # a run for some guests must never `shutdown --all` the others
    if req.stage:
        off |= {s.name for s in STOP_GUEST_STAGES if s.name != req.stage}
    return off


def run_config(cfg: Config, prefs: RunPrefs, req: RunRequest) -> Config:
    cfg = prefs.config_for(cfg)
    if req.stage == "shutdown" and not cfg.shutdown:
        cfg = cfg.with_overrides(shutdown=Config().shutdown)  # asked for explicitly: use the default options
    return cfg


def make_control(cfg: Config, prefs: RunPrefs, req: RunRequest, emit: Callable[[Event], object]) -> RunControl:
    control = RunControl(cfg.parallel, emit=emit)
    disabled = set(prefs.disabled) | forced_off(req)
    if req.stage:
        disabled.discard(req.stage)
    control.disabled_stages.update(disabled)  # silently: no ControlApplied before RunStarted
    if prefs.migrate_target:
        control.migrate_target = prefs.migrate_target
    return control


async def compute_plan(host: HostContext, prefs: RunPrefs, req: RunRequest) -> Plan:
    """The plan the confirmation dialog shows: what each guest will go through under the current choices."""
    cfg = run_config(host.cfg, prefs, req)
    bus = EventBus()
    control = make_control(cfg, prefs, req, bus.emit)
    svc = host.service(bus, control, cfg)
    if req.verb == "start":
        return await start_plan(svc)
    plan = await stop_plan(svc, list(req.only) if req.only else None)
    skipped = [g for g in plan.guests if g.guest in prefs.skipped_guests]
    if skipped:
        keep = tuple(g for g in plan.guests if g.guest not in prefs.skipped_guests)
        plan = dataclasses.replace(plan, guests=keep, skipped=plan.skipped + tuple((g.guest, "skipped by operator") for g in skipped))
    return plan


class _SideProgress:
    """A side run's events go into the main run's progress file, without its own start/finish lines."""

    def __init__(self, main: Callable[[Event], None]):
        self.main = main

    def __call__(self, e: Event) -> None:
        if not isinstance(e, (RunStarted, RunFinished)):
            self.main(e)


class RunSession:
    """One run the console started."""

    def __init__(self, host: HostContext, prefs: RunPrefs, req: RunRequest, sink: Callable[[Event], None],
                 *, progress: Callable[[Event], None] | None = None, write_progress: bool = True):
        self.req = req
        self.cfg = run_config(host.cfg, prefs, req)
        self.bus = EventBus(run=new_run_id())
        self.control = make_control(self.cfg, prefs, req, self.bus.emit)
        self.service: Service = host.service(self.bus, self.control, self.cfg)
        self.progress: ProgressFile | None = None
        self.outcome: RunOutcome | None = None
        self.bus.subscribe(sink)
        if req.side and progress is not None:
            self.bus.subscribe(_SideProgress(progress))
        elif write_progress and not req.side:
            self.progress = ProgressFile(self.cfg.progress)
            self.bus.subscribe(self.progress)
            self.bus.subscribe(ThroughputRecorder(self.cfg))
        self._pre_skips = sorted(prefs.skipped_guests) if not req.side else []
        self.lock_wait = host.lock_wait

    @property
    def verb(self) -> str:
        return self.req.verb

    async def run(self) -> RunOutcome:
        for g in self._pre_skips:  # "skip this guest" chosen before the run
            self.control.skipped_guests.add(g)
        try:
            if self.req.verb == "start":
                self.outcome = await self.service.start()
            else:
                self.outcome = await self.service.stop(list(self.req.only) if self.req.only else None,
                                                       take_lock=not self.req.side, lock_wait=self.lock_wait)
        finally:
            if self.progress is not None:
                self.progress.close()
        return self.outcome

    # -- interventions (pass-throughs, so the UI never reaches into xdcore objects) ----------

    def skip_stage(self, guest: str) -> bool:
        return self.control.skip_stage(guest)

    def skip_guest(self, guest: str) -> None:
        self.control.skip_guest(guest)

    def set_stage(self, name: str, enabled: bool) -> None:
        self.control.set_stage(name, enabled)

    def set_parallel(self, n: int) -> None:
        self.control.set_parallel(n)

    def set_migrate_target(self, words: Sequence[str] | None) -> None:
        self.control.set_migrate_target(tuple(words) if words else None)

    def abort(self, now: bool = False) -> None:
        self.control.abort(now=now)
