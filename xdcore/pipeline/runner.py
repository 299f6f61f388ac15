"""Runs the stop and start stage tables over a set of guests.

One coroutine per guest walks the stage table (`stages.py`) in order; a
resizable limiter bounds how many guests run at once (XENDOMAINS_PARALLEL),
per-stage limiters bound shared resources (migrations share a link, saves a
disk), every migrate/save/shutdown runs under the watchdog (the process tree
is killed after XENDOMAINS_STOP_MAXWAIT), and a `RunControl` lets an operator
skip, abort or re-tune the run while it goes.  Every step is an event.

The actions of the stages live in `STOP_ACTIONS` — a table, like the stages.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import savedir
from ..config import Config
from ..errors import CommandFailed, CommandTimedOut, GuestLeftSuspended, ToolstackError, XendomainsError
from ..events import (
    CommandFinished,
    CommandStarted,
    EventBus,
    GroupStarted,
    GuestFinished,
    GuestPlaced,
    GuestPlanned,
    GuestScheduled,
    GuestSkipped,
    MessageLogged,
    ScheduleDeviated,
    StageDowngraded,
    StageFinished,
    StageStarted,
)
from ..bootorder import BootOrder
from ..model import Domain
from ..policy import Policies
from ..toolstack.port import Toolstack
from .control import Limiter, RunControl
from .schedule import Schedule, Task, plan_schedule
from .stages import STAGES as STAGES_BY_NAME
from .stages import STOP_GUEST_STAGES, Stage, stage
from .targets import TargetPool

#: how long a guest that shut down cleanly may stay listed shut down (`---s--`) before it is taken for one
#: without a toolstack monitor and destroyed (a monitor pauses it at once to destroy it, in well under this)
MONITOR_GRACE = 2.0
#: said when a guest's remains were destroyed because nothing else did
REMAINS_DESTROYED = "destroyed the remains because no toolstack monitor did"

#: the guest and stage the current task serves; read by the command observer
current_step: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("current_step", default=("", ""))


@dataclass
class GuestResult:
    """How one guest's pipeline ended."""

    guest: str
    domid: int
    outcome: str = "pending"  # migrated / saved / shutdown / zombie / failed / skipped / destroyed …
    detail: str = ""
    elapsed: float = 0.0
    stages: dict[str, str] = field(default_factory=dict)  # stage -> outcome

    @property
    def ok(self) -> bool:
        return self.outcome in ("migrated", "saved", "shutdown", "zombie", "destroyed", "restored", "created", "running")


def attach_command_events(toolstack: Toolstack, bus: EventBus) -> Callable[[], None]:
    """Turn the toolstack's command observer calls into CommandStarted/CommandFinished events
    (and its notices into warnings); returns the function that detaches them."""

    def observer(phase: str, argv: tuple[str, ...], pid_or_rc: int | None, secs: float, stderr: str) -> None:
        guest, st = current_step.get()
        if phase == "start":
            bus.emit(CommandStarted(argv=argv, pid=pid_or_rc or 0, timeout=secs, guest=guest, stage=st))
        else:
            bus.emit(CommandFinished(argv=argv, returncode=pid_or_rc, elapsed=secs, stderr=stderr[-2000:], guest=guest, stage=st))

    def notice(text: str) -> None:
        bus.emit(MessageLogged(level="warning", text=text))

    toolstack.observers.append(observer)
    toolstack.notice_listeners.append(notice)

    def detach() -> None:
        if observer in toolstack.observers:
            toolstack.observers.remove(observer)
        if notice in toolstack.notice_listeners:
            toolstack.notice_listeners.remove(notice)

    return detach


class Deadline:
    """The budget of a whole stop (XENDOMAINS_STOP_DEADLINE), if any."""

    def __init__(self, seconds: float | None, started: float | None = None):
        self.seconds = seconds
        self.started = started if started is not None else time.monotonic()

    def remaining(self) -> float | None:
        if not self.seconds:
            return None
        return self.seconds - (time.monotonic() - self.started)


Estimator = Callable[[str, Domain], float]
"""estimate(stage_name, domain) -> expected seconds (from measured throughputs)."""


