"""The stage board as data: one pure reducer, `reduce(board, event) -> board`.

The console draws the same board for a run it started (events live from the
run's EventBus) and for a headless run it follows (events read back from the
progress file), so the board must be a function of the events alone.  Values
are frozen; a step returns the very same object when the event changes
nothing, and keeps every untouched row object, so the widget can redraw only
rows whose identity changed.

Cell states: pending (planned, not reached), running, done, failed, timeout,
cancelled, skipped (by the operator, the deadline or an abort), unneeded
(planned but an earlier stage already ended the guest), off (not in this
guest's plan) and disabled (turned off by the operator mid-run).

Several runs may feed one board: the console can run "migrate these two now"
beside an evacuation it started.  A guest belongs to the run whose
GuestPlanned named it last; guest events from any other run are ignored, so a
late "skipped" from the first run cannot overwrite the second run's result.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from xdcore.events import (
    CommandFinished,
    CommandStarted,
    ControlApplied,
    Event,
    GateFinished,
    GateWaiting,
    GroupStarted,
    GuestFinished,
    GuestPlaced,
    GuestPlanned,
    GuestScheduled,
    GuestSkipped,
    RunFinished,
    RunStarted,
    TargetProbed,
    StageDowngraded,
    StageFinished,
    StageStarted,
)
from xdcore.model import NAMELESS
from xdcore.pipeline.stages import START_GUEST_STAGES, STOP_GUEST_STAGES

PENDING, RUNNING, DONE, FAILED, TIMEOUT = "pending", "running", "done", "failed", "timeout"
CANCELLED, SKIPPED, UNNEEDED, OFF, DISABLED = "cancelled", "skipped", "unneeded", "off", "disabled"
FINISHED_STATES = frozenset({DONE, FAILED, TIMEOUT, CANCELLED, SKIPPED, UNNEEDED})

_EMPTY: Mapping = MappingProxyType({})


def columns_for(verb: str) -> tuple[str, ...]:
    """The per-guest stage columns of a pipeline (the stage table is the source)."""
    table = START_GUEST_STAGES if verb == "start" else STOP_GUEST_STAGES
    return tuple(s.name for s in table)


@dataclass(frozen=True, slots=True)
class Cell:
    """One stage of one guest (or one host-level stage)."""

    status: str = OFF
    started: float | None = None
    elapsed: float | None = None
    timeout: float = 0.0
    detail: str = ""


def row_key(guest: str, domid: int) -> str:
    """A guest's row in the console's tables: its name; a nameless domain (every zombie and domain being torn
    down is "(null)" in `xl list`) by its domid, so that each has a row of its own."""
    return f"{NAMELESS} domid {domid}" if guest == NAMELESS and domid >= 0 else guest


@dataclass(frozen=True, slots=True)
class GuestRow:
    """One guest's line on the board (keyed by `key`)."""

    guest: str
    run: str = ""
    domid: int = -1
    memory_mib: int = 0
    planned: tuple[str, ...] = ()
    cells: Mapping[str, Cell] = field(default_factory=lambda: _EMPTY)
    running: str = ""  # the stage running now
    started: float | None = None
    finished: float | None = None
    elapsed: float | None = None
    outcome: str = ""  # GuestFinished outcome, "" while in progress
    detail: str = ""
    command_started: float | None = None  # the running command's start, for the watchdog countdown
    command_timeout: float = 0.0
    errors: tuple[tuple[str, str], ...] = ()  # (command, its whole stderr) of each command that failed
    group: int = -1  # its order group (GroupStarted.index), -1 before its group begins or without groups
    group_label: str = ""
    gate: str = ""  # readiness gate: "" none, "waiting", "ready", "not ready"
    gate_detail: str = ""

    @property
    def done(self) -> bool:
        return bool(self.outcome)

    @property
    def key(self) -> str:
        return row_key(self.guest, self.domid)

    def cell(self, stage: str) -> Cell:
        return self.cells.get(stage, Cell())

    def watchdog_left(self, now: float) -> float | None:
        """Seconds before the watchdog kills the running command; None when none is guarded."""
        if self.outcome or not self.running:
            return None
        if self.command_started is not None and self.command_timeout > 0:
            return self.command_started + self.command_timeout - now
        c = self.cells.get(self.running)
        if c and c.started is not None and c.timeout > 0:
            return c.started + c.timeout - now
        return None


