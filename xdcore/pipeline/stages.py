"""The stage tables of `start` and `stop`, as data.

One table per pipeline: order, what each stage does, whether it is required,
whether it is per guest, whether success ends the guest's pipeline, and which
stage a failure falls through to.  The runner executes these tables; the
console draws its stage board columns from them; `plan` explains them.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a pipeline."""

    name: str            # machine name, used in events: "migrate"
    title: str           # for people: "Migrate"
    label: str           # the classic script's progress tag: "migr"
    per_guest: bool      # runs once per guest (else once per run)
    required: bool       # cannot be turned off by config or operator
    terminal: bool       # success ends this guest's pipeline
    outcome: str         # GuestFinished.outcome when this stage ends the guest
    fallback: str | None # the stage a failure falls through to (None: the guest failed)
    watchdog: bool       # guarded by XENDOMAINS_STOP_MAXWAIT (stop) / XENDOMAINS_START_MAXWAIT (start)
    enabled: Callable[[Config], bool]
    why: Callable[[Config], str]  # the config that turns it on/off, for plans

    def is_enabled(self, cfg: Config) -> bool:
        return self.required or self.enabled(cfg)


def _always(_: Config) -> bool:
    return True


def _migrate_why(c: Config) -> str:
    if c.migrate_targets:
        opts = f" with XENDOMAINS_MIGRATE={' '.join(c.migrate)!r}" if c.migrate else ""
        return f"XENDOMAINS_MIGRATE_TARGETS={' '.join(c.migrate_targets)!r}{opts}"
    return f"XENDOMAINS_MIGRATE={' '.join(c.migrate)!r}" if c.migrate else "XENDOMAINS_MIGRATE is empty"


STOP_STAGES: tuple[Stage, ...] = (
    Stage("select", "Select", "sel", False, True, False, "", None, False, _always,
          lambda c: "AUTO_ONLY: guests with a config in the auto directory" if c.auto_only else "all running guests"),
    Stage("sysrq", "SysRq", "SR", True, False, False, "", "migrate", True, lambda c: bool(c.sysrq),
          lambda c: f"XENDOMAINS_SYSRQ={' '.join(c.sysrq)!r}" if c.sysrq else "XENDOMAINS_SYSRQ is empty"),
    Stage("migrate", "Migrate", "migr", True, False, True, "migrated", "save", True,
          lambda c: bool(c.migrate) or bool(c.migrate_targets), _migrate_why),
    Stage("save", "Save", "save", True, False, True, "saved", "shutdown", True, lambda c: c.save_dir is not None,
          lambda c: f"XENDOMAINS_SAVE={c.save_dir}" if c.save_dir else "XENDOMAINS_SAVE is empty"),
    Stage("shutdown", "Shutdown", "shut", True, False, True, "shutdown", None, True, lambda c: bool(c.shutdown),
          lambda c: f"XENDOMAINS_SHUTDOWN={' '.join(c.shutdown)!r}" if c.shutdown else "XENDOMAINS_SHUTDOWN is empty"),
    Stage("shutdown_all", "Shutdown all", "SHUTDOWN_ALL", False, False, False, "", None, True,
          lambda c: bool(c.shutdown_all),
          lambda c: f"XENDOMAINS_SHUTDOWN_ALL={' '.join(c.shutdown_all)!r}" if c.shutdown_all else "XENDOMAINS_SHUTDOWN_ALL is empty"),
    Stage("cleanup", "Cleanup", "cleanup", False, True, False, "", None, False, _always, lambda c: "remove the lock file"),
)

START_STAGES: tuple[Stage, ...] = (
    Stage("lock", "Lock", "lock", False, True, False, "", None, False, _always, lambda c: "create the lock file"),
    Stage("restore", "Restore", "rest", True, False, True, "restored", None, True,
          lambda c: c.restore and c.save_dir is not None,
          lambda c: f"XENDOMAINS_RESTORE={'true' if c.restore else 'false'}, XENDOMAINS_SAVE={c.save_dir or ''}"),
    Stage("create", "Autostart", "auto", True, False, True, "created", None, True, lambda c: c.auto_dir is not None,
          lambda c: f"XENDOMAINS_AUTO={c.auto_dir}" if c.auto_dir else "XENDOMAINS_AUTO is empty"),
)

STAGES = {s.name: s for s in STOP_STAGES + START_STAGES}

#: the per-guest stages of stop, in order — the stage board's columns
STOP_GUEST_STAGES: tuple[Stage, ...] = tuple(s for s in STOP_STAGES if s.per_guest)
START_GUEST_STAGES: tuple[Stage, ...] = tuple(s for s in START_STAGES if s.per_guest)


def stage(name: str) -> Stage:
    return STAGES[name]


def guest_stop_stages(cfg: Config, disabled: frozenset[str] = frozenset()) -> tuple[Stage, ...]:
    """The per-guest stop stages a guest goes through under `cfg`, minus operator-disabled ones."""
    return tuple(s for s in STOP_GUEST_STAGES if s.is_enabled(cfg) and (s.required or s.name not in disabled))
