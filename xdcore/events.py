"""The event vocabulary of a run, and its JSON codec.

Every step of a start or stop pipeline emits one of these frozen dataclasses.
The human printer, the `--json` writer, the progress file and the console are
all just consumers of the same stream.  Events round-trip through JSON
(`to_json` / `from_json`) so that a console attached to a headless run sees
exactly what the run emitted.

Names are past tense (what happened); each carries `at` (epoch seconds) and
the `run` id of the run that emitted it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Protocol

_REGISTRY: dict[str, type["Event"]] = {}


def _now() -> float:
    return time.time()


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events."""

    kind: ClassVar[str] = "event"
    run: str = ""
    at: float = field(default_factory=_now)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        kind = "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")
        cls.kind = kind
        _REGISTRY[kind] = cls

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.kind}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        """One line of JSON, whatever the names in it: the separators that some line readers
        split on besides "\\n" (U+0085, U+2028, U+2029) are escaped like control characters."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return text.translate(_LINE_BREAKERS) if _LINE_BREAKERS_RE.search(text) else text


_LINE_BREAKERS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
_LINE_BREAKERS_RE = re.compile("[\x85\u2028\u2029]")


def from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from `to_dict` output; unknown keys are ignored (forward compatible)."""
    kind = d.get("event")
    cls = _REGISTRY.get(kind or "")
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v = d[f.name]
            if isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
    return cls(**kwargs)


def from_json(line: str) -> Event:
    return from_dict(json.loads(line))


# --- run level -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """A verb began: `verb` is start/stop/…; `pid` the process running it."""

    verb: str
    pid: int = 0
    toolstack: str = ""
    parallel: int = 1
    config: str = ""
    stages: tuple[str, ...] = ()
    on_hangup: str = ""  # a run the console started: "continue" or "stop" when its terminal goes away


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """A verb ended with this LSB exit code."""

    verb: str
    exit_code: int
    summary: str = ""


@dataclass(frozen=True, kw_only=True)
class MessageLogged(Event):
    """A free-form line for the operator: level is info/warning/error."""

    level: str
    text: str
    guest: str = ""


@dataclass(frozen=True, kw_only=True)
class LockTaken(Event):
    path: str


@dataclass(frozen=True, kw_only=True)
class LockReleased(Event):
    path: str


@dataclass(frozen=True, kw_only=True)
class LockHeld(Event):
    """start found the lock present: nothing is touched."""

    path: str


# --- planning / selection ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GuestPlanned(Event):
    """A guest entered the run with the stages it will go through."""

    guest: str
    domid: int = -1
    stages: tuple[str, ...] = ()
    memory_mib: int = 0
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class GuestSkipped(Event):
    """A guest left out of the run (not in auto dir, already running, zombie, skipped by operator …)."""

    guest: str
    reason: str
    domid: int = -1


@dataclass(frozen=True, kw_only=True)
class TargetProbed(Event):
    """A migration target answered `xl info` before the stop (error set: it did not; it is left out).

    Emitted once the schedule is made, so that `at_once` is the cap its link's limiter uses:
    how many migrations to it run at once (0: no bound of its own, or not known; a
    progress file written before this field existed reads as 0)."""

    target: str
    free_mib: int = 0
    total_mib: int = 0
    reserve_mib: int = 0
    xen_version: str = ""
    error: str = ""
    at_once: int = 0


@dataclass(frozen=True, kw_only=True)
class GuestPlaced(Event):
    """A guest was given a migration target (target "": none can take it), at the start or later:
    re-placed after a failed migration, or moved by the operator (`by` "operator")."""

    guest: str
    target: str
    reason: str = ""
    memory_mib: int = 0
    by: str = "placement"


