"""What a run is asked to do beyond its config: the console's choices, as `xendomains` options.

The console never runs a pipeline itself: it launches `xendomains start|stop`
detached and attaches to it.  Everything the operator chose before the run —
stages turned off, a migration target, guests left out, "run one stage now",
what to do if the console's terminal goes away — travels as command-line
options, built by `RunOptions.argv()` and read back by `from_args()`, and is
applied to the run's Config and RunControl by `apply()`.  One class on both
sides, so the two cannot drift.

    xendomains stop --stage save web01 db02        # save these two now, nothing else
    xendomains stop --disable-stage migrate --leave-out db01 --on-hangup stop
    xendomains stop --place web01=xen03 --place db01=xen04   # several targets: where these go
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .config import Config
from .pipeline.control import RunControl
from .pipeline.stages import STAGES, STOP_GUEST_STAGES

#: what the run does when the console that started it loses its terminal
ON_HANGUP = ("continue", "stop")
#: the per-guest stop stages "run one stage now" may name
ONE_STAGE = tuple(s.name for s in STOP_GUEST_STAGES if s.name != "sysrq")


class RunOptionsError(ValueError):
    """An option names something that does not exist, or options that contradict each other."""


@dataclass(frozen=True)
class RunOptions:
    """The operator's choices for one run.

    `stage`: "run one stage now" — only this per-guest stage, for the named
    guests (no other stage, never shutdown --all).  `disabled`: stages turned
    off.  `leave_out`: guests left out.  `migrate_target`: shell words
    overriding XENDOMAINS_MIGRATE.  `on_hangup`: "continue" (the default) or
    "stop" at a clean point when the starting console's terminal goes away.
    `place`: (guest, target) pairs, the migration target the operator chose for
    a guest among several (XENDOMAINS_MIGRATE_TARGETS), placed before the rest.
    """

    stage: str | None = None
    disabled: tuple[str, ...] = ()
    leave_out: tuple[str, ...] = ()
    migrate_target: tuple[str, ...] | None = None
    on_hangup: str = "continue"
    place: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.stage is not None and self.stage not in ONE_STAGE:
            raise RunOptionsError(f"--stage takes one of {', '.join(ONE_STAGE)}, not {self.stage!r}")
        for s in self.disabled:
            if s not in STAGES:
                raise RunOptionsError(f"--disable-stage: unknown stage {s!r} (one of {', '.join(STAGES)})")
            if STAGES[s].required:
                raise RunOptionsError(f"--disable-stage: stage {s} is required and cannot be turned off")
        if self.on_hangup not in ON_HANGUP:
            raise RunOptionsError(f"--on-hangup takes continue or stop, not {self.on_hangup!r}")
        for g in self.leave_out:
            if not g:
                raise RunOptionsError("--leave-out needs a guest name")
        seen: dict[str, str] = {}
        for guest, target in self.place:
            what = f"--place {guest}={target}"
            if not guest or not target or any(c.isspace() for c in guest + target):
                raise RunOptionsError(f"{what}: expected GUEST=TARGET (a guest name, =, one of the migration targets)")
            if seen.get(guest, target) != target:
                raise RunOptionsError(f"{what}: {guest} is already placed on {seen[guest]} (--place {guest}={seen[guest]})")
            seen[guest] = target
            if guest in self.leave_out:
                raise RunOptionsError(f"{what}: {guest} is left out of this run (--leave-out {guest})")
        if self.place:
            if "migrate" in self.disabled or (self.stage and self.stage != "migrate"):
                raise RunOptionsError("--place chooses migration targets, and migrate is turned off for this run")
            if self.migrate_target:
                raise RunOptionsError("--place and --migrate-target contradict: --migrate-target sends every guest "
                                      "to one host")

    # -- both directions of the command line ---------------------------------------------------

    def argv(self) -> list[str]:
        """The options as `xendomains` arguments (global options: they go before the verb)."""
        out: list[str] = []
        if self.stage:
            out += ["--stage", self.stage]
        for s in self.disabled:
            out += ["--disable-stage", s]
        for g in self.leave_out:
            out += ["--leave-out", g]
        if self.migrate_target:
            out += ["--migrate-target", shlex.join(self.migrate_target)]
        for guest, target in self.place:
            out += ["--place", f"{guest}={target}"]
        out += ["--on-hangup", self.on_hangup]  # always: it says a console started the run
        return out

    @classmethod
    def from_args(cls, *, stage: str | None = None, disabled: Sequence[str] = (), leave_out: Sequence[str] = (),
                  migrate_target: str | None = None, on_hangup: str | None = None,
                  place: Sequence[str] = ()) -> "RunOptions":
        pairs = []
        for text in place:
            guest, eq, target = text.partition("=")
            if not eq:
                raise RunOptionsError(f"--place {text}: expected GUEST=TARGET, e.g. --place web01=xen03")
            pairs.append((guest.strip(), target.strip()))
        words: tuple[str, ...] | None = None
        if migrate_target is not None:
            try:
                words = tuple(shlex.split(migrate_target)) or None
            except ValueError as exc:
                raise RunOptionsError(f"--migrate-target: {exc}") from None
        return cls(stage=stage, disabled=tuple(dict.fromkeys(disabled)), leave_out=tuple(dict.fromkeys(leave_out)),
                   migrate_target=words, on_hangup=on_hangup or "continue", place=tuple(dict.fromkeys(pairs)))

    # -- applying them to a run ------------------------------------------------------------------

    def forced_off(self) -> set[str]:
        """Every stage this run must not run: the disabled ones, and for one stage all the others."""
        off = set(self.disabled)
        if self.leave_out:
            off.add("shutdown_all")  # shutdown --all would take the guests left out too
        if self.stage:
            off |= {s.name for s in STOP_GUEST_STAGES if s.name != self.stage}
            off.add("shutdown_all")
            off.discard(self.stage)
        return off

    def config(self, cfg: Config) -> Config:
        """The run's config: the migration target, and default shutdown options when asked to shut down explicitly."""
        kw: dict[str, object] = {}
        if self.migrate_target:
            kw["migrate"] = self.migrate_target
        if self.stage == "shutdown" and not cfg.shutdown:
            kw["shutdown"] = Config().shutdown
        return cfg.with_overrides(**kw) if kw else cfg

    def apply(self, control: RunControl) -> None:
        """Set the run's control before it starts (silently: these are the run's terms, not interventions)."""
        control.disabled_stages.update(self.forced_off())
        control.skipped_guests.update(self.leave_out)
        control.on_hangup = self.on_hangup
        if self.migrate_target:
            control.migrate_target = self.migrate_target
        control.placements.update(self.place)

    def check_guests(self, verb: str, guests: Sequence[str]) -> None:
        """A one-stage run needs named guests and is a stop; placements are for a stop."""
        if self.stage and (verb != "stop" or not guests):
            raise RunOptionsError("--stage runs one stage of a stop for named guests: xendomains --stage save stop GUEST …")
        if self.place and verb != "stop":
            raise RunOptionsError("--place chooses where guests migrate: an option of stop (and plan stop), not start")


__all__ = ["ON_HANGUP", "ONE_STAGE", "RunOptions", "RunOptionsError"]