class StopRunner:
    """Executes the per-guest stop stages (SysRq → Migrate → Save → Shutdown) for selected guests."""

    def __init__(
        self,
        cfg: Config,
        toolstack: Toolstack,
        bus: EventBus,
        control: RunControl,
        *,
        estimate: Estimator | None = None,
        deadline: Deadline | None = None,
        no_room: frozenset[str] = frozenset(),
        policies: Policies | None = None,
        order: BootOrder | None = None,
        pool: TargetPool | None = None,
    ):
        self.cfg, self.ts, self.bus, self.control = cfg, toolstack, bus, control
        self.policies = policies or Policies()  # per-guest stop stages, shutdown watchdog, priority
        self.order = order  # stop groups (reverse boot order); None or trivial: all at once
        self.estimate = estimate
        self.deadline = deadline or Deadline(None)
        self.no_room = no_room  # guests the plan found no room to save: save is skipped for them
        self.schedule: Schedule | None = None
        self._t0 = time.monotonic()
        self.pool = pool  # several migration targets: placement, one link per target
        self._target: dict[str, str] = {}  # guest -> the target of its migration in progress
        self._notes: dict[str, str] = {}  # guest -> what its GuestFinished says beside a plain outcome
        # with several targets XENDOMAINS_PARALLEL_MIGRATE bounds each target's link (TargetPool), not the sum
        migrate_cap = None if pool is not None else cfg.parallel_migrate
        for name, cap in (("migrate", migrate_cap), ("save", cfg.parallel_save)):
            control.stage_limiters.setdefault(name, Limiter(cap))
        self.shutdown_opts, notes = toolstack.translate_shutdown_options(cfg.shutdown)
        for n in notes:
            bus.emit(MessageLogged(level="info", text=n))
        self.migrate_words, notes = toolstack.translate_migrate_options(cfg.migrate)
        for n in notes:
            bus.emit(MessageLogged(level="info", text=n))

    # -- the stage actions (a table: stage name -> coroutine) ---------------------------

    async def _sysrq(self, d: Domain, timeout: float | None) -> str:
        for key in self.cfg.sysrq:
            await self.ts.sysrq(d.domid, key, timeout=timeout)
            if self.cfg.usleep_us:
                await asyncio.sleep(self.cfg.usleep_us / 1e6)
        return " ".join(self.cfg.sysrq)

    def _pooled(self) -> bool:
        """Several targets, and the operator has not sent every guest to one host."""
        return self.pool is not None and not self.control.migrate_target

    def _migrate_words(self, d: Domain) -> list[str]:
        if self.control.migrate_target:
            return self.ts.translate_migrate_options(self.control.migrate_target)[0]
        if self._pooled():
            assert self.pool is not None
            return list(self.pool.setup.words(self._target[d.name]))
        return list(self.migrate_words)

    def _migrate_host(self, d: Domain) -> str:
        """The host a migration of `d` goes to (for events and the report)."""
        if self._pooled():
            return self._target.get(d.name, "")
        from ..toolstack.xl import split_migrate_words

        return split_migrate_words(self._migrate_words(d), getattr(self.ts, "migrate_arg_options", frozenset()))[1] or ""

    async def _migrate(self, d: Domain, timeout: float | None) -> str:
        words = self._migrate_words(d)
        await self.ts.migrate(d.domid, words, timeout=timeout)
        return " ".join(words)

    async def _save(self, d: Domain, timeout: float | None) -> str:
        """Journal the save, let xl write the partial file, then decide its fate from facts.

        Success: fsync, rename to the final name, fsync the directory, clear the
        journal.  Failure: list the domains and settle (a resumed guest's partial
        is removed, a guest left suspended is said so and its partial kept in the
        quarantine).  Cancelled (abort --now, a second signal): the journal stays
        and the next verb settles it once xl is gone.
        """
        assert self.cfg.save_dir is not None
        save_dir = self.cfg.save_dir
        entry, notes = savedir.begin_save(save_dir, d.name, d.domid, d.uuid)
        for n in notes:
            self.bus.emit(MessageLogged(level="warning", guest=d.name, text=n))
        partial = str(entry.partial)

        def spawned(phase: str, argv: tuple[str, ...], pid: int | None, *_: object) -> None:
            nonlocal entry
            if phase == "start" and pid and partial in argv:
                entry = savedir.record_xl(entry, pid)

        self.ts.observers.insert(0, spawned)  # journaled before anyone hears of the command
        try:
            await self.ts.save(d.domid, entry.partial, timeout=timeout)
        except ToolstackError as exc:
            fate = await self._settle_failed_save(d, entry)
            if fate.action == "promoted":
                self.bus.emit(MessageLogged(level="warning", guest=d.name, text=fate.detail))
                return str(entry.final)
            if fate.action == "suspended":
                why = "killed by the watchdog" if isinstance(exc, CommandTimedOut) else _describe(exc)
                raise GuestLeftSuspended(f"save {why}; {fate.detail}") from exc
            if fate.action in ("quarantined", "failed"):
                self.bus.emit(MessageLogged(level="error", guest=d.name, text=fate.detail))
            raise
        except asyncio.CancelledError as cancelled:  # skipped or aborted: xl was killed; settle now if we still can
            try:
                fate = await self._settle_failed_save(d, entry)
            except BaseException:  # torn down: the journal stays, the next verb settles it
                raise cancelled from None
            if fate.action == "suspended":  # no stage after this can reach a suspended guest
                raise GuestLeftSuspended(f"save cancelled; {fate.detail}") from cancelled
            if fate.action not in ("removed", "cleared"):
                self.bus.emit(MessageLogged(level="error" if fate.loud else "warning", guest=d.name, text=fate.detail))
            raise
        finally:
            if spawned in self.ts.observers:
                self.ts.observers.remove(spawned)
        try:
            final, notes = savedir.finish_save(entry)
        except OSError as exc:  # the guest is gone; its image is safe under the partial name, journaled
            raise XendomainsError(f"saved {d.name} to {entry.partial} but could not rename it to {entry.final}: "
                                  f"{exc.strerror or exc}; the next start or stop promotes it") from exc
        for n in notes:
            self.bus.emit(MessageLogged(level="warning", guest=d.name, text=n))
        return str(final)

    async def _settle_failed_save(self, d: Domain, entry: savedir.SaveEntry) -> savedir.Settled:
        try:
            domains: list[Domain] | None = await self.ts.list_domains()
        except ToolstackError:
            domains = None
        try:
            fate = savedir.settle_one(self.cfg.save_dir, d.name, d.uuid, entry.partial, entry.final,  # type: ignore[arg-type]
                                      domains, journaled=True)
        except OSError as exc:
            return savedir.Settled(d.name, "failed", entry.partial, f"cannot settle the failed save of {d.name}: {exc}")
        savedir.clear_entry(entry)
        return fate

    async def _shutdown(self, d: Domain, timeout: float | None) -> str:
        await self.ts.shutdown(d.domid, self.shutdown_opts, timeout=timeout)
        note = await self.destroy_remains(d, timeout)
        if note:
            self._notes[d.name] = f"shut down; {note}"
        return " ".join(self.shutdown_opts) + (f"; shut down; {note}" if note else "")

    async def _now(self, d: Domain) -> Domain | None:
        """The domain `d` is now (same domid, and the same UUID or name), None when it is gone."""
        for cur in await self.ts.list_domains():
            if cur.domid == d.domid:
                same = cur.uuid == d.uuid if (cur.uuid and d.uuid) else cur.name == d.name
                return cur if same else None
        return None

    async def destroy_remains(self, d: Domain, timeout: float | None, grace: float = MONITOR_GRACE) -> str:
        """A guest that shut down cleanly and stays listed `---s--` has no toolstack monitor to destroy it
        (real xl 4.17: the `xl create` that applies on_poweroff exits when a save suspends the guest, so a
        guest a failed save resumed has none): it is powered off, only its remains hold memory and its name,
        and `xl shutdown --all --wait` would wait on it until its watchdog.  Wait `grace` seconds for a
        monitor to take it (it pauses it at once), then `destroy` it.  Returns what was done ("" if nothing:
        it went away, or it runs on — a shutdown without --wait)."""
        until = time.monotonic() + grace
        while True:
            try:
                cur = await self._now(d)
            except ToolstackError:
                return ""  # cannot tell: leave it (shutdown-all and the next run see it)
            if cur is None or not cur.powered_off:
                return ""
            if time.monotonic() >= until:
                break
            await asyncio.sleep(min(0.25, max(0.0, until - time.monotonic())))
        try:
            await self.ts.destroy(d.domid, timeout=timeout)
        except ToolstackError as exc:
            try:
                if await self._now(d) is None:
                    return ""  # a monitor got there first
            except ToolstackError:
                pass
            msg = f"{d.name} shut down, but its remains ({cur.state.flags if cur.state else ''}) could not be destroyed: {_describe(exc)}"
            self.bus.emit(MessageLogged(level="warning", guest=d.name, text=msg))
            return f"its remains could not be destroyed ({_describe(exc)})"
        self.bus.emit(MessageLogged(level="warning", guest=d.name, text=f"{d.name}: shut down; {REMAINS_DESTROYED}"))
        return REMAINS_DESTROYED

    async def _destroy(self, d: Domain, timeout: float | None) -> str:
        await self.ts.destroy(d.domid, timeout=timeout)
        return "destroy"

    def _actions(self) -> dict[str, Callable[[Domain, float | None], Awaitable[str]]]:
        return {"sysrq": self._sysrq, "migrate": self._migrate, "save": self._save,
                "shutdown": self._shutdown, "destroy": self._destroy}

    # -- deadline ---------------------------------------------------------------------------

    def _watchdog(self, st: Stage, d: Domain | None = None) -> float | None:
        t = float(self.cfg.stop_maxwait) if (st.watchdog and self.cfg.stop_maxwait) else None
        down = self.policies[d.name].down_wait if d is not None else None
        if st.name == "shutdown" and down:  # xendomains_down_wait: this guest's own shutdown watchdog
            t = down
        rem = self.deadline.remaining()
        if rem is not None and st.watchdog:
            rem = max(rem, 1.0)
            t = rem if t is None else min(t, rem)
        return t

    def _fits(self, st: Stage, d: Domain) -> bool:
        rem = self.deadline.remaining()
        if rem is None or self.estimate is None:
            return True
        return self.estimate(st.name, d) <= rem

    # -- one guest ------------------------------------------------------------------------------

    def stages_for(self, d: Domain) -> list[Stage]:
        """The guest's stop stages: those enabled (config, operator, room to save), in the order and
        among the stages its policy allows (`xendomains_stop`)."""
        enabled = []
        for st in STOP_GUEST_STAGES:
            if not st.is_enabled(self.cfg) or not self.control.stage_enabled(st.name):
                continue
            if st.name == "save" and d.name in self.no_room:
                continue
            if st.name == "migrate" and self._pooled() and self.pool.target_of(d.name) is None:  # type: ignore[union-attr]
                continue  # no target can take it: on down its pipeline
            enabled.append(st.name)
        return [stage(n) for n in self.policies[d.name].stop_order(enabled)]

    # -- the schedule ---------------------------------------------------------------------------

    def _faults_of(self, d: Domain, stages: Sequence[str]) -> tuple[tuple[tuple[str, float], ...], ...]:
        """(hang, delay) of `d`'s stages as the host says (Estimator.fault_of: a simulated host's faults): a
        stage that hangs lasts until its watchdog (none: not modelled), a delayed one that much longer."""
        fault_of = getattr(self.estimate, "fault_of", None)
        hang: list[tuple[str, float]] = []
        delay: list[tuple[str, float]] = []
        for s in stages if fault_of is not None else ():
            kind, seconds = fault_of(s, d) or ("", 0.0)
            watchdog = self._watchdog(STAGES_BY_NAME[s], d) if s in STAGES_BY_NAME else None
            if kind == "hang" and watchdog:
                hang.append((s, watchdog))
            elif kind == "delay" and seconds > 0:
                delay.append((s, seconds))
        return tuple(hang), tuple(delay)

    def make_schedule(self, guests: Sequence[Domain]) -> Schedule | None:
        """The schedule for `guests` (XENDOMAINS_SCHEDULE=auto and an estimator that models the host), else None."""
        model_of = getattr(self.estimate, "model", None)
        if model_of is None:
            return None
        listing = self.cfg.schedule != "auto"  # predicted only: listing order, caps as configured
        from ..plan import migrate_target

        words = self.control.migrate_target or self.migrate_words
        tasks = []
        for d in guests:
            if d.zombie or d.powered_off or d.suspended:  # no command (zombie, suspended), or only its remains destroyed
                continue
            stages = tuple(s.name for s in self.stages_for(d) if s.terminal)
            prio = self.policies[d.name].priority
            placed = (self.pool.target_of(d.name) or "") if self._pooled() else ""  # type: ignore[union-attr]
            hang, delay = self._faults_of(d, stages)
            tasks.append(Task(d.name, float(max(d.memory_mib, 1)), stages, prio, placed, hang, delay))
        caps = {"disk": self.cfg.parallel_save, f"link:{migrate_target(words)}": self.cfg.parallel_migrate}
        for t in tasks:  # several targets: XENDOMAINS_PARALLEL_MIGRATE bounds each target's link
            if t.target:
                caps[f"link:{t.target}"] = self.cfg.parallel_migrate
        lanes = self.control.parallel or None
        if listing:
            caps = {res: c or lanes or max(1, len(tasks)) for res, c in caps.items()}
        sequential = lanes == 1 and not self.deadline.seconds
        deadline = self.deadline.remaining() if self.deadline.seconds and not listing else None
        model = model_of()

        def one(sub: list[Task], dl: float | None) -> Schedule:
            return plan_schedule(model, sub, target=migrate_target(words), caps=caps, deadline=dl,
                                 keep_order=sequential or listing, lanes=lanes)

        if self.order is None or len(self.order.groups) <= 1:
            return one(tasks, deadline)
        # stop groups run one after the other: a schedule per group, each starting when the previous ends
        slots: list = []
        chosen: dict[str, int] = {}
        notes: list[str] = []
        offset = 0.0
        left = {t.guest: t for t in tasks}
        groups = [[left.pop(n) for n in g.guests if n in left] for g in self.order.stop_groups()] + [[]]
        groups[-1] = list(left.values())
        for sub in (g for g in groups if g):
            sch = one(sub, None if deadline is None else max(0.0, deadline - offset))
            slots += [replace(sl, start=round(sl.start + offset, 3), finish=round(sl.finish + offset, 3)) for sl in sch.slots]
            for res, c in sch.caps.items():
                chosen[res] = max(chosen.get(res, 0), c)
            notes += [n for n in sch.notes if n not in notes]
            offset += sch.makespan
        return Schedule(tuple(slots), chosen, round(offset, 3), deadline, tuple(notes))

    def _follow(self, sched: Schedule) -> None:
        """Apply the schedule's concurrency to the stages whose cap is auto (with several targets, to each
        target's link limiter: migrations to one target are bounded like its link)."""
        for res, c in sched.caps.items():
            name = "save" if res == "disk" else "migrate"
            if name == "migrate" and self.pool is not None:
                continue  # several targets: each target's link has its own limiter (TargetPool), below
            configured = self.cfg.parallel_save if name == "save" else self.cfg.parallel_migrate
            lim = self.control.stage_limiters.get(name)
            if configured is None and lim is not None:
                lim.set_limit(c)
        if self.pool is not None and self.cfg.parallel_migrate is None:
            self.pool.follow_schedule(sched.caps)

    def _planned_skip(self, d: Domain, st: Stage) -> str | None:
        """Why the schedule skips this terminal stage for `d` (it planned a later one), else None."""
        slot = self.schedule.slot(d.name) if self.schedule else None
        if slot is None or not slot.stage or not st.terminal or st.name == slot.stage:
            return None
        names = [s.name for s in self.stages_for(d)]
        if slot.stage in names and names.index(st.name) < names.index(slot.stage):
            return slot.reason or f"the schedule puts {d.name} on {slot.stage}"
        return None

    def _check_plan(self, d: Domain, res: GuestResult) -> None:
        """ScheduleDeviated when a guest ended otherwise, or much later, than its slot said."""
        slot = self.schedule.slot(d.name) if self.schedule else None
        if slot is None or not slot.stage:
            return
        planned = STAGES_BY_NAME[slot.stage].outcome
        finished = time.monotonic() - self._t0
        if res.outcome != planned:
            why = res.detail or ", ".join(f"{k} {v}" for k, v in res.stages.items() if v != "done") or res.outcome
            self.bus.emit(ScheduleDeviated(guest=d.name, planned=slot.stage, actual=res.outcome,
                                           planned_finish=slot.finish, finish=round(finished, 3),
                                           reason=f"planned {slot.stage}, ended {res.outcome}: {why}"))
        elif finished > slot.finish * 1.25 + 2.0:
            self.bus.emit(ScheduleDeviated(
                guest=d.name, planned=slot.stage, actual=res.outcome, planned_finish=slot.finish,
                finish=round(finished, 3),
                reason=f"finished at {finished:.1f}s, planned {slot.finish:.1f}s: {slot.resource or slot.stage} "
                       "slower than estimated (or stages before it took longer)"))

    async def run_guest(self, d: Domain) -> GuestResult:
        """Walk the stage table for one guest; always ends with exactly one GuestFinished."""
        res = GuestResult(d.name, d.domid)
        await self.control.limiter.acquire()
        t0 = time.monotonic()  # the guest's own time, not its wait for a free slot
        try:
            if self.control.aborted or self.control.guest_skipped(d.name):
                res.outcome = "skipped"
                res.detail = self.control.abort_reason if self.control.aborted else "skipped by operator"
                self.bus.emit(GuestSkipped(guest=d.name, domid=d.domid, reason=res.detail))
            elif d.zombie:
                res.outcome, res.detail = "zombie", (f"domain {d.domid} " if d.nameless else "") + f"{d.going}: no migrate, save or shutdown"
            elif d.powered_off:  # shut down before this run, and nobody destroyed it
                await self._reap(d, res)
            elif d.suspended:
                res.outcome = "suspended"
                res.detail = (f"SUSPENDED ({d.state.flags if d.state else ''}), not running: an earlier save did not finish; "
                              f"no command sent; see `xendomains resume {d.name}`")
                self.bus.emit(MessageLogged(level="error", guest=d.name, text=f"{d.name}: {res.detail}"))
            else:
                await self._walk(d, res)
        finally:
            self.control.limiter.release()
        if res.outcome == "shutdown" and not res.detail and d.name in self._notes:
            res.detail = self._notes.pop(d.name)
        res.elapsed = time.monotonic() - t0
        self.bus.emit(GuestFinished(guest=d.name, domid=d.domid, outcome=res.outcome, elapsed=res.elapsed, detail=res.detail))
        if res.outcome not in ("skipped",):
            self._check_plan(d, res)
        return res

    async def _reap(self, d: Domain, res: GuestResult) -> None:
        """A guest found shut down (`---s--`): powered off already, no command reaches it — its remains are
        destroyed (after the monitor's grace) and it counts as shut down."""
        st = stage("shutdown")
        self.bus.emit(StageStarted(stage="shutdown", guest=d.name, domid=d.domid, detail="already shut down"))
        t0 = time.monotonic()
        note = await self.destroy_remains(d, self._watchdog(st, d))
        detail = f"already shut down ({d.state.flags if d.state else ''})" + (f"; {note}" if note else "")
        self.bus.emit(StageFinished(stage="shutdown", guest=d.name, domid=d.domid, outcome="done",
                                    elapsed=time.monotonic() - t0, detail=detail))
        res.stages["shutdown"] = "done"
        res.outcome, res.detail = "shutdown", detail

    async def _walk(self, d: Domain, res: GuestResult) -> None:
        try:
            await self._walk_stages(d, res)
        except _GuestStopped:  # skipped or aborted-now while a stage ran: res already says so
            pass

    async def _walk_stages(self, d: Domain, res: GuestResult) -> None:
        actions = self._actions()
        done_names: set[str] = set()
        while True:
            # re-read the table each step: the operator may toggle stages mid-run
            todo = [s for s in self.stages_for(d) if s.name not in done_names]
            if not todo:
                break
            st = todo[0]
            done_names.add(st.name)
            if self.control.aborted:  # start nothing new; what is done stays done
                res.outcome, res.detail = "skipped", self.control.abort_reason
                return
            if self.control.guest_skipped(d.name):
                res.outcome, res.detail = "skipped", "skipped by operator"
                return
            why_not = self._planned_skip(d, st)
            if why_not is not None:
                nxt = next((s for s in todo[1:] if s.terminal), None)
                self.bus.emit(StageDowngraded(guest=d.name, from_stage=st.name, to_stage=nxt.name if nxt else "",
                                              reason=f"schedule: {why_not}"))
                res.stages[st.name] = "skipped"
                continue
            if self.control.consume_skip(d.name, st.name):
                self.bus.emit(StageFinished(stage=st.name, guest=d.name, domid=d.domid, outcome="skipped", detail="skipped by operator"))
                res.stages[st.name] = "skipped"
                continue
            if st.terminal and not self._fits(st, d):
                nxt = next((s for s in todo[1:] if s.terminal), None)
                rem = self.deadline.remaining() or 0.0
                if nxt is not None:
                    self.bus.emit(StageDowngraded(guest=d.name, from_stage=st.name, to_stage=nxt.name,
                                                  reason=f"deadline: {st.name} needs about {self.estimate(st.name, d):.0f}s, {rem:.0f}s left"))  # type: ignore[misc]
                    res.stages[st.name] = "skipped"
                    continue
                if rem <= 0:  # the last graceful stage and no time at all: nothing graceful can run
                    res.stages[st.name] = "skipped"
                    break
                # the last graceful stage is tried with what time remains (its watchdog is capped)
            ok = await self._run_stage(st, d, res, actions)
            if ok and st.terminal:
                res.outcome = st.outcome
                return
            if not ok and st.name == "migrate" and self._pooled() and self.pool.target_of(d.name):  # type: ignore[union-attr]
                done_names.discard("migrate")  # re-placed on another target: migrate again before falling back
        if res.outcome == "pending" and self.deadline.seconds and self.cfg.destroy_on_deadline:
            last = next((k for k in reversed(res.stages) if k != "sysrq"), "shutdown")
            self.bus.emit(StageDowngraded(guest=d.name, from_stage=last, to_stage="destroy",
                                          reason="deadline: nothing graceful worked in time; XENDOMAINS_DESTROY_ON_DEADLINE=true"))
            if await self._run_stage(stage("shutdown"), d, res, actions, override="destroy"):
                res.outcome, res.detail = "destroyed", "deadline: destroyed as a last resort"
                return
        if res.outcome == "pending":
            res.outcome = "failed"
            failed = [f"{k} {v}" for k, v in res.stages.items() if v not in ("done",)]
            res.detail = ", ".join(failed) or "no stage could handle it (migrate, save and shutdown all disabled)"

    async def _run_stage(self, st: Stage, d: Domain, res: GuestResult, actions, override: str | None = None) -> bool:
        name = override or st.name
        target = None
        if name == "migrate" and self._pooled():
            assert self.pool is not None
            target = await self.pool.begin(d.name)  # a free slot on its target's link
            if target is None:
                res.stages[name] = "skipped"
                self.bus.emit(StageFinished(stage=name, guest=d.name, domid=d.domid, outcome="skipped",
                                            detail="no migration target can take it"))
                return False
            self._target[d.name] = target
        ok = False
        try:
            ok = await self._run_stage_body(st, d, res, actions, name)
            return ok
        finally:
            if target is not None:
                assert self.pool is not None
                cancelled = res.stages.get(name) not in ("failed", "timeout")
                decision = self.pool.end(d.name, target, ok, replace=not cancelled)
                self._target.pop(d.name, None)
                if decision is not None:
                    self.bus.emit(GuestPlaced(guest=d.name, target=decision.target, reason=decision.reason,
                                              memory_mib=d.memory_mib, by="re-placed"))
                    nxt = (f"re-placed on {decision.target}" if decision.target
                           else f"no other target can take it ({decision.reason}); falls back to {st.fallback}")
                    self.bus.emit(MessageLogged(level="warning", guest=d.name, text=f"{d.name}: {nxt}"))

    async def _run_stage_body(self, st: Stage, d: Domain, res: GuestResult, actions, name: str) -> bool:
        override = name if name != st.name else None
        timeout = self._watchdog(st, d)
        cap = self.control.stage_limiters.get(name)
        if cap is not None:
            await cap.acquire()
        try:
            detail = self._migrate_host(d) if name == "migrate" else ""
            self.bus.emit(StageStarted(stage=name, guest=d.name, domid=d.domid, timeout=timeout or 0.0, detail=detail))
            t0 = time.monotonic()
            token = current_step.set((d.name, name))
            task = asyncio.ensure_future(actions[name](d, timeout))
            current_step.reset(token)
            self.control.register(d.name, name, task)
            try:
                try:
                    await asyncio.wait({task})
                except asyncio.CancelledError:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise
            finally:
                self.control.unregister(d.name)
            elapsed = time.monotonic() - t0
            if task.cancelled():
                why = "skipped by operator" if (self.control.consume_skip(d.name, name) or self.control.guest_skipped(d.name)) else self.control.abort_reason
                res.stages[name] = "skipped"
                self.bus.emit(StageFinished(stage=name, guest=d.name, domid=d.domid, outcome="cancelled", elapsed=elapsed, detail=why))
                if self.control.guest_skipped(d.name) or self.control.abort_now:
                    res.outcome, res.detail = "skipped", why
                    raise _GuestStopped()
                return False
            exc = task.exception()
            if isinstance(exc, GuestLeftSuspended):
                word = ("timeout" if isinstance(exc.__cause__, CommandTimedOut)
                        else "cancelled" if isinstance(exc.__cause__, asyncio.CancelledError) else "failed")
                res.stages[name] = word
                self.bus.emit(StageFinished(stage=name, guest=d.name, domid=d.domid, outcome=word, elapsed=elapsed, detail=str(exc)))
                self.bus.emit(MessageLogged(level="error", guest=d.name, text=str(exc)))
                res.outcome, res.detail = "suspended", str(exc)
                raise _GuestStopped()
            if exc is None:
                res.stages[name] = "done"
                self.bus.emit(StageFinished(stage=name, guest=d.name, domid=d.domid, outcome="done", elapsed=elapsed, detail=task.result()))
                return True
            outcome = "timeout" if isinstance(exc, CommandTimedOut) else "failed"
            res.stages[name] = outcome
            detail = _describe(exc)
            self.bus.emit(StageFinished(stage=name, guest=d.name, domid=d.domid, outcome=outcome, elapsed=elapsed, detail=detail))
            fb = f"; falls back to {st.fallback}" if (st.fallback and name != "sysrq") else ""
            if name == "migrate" and self._pooled():
                fb = ""  # _run_stage says where it goes next: another target, or the fallback
            verb = "timed out" if outcome == "timeout" else "failed"
            self.bus.emit(MessageLogged(level="error", guest=d.name, text=f"{st.title if not override else 'Destroy'} of {d.name} {verb}: {detail}{fb}"))
            if not isinstance(exc, (XendomainsError, OSError)):
                raise exc
            return False
        finally:
            if cap is not None:
                cap.release()

    def _by_priority(self, guests: Sequence[Domain]) -> list[Domain]:
        """Under a deadline the guests with the highest `xendomains_priority` take the first slots (and so
        the time for their graceful stages); the order is otherwise kept."""
        if not self.deadline.seconds:
            return list(guests)
        return sorted(guests, key=lambda d: -self.policies[d.name].priority)

    def _ordered(self, guests: Sequence[Domain]) -> list[Domain]:
        """The order to start guests in: the schedule's when it is followed, else priority under a deadline."""
        if self.schedule is not None and self.cfg.schedule == "auto":
            rank = {g: i for i, g in enumerate(self.schedule.order())}
            return sorted(guests, key=lambda d: rank.get(d.name, len(rank)))
        return self._by_priority(guests)

    async def run(self, guests: Sequence[Domain], schedule: Schedule | None = None) -> list[GuestResult]:
        """Run every guest's pipeline; with a schedule, in its order and with its concurrency."""
        self._t0 = time.monotonic()
        self.schedule = schedule
        if schedule is not None and self.cfg.schedule == "auto":
            self._follow(schedule)
            guests = self._ordered(guests)
        if self.pool is not None:  # each target with the cap its link now has
            self.pool.announce(self.bus.emit)
        for slot in (schedule.slots if schedule else ()):
            self.bus.emit(GuestScheduled(guest=slot.guest, stage=slot.stage, resource=slot.resource, order=slot.order,
                                         start=slot.start, finish=slot.finish, reason=slot.reason))
        for d in guests:
            self.bus.emit(GuestPlanned(guest=d.name, domid=d.domid, memory_mib=d.memory_mib,
                                       stages=("zombie",) if d.zombie else ("shutdown",) if d.powered_off
                                       else tuple(s.name for s in self.stages_for(d))))
        if self.order is None or len(self.order.groups) <= 1:
            return list(await asyncio.gather(*(self.run_guest(d) for d in self._ordered(guests))))
        # stop groups: the reverse of the boot order; a group begins when the previous one is done
        by_name = {d.name: d for d in guests}
        results: dict[str, GuestResult] = {}
        groups = [g for g in self.order.stop_groups() if any(n in by_name for n in g.guests)]
        for i, g in enumerate(groups):
            members = [by_name[n] for n in g.guests if n in by_name]
            self.bus.emit(GroupStarted(verb="stop", index=i, of=len(groups), label=g.label,
                                       guests=tuple(d.name for d in members)))
            for r in await asyncio.gather(*(self.run_guest(d) for d in self._ordered(members))):
                results[r.guest] = r
        return [results[d.name] for d in guests if d.name in results]


class _GuestStopped(Exception):
    """Internal: the guest's pipeline ends now (skipped / aborted while a stage ran)."""


def _describe(exc: BaseException) -> str:
    """One line for the operator: the title, and the cause xl gave.

    xl's last stderr line is often generic ("Failed to save domain, resuming
    domain", "shutdown failed (rc=-9)"); the cause ("No space left on device",
    "guest didn't acknowledge control request") sits on an earlier error line.
    """
    if isinstance(exc, CommandFailed):
        lines = [ln.strip() for ln in exc.stderr.strip().splitlines() if ln.strip()]
        picked: list[str] = []
        causes = [ln for ln in lines if "error" in ln.lower() or "no space" in ln.lower()]
        for ln in ([causes[-1]] if causes else []) + (lines[-1:] if lines else []):
            if ln not in picked:
                picked.append(ln)
        return f"{exc.title}{': ' + ' / '.join(picked) if picked else ''}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{' (' + str(exc.filename) + ')' if exc.filename else ''}"
    return str(exc)


def _unlink_quietly(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
    except OSError:
        pass


__all__ = ["StopRunner", "GuestResult", "Deadline", "attach_command_events", "current_step"]