@dataclass(frozen=True, slots=True)
class TargetView:
    """A migration target of the run (XENDOMAINS_MIGRATE_TARGETS): its room and what goes there."""

    name: str
    free_mib: int = 0
    room_left_mib: int = 0
    error: str = ""
    guests: tuple[tuple[str, int], ...] = ()  # (guest, MiB) placed on it
    in_flight: tuple[str, ...] = ()  # guests migrating to it now
    at_once: int = 0  # migrations to it at once, its link's cap (0: no bound of its own, or not known)


@dataclass(frozen=True, slots=True)
class BoardState:
    """A run (or runs) as the board shows it."""

    run: str = ""
    verb: str = ""
    pid: int = 0
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    summary: str = ""
    columns: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    rows: Mapping[str, GuestRow] = field(default_factory=lambda: _EMPTY)
    host: Mapping[str, Cell] = field(default_factory=lambda: _EMPTY)
    active_runs: frozenset[str] = frozenset()
    disabled: frozenset[str] = frozenset()
    parallel: int = 0
    aborted: bool = False
    migrate_target: str = ""
    lock_path: str = ""
    targets: Mapping[str, TargetView] = field(default_factory=lambda: _EMPTY)
    plan_origin: float | None = None  # when the per-guest stages began (the first GuestScheduled's `at`)
    plan_finish: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # guest -> predicted finish, s after origin

    @property
    def active(self) -> bool:
        return bool(self.active_runs)

    @property
    def empty(self) -> bool:
        return not self.run

    def progress(self) -> tuple[int, int]:
        """(guests finished, guests on the board)."""
        done = sum(1 for r in self.rows.values() if r.outcome)
        return done, len(self.rows)

    def remaining(self, now: float) -> float | None:
        """Seconds left by the plan's estimates: the latest predicted finish of the guests not yet done,
        minus the time since the per-guest stages began; never negative (0: running past the estimate).
        None when nothing is known: no schedule, the run is over, or every scheduled guest is done."""
        if not self.active or self.plan_origin is None:
            return None
        left = [f for g, f in self.plan_finish.items() if not ((r := self.rows.get(g)) is not None and r.outcome)]
        if not left:
            return None
        return max(0.0, self.plan_origin + max(left) - now)

    def outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows.values():
            if r.outcome:
                out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


EMPTY_BOARD = BoardState()


def _with_row(b: BoardState, row: GuestRow) -> BoardState:
    rows = dict(b.rows)
    key = row.key
    new = key not in rows
    rows[key] = row
    order = b.order + (key,) if new else b.order
    return dataclasses.replace(b, rows=MappingProxyType(rows), order=order)


def _with_cell(row: GuestRow, stage: str, cell: Cell, **kw: object) -> GuestRow:
    cells = dict(row.cells)
    cells[stage] = cell
    return dataclasses.replace(row, cells=MappingProxyType(cells), **kw)


def _row_for(b: BoardState, guest: str, run: str, domid: int = -1) -> GuestRow | None:
    """The guest's row if this event may touch it (same run), creating one for an unknown guest."""
    row = b.rows.get(row_key(guest, domid))
    if row is None:
        cells = {c: Cell(OFF) for c in b.columns}
        return GuestRow(guest, run=run, domid=domid, cells=MappingProxyType(cells))
    if row.run and run and row.run != run:
        return None
    return row