# --- stages ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    """A stage began for a guest (guest "" for host-wide stages like shutdown_all)."""

    stage: str
    guest: str = ""
    domid: int = -1
    timeout: float = 0.0  # watchdog seconds, 0 = none
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class StageFinished(Event):
    """A stage ended: outcome is done / failed / timeout / skipped / cancelled."""

    stage: str
    outcome: str
    guest: str = ""
    domid: int = -1
    elapsed: float = 0.0
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class StageDowngraded(Event):
    """The deadline (or lack of room) replaced a stage by a cheaper one."""

    guest: str
    from_stage: str
    to_stage: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class GuestScheduled(Event):
    """The scheduler's slot for a guest: the stage expected to end it, the resource it waits on
    ("disk", "link:HOST", "" for none), its place in that resource's queue, and its predicted
    start and finish in seconds after the per-guest stages begin."""

    guest: str
    stage: str
    resource: str = ""
    order: int = 0
    start: float = 0.0
    finish: float = 0.0
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ScheduleDeviated(Event):
    """A guest did not go as the schedule planned: another stage ended it, or it ended much later.

    planned: the stage the schedule chose; actual: the guest's outcome; the
    finish times are seconds after the per-guest stages began.
    """

    guest: str
    planned: str
    actual: str
    reason: str
    planned_finish: float = 0.0
    finish: float = 0.0


@dataclass(frozen=True, kw_only=True)
class GuestFinished(Event):
    """A guest's pipeline ended.

    outcome: migrated / saved / shutdown / restored / created / zombie /
    failed / skipped / destroyed / running.
    """

    guest: str
    outcome: str
    domid: int = -1
    elapsed: float = 0.0
    detail: str = ""


# --- boot order and readiness gates (xdcore.bootorder, xdcore.gates) -------------------


@dataclass(frozen=True, kw_only=True)
class GroupStarted(Event):
    """An order group began (start: ascending; stop: reverse).  `index` counts from 0 in run order."""

    verb: str
    index: int
    of: int
    label: str
    guests: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GateWaiting(Event):
    """A started guest's readiness gate is being waited for (`gate`: "ready" or "wait 30s")."""

    guest: str
    gate: str
    domid: int = -1
    timeout: float = 0.0  # XENDOMAINS_START_MAXWAIT, 0 = none
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class GateFinished(Event):
    """A gate ended: outcome "open" (ready), "timeout" (up, not ready) or "skipped"."""

    guest: str
    outcome: str
    elapsed: float = 0.0
    detail: str = ""


# --- commands ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CommandStarted(Event):
    """A toolstack command was spawned (guest/stage: the pipeline step it serves)."""

    argv: tuple[str, ...]
    pid: int = 0
    timeout: float = 0.0
    guest: str = ""
    stage: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandFinished(Event):
    """A toolstack command ended; returncode None means it was killed (watchdog/abort)."""

    argv: tuple[str, ...]
    returncode: int | None
    elapsed: float = 0.0
    stderr: str = ""
    guest: str = ""
    stage: str = ""


# --- operator control ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ControlApplied(Event):
    """An operator intervention took effect (skip stage/guest, abort, parallelism, a console's hangup …).

    `by` says who asked, as the control socket saw them: "uid 0 tty /dev/pts/3".
    """

    action: str
    guest: str = ""
    stage: str = ""
    value: str = ""
    by: str = ""


# --- consumers -------------------------------------------------------------------------


class EventSink(Protocol):
    def __call__(self, event: Event) -> None: ...


class EventBus:
    """Fan-out of events to any number of sinks; a failing sink never breaks the run."""

    def __init__(self, sinks: Iterable[EventSink] = (), run: str = "") -> None:
        self._sinks: list[EventSink] = list(sinks)
        self.run = run
        self.errors: list[BaseException] = []

    def subscribe(self, sink: EventSink) -> Callable[[], None]:
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink) if sink in self._sinks else None

    def emit(self, event: Event) -> Event:
        if self.run and not event.run:
            event = dataclasses.replace(event, run=self.run)
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception as exc:  # a broken consumer must not stop an evacuation
                self.errors.append(exc)
        return event


def event_kinds() -> dict[str, type[Event]]:
    return dict(_REGISTRY)
