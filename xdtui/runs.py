"""The operator's choices for the next run, and the plan they lead to.

No Textual here, and no pipeline: the console never runs one.  `RunPrefs`
holds what the operator chose before a run (stages off, migration target,
parallelism, guests left out); a `RunRequest` says what to run (verb,
guests, "run one stage now").  Together they become the `RunOptions` of the
headless `xendomains` run the console launches (`xdtui.launch`), and the
plan the confirmation dialog shows is computed from the very same options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xdcore.config import Config
from xdcore.pipeline.stages import STAGES
from xdcore.run_options import ONE_STAGE, RunOptions

from .host import HostContext

if TYPE_CHECKING:  # planning is imported when a plan is first asked for, not before the console's first frame
    from xdcore.plan import Plan

#: stages the operator may turn on or off, in key order 1..5
TOGGLABLE = ("sysrq", "migrate", "save", "shutdown", "shutdown_all")

__all__ = ["ONE_STAGE", "TOGGLABLE", "RunPrefs", "RunRequest", "compute_plan", "stage_states"]


def stage_state(cfg: Config, disabled: set[str] | frozenset[str], name: str) -> str:
    """'on', 'off' (turned off) or 'n/a' (`cfg` gives the stage nothing to do)."""
    return "n/a" if not STAGES[name].is_enabled(cfg) else "off" if name in disabled else "on"


def stage_states(cfg: Config, disabled: set[str] | frozenset[str]) -> dict[str, str]:
    """`stage_state` of every togglable stage, in key order (the toggle line's)."""
    return {name: stage_state(cfg, disabled, name) for name in TOGGLABLE}


@dataclass
class RunPrefs:
    """The operator's choices for the next run."""

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

    def stage_states(self, cfg: Config) -> dict[str, str]:
        """Every togglable stage under these choices (see `stage_states`)."""
        return stage_states(self.config_for(cfg), self.disabled)

    def stage_state(self, cfg: Config, name: str) -> str:
        """'on', 'off' (operator) or 'n/a' (the config gives it nothing to do)."""
        return stage_state(self.config_for(cfg), self.disabled, name)


@dataclass(frozen=True)
class RunRequest:
    """What to run: verb, guests (None = all), and "run one stage now" (migrate / save / shutdown)."""

    verb: str
    only: tuple[str, ...] | None = None
    stage: str | None = None

    @property
    def title(self) -> str:
        if self.stage:
            return {"migrate": "Migrate", "save": "Save", "shutdown": "Shut down"}[self.stage] + " " + ", ".join(self.only or ())
        if self.verb == "start":
            return "Start host"
        return "Evacuate " + (", ".join(self.only) if self.only else "host")

    @property
    def run_label(self) -> str:
        """The plan dialog's button."""
        if self.verb == "start":
            return "Start"
        return {"migrate": "Migrate", "save": "Save", "shutdown": "Shut down"}.get(self.stage or "", "Evacuate")

    def options(self, prefs: RunPrefs, on_hangup: str = "continue",
                place: Mapping[str, str] | None = None) -> RunOptions:
        """The `xendomains` options of this run under the operator's choices (`place`: guest -> the
        migration target chosen in the plan dialog)."""
        disabled = tuple(sorted(prefs.disabled - ({self.stage} if self.stage else set())))
        leave_out = tuple(sorted(prefs.skipped_guests)) if self.verb == "stop" and not self.stage else ()
        return RunOptions(stage=self.stage, disabled=disabled, leave_out=leave_out,
                          migrate_target=prefs.migrate_target, on_hangup=on_hangup,
                          place=tuple((place or {}).items()) if self.verb == "stop" else ())


async def compute_plan(host: HostContext, prefs: RunPrefs, req: RunRequest,
                       place: Mapping[str, str] | None = None) -> Plan:
    """The plan the confirmation dialog shows: what each guest will go through under these options."""
    from xdcore.events import EventBus
    from xdcore.pipeline.control import RunControl
    from xdcore.plan import start_plan, stop_plan

    opts = req.options(prefs, place=place)
    cfg = opts.config(prefs.config_for(host.cfg))
    bus = EventBus()
    control = RunControl(cfg.parallel, emit=bus.emit)
    opts.apply(control)
    svc = host.service(bus, control, cfg)
    if req.verb == "start":
        return await start_plan(svc)
    plan = await stop_plan(svc, list(req.only) if req.only else None)
    left = [g for g in plan.guests if g.guest in control.skipped_guests]
    if left:
        keep = tuple(g for g in plan.guests if g.guest not in control.skipped_guests)
        plan = dataclasses.replace(plan, guests=keep, skipped=plan.skipped + tuple((g.guest, "left out by the operator") for g in left))
    return plan