def _host_cell(b: BoardState, stage: str, cell: Cell) -> BoardState:
    host = dict(b.host)
    host[stage] = cell
    return dataclasses.replace(b, host=MappingProxyType(host))


def _close_pending(row: GuestRow, to: str) -> GuestRow:
    if not any(c.status in (PENDING, DISABLED) for c in row.cells.values()):
        return row
    cells = {k: (dataclasses.replace(c, status=to) if c.status in (PENDING, DISABLED) else c) for k, c in row.cells.items()}
    return dataclasses.replace(row, cells=MappingProxyType(cells))


def reduce(b: BoardState, e: Event) -> BoardState:
    """The board after `e` (the same object when `e` changes nothing on the board)."""
    out = _reduce(b, e)
    if isinstance(e, (TargetProbed, GuestPlaced)) or (
            isinstance(e, (StageStarted, StageFinished)) and e.stage == "migrate" and e.guest and out.targets):
        out = _targets(out, e)
    return out


def _targets(b: BoardState, e: Event) -> BoardState:
    """Several migration targets: their room (from the probe and each placement) and the migrations in flight."""
    ts = dict(b.targets)
    if isinstance(e, TargetProbed):
        ts[e.target] = TargetView(e.target, e.free_mib, max(0, e.free_mib - e.reserve_mib) if not e.error else 0, e.error,
                                  at_once=e.at_once)
    elif isinstance(e, GuestPlaced):
        mib = e.memory_mib
        for name, t in ts.items():  # give back the room it held elsewhere
            held = [m for g, m in t.guests if g == e.guest]
            if held:
                mib = mib or held[0]
                ts[name] = dataclasses.replace(t, guests=tuple(x for x in t.guests if x[0] != e.guest),
                                               room_left_mib=t.room_left_mib + held[0])
        t = ts.get(e.target)
        if t is not None:
            ts[e.target] = dataclasses.replace(t, guests=t.guests + ((e.guest, mib),), room_left_mib=t.room_left_mib - mib)
    elif isinstance(e, StageStarted):
        t = ts.get(e.detail)
        if t is None or e.guest in t.in_flight:
            return b
        ts[e.detail] = dataclasses.replace(t, in_flight=t.in_flight + (e.guest,))
    elif isinstance(e, StageFinished):
        hit = {n: t for n, t in ts.items() if e.guest in t.in_flight}
        if not hit:
            return b
        for n, t in hit.items():
            ts[n] = dataclasses.replace(t, in_flight=tuple(g for g in t.in_flight if g != e.guest))
    return dataclasses.replace(b, targets=MappingProxyType(ts))


