"""Operator control of a run in progress: the interventions the console (and the
control socket of a headless run) offer.

`RunControl` is plain state plus a few methods, used from the event loop that
runs the pipeline.  The runner consults it before every stage and registers
the task of each running stage so that "skip the current stage of this guest"
can cancel exactly that command (its process tree is killed by the process
runner) and fall through to the next stage.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..events import ControlApplied, Event, GuestPlaced


class Limiter:
    """A semaphore whose size can change while tasks wait on it (parallelism knob)."""

    def __init__(self, limit: int | None):
        self.limit = limit if (limit and limit > 0) else None
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def set_limit(self, limit: int | None) -> None:
        self.limit = limit if (limit and limit > 0) else None
        self._wake()

    def _free(self) -> bool:
        return self.limit is None or self.active < self.limit

    def _wake(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._free():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._wake()

    async def __aenter__(self) -> "Limiter":
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RunControl:
    """Interventions: stage toggles, skip stage / guest, abort, parallelism, migrate target."""

    def __init__(self, parallel: int = 1, emit: Callable[[Event], object] | None = None):
        self.limiter = Limiter(parallel)
        self.stage_limiters: dict[str, Limiter] = {}
        self.disabled_stages: set[str] = set()
        self.skipped_guests: set[str] = set()
        self.only_guests: set[str] | None = None
        self.migrate_target: tuple[str, ...] | None = None
        self.placements: dict[str, str] = {}  # guest -> target the operator chose before the run (--place)
        self.pool = None  # the run's TargetPool (pipeline/targets.py) when it has several migration targets
        self.aborted = False
        self.abort_now = False
        self.abort_reason = "run aborted"
        self._running: dict[str, tuple[str, asyncio.Task[object]]] = {}
        self._skip_requested: set[tuple[str, str]] = set()
        self._emit = emit or (lambda e: None)
        self.on_hangup = ""  # set by a console-started run: "continue" or "stop" when its terminal goes away

    # -- queries used by the runner ------------------------------------------------

    @property
    def parallel(self) -> int:
        return self.limiter.limit or 0

    def stage_enabled(self, name: str) -> bool:
        return name not in self.disabled_stages

    def guest_skipped(self, guest: str) -> bool:
        return guest in self.skipped_guests

    def running_stage(self, guest: str) -> str | None:
        entry = self._running.get(guest)
        return entry[0] if entry else None

    # -- registration by the runner --------------------------------------------------

    def register(self, guest: str, stage: str, task: asyncio.Task[object]) -> None:
        self._running[guest] = (stage, task)
        if (guest, stage) in self._skip_requested or guest in self.skipped_guests or self.abort_now:
            task.cancel()

    def unregister(self, guest: str) -> None:
        self._running.pop(guest, None)

    def consume_skip(self, guest: str, stage: str) -> bool:
        """True (once) when the operator asked to skip this guest's stage."""
        key = (guest, stage)
        if key in self._skip_requested:
            self._skip_requested.discard(key)
            return True
        return False

    # -- interventions ---------------------------------------------------------------------

    # `by` says who asked ("uid 0 tty /dev/pts/3"): it is logged with the intervention

    def set_stage(self, name: str, enabled: bool, by: str = "") -> None:
        (self.disabled_stages.discard if enabled else self.disabled_stages.add)(name)
        self._emit(ControlApplied(action="enable_stage" if enabled else "disable_stage", stage=name, by=by))

    def skip_stage(self, guest: str, stage: str | None = None, by: str = "") -> bool:
        """Skip the stage `guest` is running now (or `stage` when it comes); it falls to the next."""
        running = self._running.get(guest)
        target = stage or (running[0] if running else None)
        if target is None:
            return False
        self._skip_requested.add((guest, target))
        if running and running[0] == target:
            running[1].cancel()
        self._emit(ControlApplied(action="skip_stage", guest=guest, stage=target, by=by))
        return True

    def skip_guest(self, guest: str, by: str = "") -> None:
        self.skipped_guests.add(guest)
        running = self._running.get(guest)
        if running:
            running[1].cancel()
        self._emit(ControlApplied(action="skip_guest", guest=guest, by=by))

    def set_parallel(self, n: int, by: str = "") -> None:
        self.limiter.set_limit(max(1, int(n)))
        self._emit(ControlApplied(action="set_parallel", value=str(self.limiter.limit), by=by))

    def set_migrate_target(self, words: tuple[str, ...] | None, by: str = "") -> None:
        self.migrate_target = words
        self._emit(ControlApplied(action="set_migrate_target", value=" ".join(words or ()), by=by))

    def move_guest(self, guest: str, target: str, by: str = "") -> str | None:
        """Send `guest` to another migration target (before its migration begins); an error, or None."""
        if self.pool is None:
            return "this run has no migration targets (XENDOMAINS_MIGRATE_TARGETS)"
        problem = self.pool.move(guest, target)
        if problem is None:
            need = self.pool.ledger.needs.get(guest)
            self._emit(GuestPlaced(guest=guest, target=target, reason="moved by the operator", by="operator",
                                   memory_mib=need.memory_mib if need else 0))
            self._emit(ControlApplied(action="move_guest", guest=guest, value=target, by=by))
        return problem

    def hangup(self, by: str = "") -> None:
        """The terminal of the console that started this run went away: logged, then continue or stop cleanly."""
        self._emit(ControlApplied(action="hangup", value=self.on_hangup or "continue", by=by))
        if self.on_hangup == "stop" and not self.aborted:
            self.abort(now=False, reason="the console that started the run hung up", by=by)

    def abort(self, now: bool = False, reason: str = "", by: str = "") -> None:
        """Start nothing new; with now=True also kill the commands running (their guests fall through to nothing).

        `reason` replaces "run aborted" in what the skipped guests say (e.g. "interrupted by SIGTERM").
        """
        if reason:
            self.abort_reason = reason
        self.aborted = True
        if now:
            self.abort_now = True
            for _, task in list(self._running.values()):
                task.cancel()
        self._emit(ControlApplied(action="abort_now" if now else "abort", by=by))