def _reduce(b: BoardState, e: Event) -> BoardState:  # noqa: C901 - one table of cases, read top to bottom
    """The board after `e` (the same object when `e` changes nothing on the board)."""
    if isinstance(e, RunStarted):
        if b.active and e.run not in b.active_runs:  # a second run beside an active one: join it
            return dataclasses.replace(b, active_runs=b.active_runs | {e.run})
        return BoardState(run=e.run, verb=e.verb, pid=e.pid, started=e.at, columns=columns_for(e.verb),
                          active_runs=frozenset({e.run}), parallel=e.parallel)
    if b.empty and not isinstance(e, RunStarted):
        # events of a run whose start we did not see (attached mid-way to a truncated file): adopt it
        if isinstance(e, (GuestPlanned, StageStarted, GuestSkipped)):
            b = BoardState(run=e.run, verb="stop", columns=columns_for("stop"), active_runs=frozenset({e.run}), started=e.at)
        else:
            return b
    if isinstance(e, RunFinished):
        active = b.active_runs - {e.run}
        if e.run != b.run:  # a side run ended; the main run goes on
            return dataclasses.replace(b, active_runs=active)
        if active:
            return dataclasses.replace(b, active_runs=active, exit_code=e.exit_code, summary=e.summary)
        return dataclasses.replace(b, active_runs=frozenset(), finished=e.at, exit_code=e.exit_code, summary=e.summary)
    if isinstance(e, GuestScheduled):
        if e.run and b.run and e.run != b.run:  # a side run's schedule does not say when the main run ends
            return b
        plan = dict(b.plan_finish)
        plan[e.guest] = e.finish
        origin = b.plan_origin if b.plan_origin is not None else e.at
        return dataclasses.replace(b, plan_origin=origin, plan_finish=MappingProxyType(plan))
    if isinstance(e, GuestPlanned):
        old = b.rows.get(row_key(e.guest, e.domid))
        cells = {c: Cell(PENDING if c in e.stages else OFF) for c in b.columns}
        columns = b.columns
        for s in e.stages:
            if s not in cells and s != "zombie":
                cells[s] = Cell(PENDING)
                columns = columns + (s,)
        if old is not None and old.run == e.run:  # planned again in the same run (start: restore then create)
            merged = dict(old.cells)
            merged.update({k: v for k, v in cells.items() if v.status == PENDING})
            cells = merged
        row = GuestRow(e.guest, run=e.run, domid=e.domid, memory_mib=e.memory_mib, planned=e.stages,
                       cells=MappingProxyType(cells))
        return dataclasses.replace(_with_row(b, row), columns=columns)
    if isinstance(e, GuestSkipped):
        row = _row_for(b, e.guest, e.run, e.domid)
        if row is None:
            return b
        if row.outcome and row.outcome != "skipped":
            return b
        row = _close_pending(row, SKIPPED)
        row = dataclasses.replace(row, outcome="skipped", detail=e.reason, finished=e.at, running="",
                                  domid=e.domid if e.domid >= 0 else row.domid)
        return _with_row(b, row)
    if isinstance(e, StageStarted):
        if not e.guest:
            return _host_cell(b, e.stage, Cell(RUNNING, started=e.at, timeout=e.timeout, detail=e.detail))
        row = _row_for(b, e.guest, e.run)
        if row is None:
            return b
        columns = b.columns if e.stage in b.columns else b.columns + (e.stage,)
        row = _with_cell(row, e.stage, Cell(RUNNING, started=e.at, timeout=e.timeout, detail=e.detail),
                         running=e.stage, started=row.started if row.started is not None else e.at,
                         domid=e.domid if e.domid >= 0 else row.domid, command_started=None, command_timeout=0.0)
        return dataclasses.replace(_with_row(b, row), columns=columns)
    if isinstance(e, StageFinished):
        status = {"done": DONE, "failed": FAILED, "timeout": TIMEOUT, "skipped": SKIPPED, "cancelled": CANCELLED}.get(e.outcome, FAILED)
        if not e.guest:
            old = b.host.get(e.stage, Cell())
            return _host_cell(b, e.stage, Cell(status, started=old.started, elapsed=e.elapsed, timeout=old.timeout, detail=e.detail))
        row = _row_for(b, e.guest, e.run)
        if row is None:
            return b
        old = row.cell(e.stage)
        running = "" if row.running == e.stage else row.running
        row = _with_cell(row, e.stage, Cell(status, started=old.started, elapsed=e.elapsed, timeout=old.timeout, detail=e.detail),
                         running=running, command_started=None if not running else row.command_started)
        columns = b.columns if e.stage in b.columns else b.columns + (e.stage,)
        return dataclasses.replace(_with_row(b, row), columns=columns)
    if isinstance(e, StageDowngraded):
        row = _row_for(b, e.guest, e.run)
        if row is None:
            return b
        row = _with_cell(row, e.from_stage, Cell(SKIPPED, detail=f"→ {e.to_stage}: {e.reason}"))
        return _with_row(b, row)
    if isinstance(e, GuestFinished):
        row = _row_for(b, e.guest, e.run, e.domid)
        if row is None:
            return b
        row = _close_pending(row, SKIPPED if e.outcome in ("skipped", "failed") else UNNEEDED)
        row = dataclasses.replace(row, outcome=e.outcome, detail=e.detail, finished=e.at, elapsed=e.elapsed, running="",
                                  command_started=None, domid=e.domid if e.domid >= 0 else row.domid)
        return _with_row(b, row)
    if isinstance(e, CommandStarted):
        if not e.guest:
            return b
        row = b.rows.get(e.guest)
        if row is None or (row.run and e.run and row.run != e.run):
            return b
        return _with_row(b, dataclasses.replace(row, command_started=e.at, command_timeout=e.timeout))
    if isinstance(e, CommandFinished):
        row = b.rows.get(e.guest) if e.guest else None
        if row is None or (row.run and e.run and row.run != e.run):
            return b
        if e.returncode != 0:
            why = "killed" if e.returncode is None else f"exit {e.returncode}"
            row = dataclasses.replace(row, errors=row.errors + ((f"{shlex.join(e.argv)}  ({why})", e.stderr),))
        elif row.command_started is None:
            return b
        return _with_row(b, dataclasses.replace(row, command_started=None, command_timeout=0.0))
    if isinstance(e, GroupStarted):
        for g in e.guests:
            row = _row_for(b, g, e.run)
            if row is not None:
                b = _with_row(b, dataclasses.replace(row, group=e.index, group_label=e.label))
        # rows grouped by order: started groups first, in group order; the rest keep their place after them
        rank = {n: (b.rows[n].group if b.rows[n].group >= 0 else 1 << 30) for n in b.order}
        return dataclasses.replace(b, order=tuple(sorted(b.order, key=lambda n: rank[n])))
    if isinstance(e, (GateWaiting, GateFinished)):
        row = _row_for(b, e.guest, e.run)
        if row is None:
            return b
        if isinstance(e, GateWaiting):
            return _with_row(b, dataclasses.replace(row, gate="waiting", gate_detail=f"{e.gate} {e.detail}".strip()))
        word = {"open": "ready", "timeout": "not ready"}.get(e.outcome, e.outcome)
        return _with_row(b, dataclasses.replace(row, gate=word, gate_detail=e.detail))
    if isinstance(e, ControlApplied):
        return _control(b, e)
    return b


def _control(b: BoardState, e: ControlApplied) -> BoardState:
    if e.action in ("disable_stage", "enable_stage"):
        off = e.action == "disable_stage"
        disabled = (b.disabled | {e.stage}) if off else (b.disabled - {e.stage})
        rows = dict(b.rows)
        for name, row in b.rows.items():
            if row.outcome:
                continue
            c = row.cells.get(e.stage)
            if c is None:
                continue
            if off and c.status == PENDING:
                rows[name] = _with_cell(row, e.stage, dataclasses.replace(c, status=DISABLED))
            elif not off and c.status == DISABLED:
                rows[name] = _with_cell(row, e.stage, dataclasses.replace(c, status=PENDING))
        return dataclasses.replace(b, disabled=disabled, rows=MappingProxyType(rows))
    if e.action == "set_parallel":
        try:
            return dataclasses.replace(b, parallel=int(e.value))
        except ValueError:
            return b
    if e.action in ("abort", "abort_now"):
        return dataclasses.replace(b, aborted=True)
    if e.action == "set_migrate_target":
        return dataclasses.replace(b, migrate_target=e.value)
    return b


def reduce_all(b: BoardState, events: Iterable[Event]) -> BoardState:
    for e in events:
        b = reduce(b, e)
    return b


__all__ = [
    "BoardState", "Cell", "GuestRow", "EMPTY_BOARD", "reduce", "reduce_all", "columns_for", "row_key",
    "PENDING", "RUNNING", "DONE", "FAILED", "TIMEOUT", "CANCELLED", "SKIPPED", "UNNEEDED", "OFF", "DISABLED",
]
