"""The stop scheduler: which guest goes when, over which resource, how many at once.

An evacuation is bound by shared resources, not by the number of guests:
saves share the save directory's disk, migrations share the link to their
target, and each operation also has a fixed part (suspend, set-up) that uses
no bandwidth.  Given a model of the host (per-resource throughputs and fixed
costs, learned from earlier runs — `plan.Throughputs.model`), this module
chooses, for every guest, the stage expected to end it (migrate, save or
shutdown), the order in which each resource serves its guests and how many
it serves at once, and predicts when each guest finishes by playing the
schedule with the same fair-share rules the simulator obeys
(`xdcore.sim.physics`: pure, no I/O).

- Without a deadline: longest expected work first on every resource (the
  makespan), interleaved with the shortest so that the transfers sharing a
  resource never all end — and all restart — at once, and only as much concurrency per resource as still shortens it
  (``auto``: concurrency hides the fixed parts; beyond that, sharing a
  resource does not make it faster and makes live migrations re-send more).
- With a deadline: per-guest priority first, then the shortest work first
  (most guests end before the deadline); a guest whose migration would not
  finish in time goes to the disk instead when the disk can take it in time,
  so that link and disk work at once; a guest that fits nowhere is planned
  for shutdown.

Nothing here does I/O; the runner follows the `Schedule` and reports where
the run deviates from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..sim import physics

#: the stages that move a guest's memory over a shared resource
TRANSFER_STAGES = ("migrate", "save")
MAX_AUTO = 8
#: up to this many guests, each deadline placement is checked by playing the whole schedule
GREEDY_MAX = 64


@dataclass(frozen=True)
class HostModel:
    """What the scheduler knows of the host: MB/s per resource, fixed seconds per operation."""

    rates: Mapping[str, float]  # "disk", "link:HOST" -> MB/s
    fixed: Mapping[str, float]  # "save", "migrate", "restore" -> seconds outside the transfer
    shutdown_s: float = 15.0
    sysrq_s: float = 0.0
    default_link: float = 0.0  # MB/s of a link never measured (0: none known)

    def rate(self, res: str) -> float:
        r = float(self.rates.get(res) or 0.0)
        return r if r > 0 or not res.startswith("link:") else float(self.default_link)

    def resource(self, stage: str, target: str = "") -> str | None:
        if stage == "migrate":
            return physics.link(target)
        if stage in ("save", "restore"):
            return physics.DISK
        return None

    def alone(self, stage: str, memory_mib: float, target: str = "") -> float:
        """Seconds an operation takes with its resource to itself."""
        res = self.resource(stage, target)
        if res is None:
            return self.shutdown_s if stage == "shutdown" else 0.0
        rate = self.rate(res)
        return float(self.fixed.get(stage, 0.0)) + (memory_mib / rate if rate > 0 else 0.0)


@dataclass(frozen=True)
class Task:
    """One guest to schedule: its memory and the terminal stages it may use, in order."""

    guest: str
    memory_mib: float
    stages: tuple[str, ...]  # e.g. ("migrate", "save", "shutdown"); sysrq excluded
    priority: int = 0
    target: str = ""  # its own migration target (several targets, placed), else the schedule's
    #: what the host says of this guest beside the model (a simulated host's injected faults): stage -> seconds
    #: the stage hangs until its watchdog (`hang`, moving no memory), or is delayed by (`delay`)
    hang: tuple[tuple[str, float], ...] = ()
    delay: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Slot:
    """The schedule's decision for one guest."""

    guest: str
    stage: str  # the stage expected to end it ("" when none can)
    resource: str  # "disk", "link:HOST" or "" (no shared resource: shutdown)
    order: int  # position in its resource's queue (0 = first)
    start: float  # seconds after the start of the per-guest stages
    finish: float
    reason: str = ""  # why this stage and not the guest's first choice


@dataclass(frozen=True)
class Schedule:
    slots: tuple[Slot, ...]
    caps: Mapping[str, int]  # resource -> concurrency
    makespan: float
    deadline: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def slot(self, guest: str) -> Slot | None:
        return next((s for s in self.slots if s.guest == guest), None)

    def order(self) -> list[str]:
        """Guests in the order the runner should start them (by predicted start, then queue position)."""
        return [s.guest for s in sorted(self.slots, key=lambda s: (s.start, s.order))]


def _job(model: HostModel, t: Task, stage: str, target: str, sysrq: float) -> dict:
    target = t.target or target
    res = model.resource(stage, target) if stage in TRANSFER_STAGES else None
    sysrq += dict(t.delay).get(stage, 0.0)
    hang = dict(t.hang).get(stage)
    if hang is not None:  # holds its place (a lane, its resource's slot) until the watchdog, moving nothing
        return {"id": t.guest, "res": res, "mb": 0.0, "fixed": sysrq + hang}
    if res is None:
        return {"id": t.guest, "res": None, "mb": 0.0, "fixed": sysrq + model.alone(stage, t.memory_mib)}
    return {"id": t.guest, "res": res, "mb": float(t.memory_mib), "fixed": sysrq + float(model.fixed.get(stage, 0.0))}


def _play(model: HostModel, jobs: list[dict], caps: Mapping[str, int | None],
          lanes: int | None = None) -> dict[str, tuple[float, float]]:
    rates = {k: float(v) for k, v in model.rates.items()}
    for j in jobs:
        if j.get("res") and j["res"] not in rates:
            rates[j["res"]] = model.rate(j["res"])
    return physics.simulate(jobs, rates, {**caps, None: None}, lanes=lanes)


def auto_cap(model: HostModel, res: str, jobs: list[dict], limit: int = MAX_AUTO) -> int:
    """The smallest concurrency for `res` beyond which its queue no longer ends sooner (by > 1%)."""
    mine = [j for j in jobs if j["res"] == res]
    if len(mine) <= 1:
        return 1
    best_c, best = 1, physics.makespan(_play(model, mine, {res: 1}))
    for c in range(2, min(limit, len(mine)) + 1):
        span = physics.makespan(_play(model, mine, {res: c}))
        if span < best * 0.99:
            best_c, best = c, span
        else:
            break
    return best_c


def plan_schedule(model: HostModel, tasks: Sequence[Task], *, target: str = "",
                  caps: Mapping[str, int | None] | None = None, deadline: float | None = None,
                  sysrq_s: float = 0.0, keep_order: bool = False, lanes: int | None = None) -> Schedule:
    """Choose stage, order and concurrency per resource for `tasks`; predict each finish.

    caps: resource -> explicit concurrency (XENDOMAINS_PARALLEL_SAVE/_MIGRATE); a resource
    missing or None is chosen (auto).  keep_order: listing order, no diversion (what the
    classic order would do), for comparison and for PARALLEL=1.  lanes: the overall cap on
    guests in flight (XENDOMAINS_PARALLEL; None = no cap beyond the resources').
    """
    caps = dict(caps or {})
    stage_of: dict[str, str] = {}
    reason: dict[str, str] = {}
    for t in tasks:
        stage_of[t.guest] = t.stages[0] if t.stages else ""

    def jobs_for(order: Sequence[Task]) -> list[dict]:
        return [_job(model, t, stage_of[t.guest], target, sysrq_s) for t in order if stage_of[t.guest]]

    # concurrency per resource, chosen once over every guest that could use it
    could: list[dict] = []
    for t in tasks:
        for s in t.stages:
            if s in TRANSFER_STAGES:
                could.append(_job(model, t, s, target, sysrq_s))
    fixed_caps: dict[str, int] = {}
    for res in {j["res"] for j in could}:
        want = caps.get(res)
        fixed_caps[res] = int(want) if want else auto_cap(model, res, could)
        if lanes:
            fixed_caps[res] = max(1, min(fixed_caps[res], lanes))

    def choose_caps(jobs: list[dict]) -> dict[str, int]:
        return {res: c for res, c in fixed_caps.items() if any(j["res"] == res for j in jobs)}

    def work(t: Task) -> float:
        return model.alone(stage_of[t.guest] or "shutdown", t.memory_mib, t.target or target)

    if keep_order:
        order = list(tasks)
    elif deadline is None:
        order = _longest_first(tasks, work, lambda t: stage_of[t.guest] + (":" + t.target if stage_of[t.guest] == "migrate" else ""))
    else:
        order = sorted(tasks, key=lambda t: (-t.priority, work(t)))
    notes: list[str] = []
    if deadline is not None and not keep_order:
        # greedy: keep each guest (priority, then shortest first) where it still ends before the deadline
        kept: list[Task] = []
        # each placement is checked by playing the schedule so far (exact, O(n²) plays); past GREEDY_MAX
        # guests a resource's budget (its rate × the deadline) stands in for the play, then one play at the end
        budget = {r: model.rate(r) * deadline for r in fixed_caps}
        used: dict[str, float] = {}
        exact = len(tasks) <= GREEDY_MAX
        for t in order:
            options = [s for s in t.stages if s in TRANSFER_STAGES] + [s for s in t.stages if s not in TRANSFER_STAGES]
            first = t.stages[0] if t.stages else ""
            placed = False
            for s in options:
                stage_of[t.guest] = s
                if not exact:
                    res = model.resource(s, t.target or target) if s in TRANSFER_STAGES else None
                    alone = model.alone(s, t.memory_mib, t.target or target)
                    if res is None or (used.get(res, 0.0) + t.memory_mib <= budget.get(res, 0.0) and alone <= deadline):
                        if res is not None:
                            used[res] = used.get(res, 0.0) + t.memory_mib
                        ok = True
                    else:
                        ok = False
                else:
                    trial = jobs_for(kept + [t])
                    got = _play(model, trial, choose_caps(trial), lanes)
                    ok = all(got[k.guest][1] <= deadline for k in kept + [t]
                             if k.guest in got and _graceful(stage_of[k.guest]))
                if ok:
                    placed = True
                    if s != first:
                        reason[t.guest] = (f"{first} would not end before the {deadline:.0f}s deadline"
                                           f" ({s} does)" if s in TRANSFER_STAGES else
                                           f"no transfer ends before the {deadline:.0f}s deadline")
                    break
            if not placed:
                stage_of[t.guest] = next((s for s in t.stages if s not in TRANSFER_STAGES), first)
                reason[t.guest] = f"nothing ends before the {deadline:.0f}s deadline; tried last"
            kept.append(t)
        # what the deadline cannot save anyway goes last, in the order chosen
        order = [t for t in kept if t.guest not in reason or "tried last" not in reason[t.guest]] + \
                [t for t in kept if "tried last" in reason.get(t.guest, "")]
    jobs = jobs_for(order)
    chosen = choose_caps(jobs)
    played = _play(model, jobs, chosen, lanes)
    slots = []
    position: dict[str, int] = {}
    for t in order:
        s = stage_of[t.guest]
        res = model.resource(s, t.target or target) if s in TRANSFER_STAGES else None
        key = res or ""
        idx = position.get(key, 0)
        position[key] = idx + 1
        start, finish = played.get(t.guest, (0.0, 0.0))
        slots.append(Slot(t.guest, s, res or "", idx, round(start, 3), round(finish, 3), reason.get(t.guest, "")))
    span = physics.makespan(played)
    for res, c in sorted(chosen.items()):
        how = "as configured" if caps.get(res) else "auto: more at once would not end sooner"
        notes.append(f"{res}: {c} at a time ({how})")
    return Schedule(tuple(slots), chosen, round(span, 3), deadline, tuple(notes))


def restore_schedule(model: HostModel, images: Sequence[tuple[str, float]], lanes: int | None = None,
                     cap: int | None = None) -> Schedule:
    """Restores of (guest, MiB) images over the disk, in the order given: when each ends."""
    jobs = [{"id": g, "res": physics.DISK, "mb": float(max(mb, 1)), "fixed": float(model.fixed.get("restore", 0.0))}
            for g, mb in images]
    c = cap or auto_cap(model, physics.DISK, jobs)
    if lanes:
        c = max(1, min(c, lanes))
    played = _play(model, jobs, {physics.DISK: c}, lanes)
    slots = tuple(Slot(g, "restore", physics.DISK, i, round(played[g][0], 3), round(played[g][1], 3))
                  for i, (g, _) in enumerate(images))
    return Schedule(slots, {physics.DISK: c}, round(physics.makespan(played), 3), None,
                    (f"disk: {c} restores at a time",))


def _longest_first(tasks: Sequence[Task], work, resource_of) -> list[Task]:
    """Longest work first on every resource, interleaved with the shortest.

    The longest guest starts at once (it never becomes the tail), and the
    queue then alternates long and short: guests sharing a resource that
    start together and are alike in size end together, and if every slot is
    between two operations at the same instant (starting an `xl`, the fixed
    part) the resource idles.  Mixed sizes keep the ends staggered.  The
    resources' queues are merged round-robin (an overall cap serves them all).
    """
    groups: dict[str, list[Task]] = {}
    for t in sorted(tasks, key=lambda t: -work(t)):  # stable: listing order among equals
        groups.setdefault(resource_of(t), []).append(t)
    queues = []
    for g in groups.values():
        q: list[Task] = []
        while g:
            q.append(g.pop(0))
            if g:
                q.append(g.pop())
        queues.append(q)
    out: list[Task] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def _graceful(stage: str) -> bool:
    return stage in TRANSFER_STAGES


def lower_bound(model: HostModel, slots: Sequence[Slot], memory: Mapping[str, float]) -> float:
    """max(Σ bytes per resource / its rate, the longest single guest): no schedule ends sooner."""
    per: dict[str, float] = {}
    longest = 0.0
    for s in slots:
        if not s.resource:
            continue
        per[s.resource] = per.get(s.resource, 0.0) + memory[s.guest]
        longest = max(longest, model.alone(s.stage, memory[s.guest], s.resource.partition(":")[2]))
    return max([longest] + [mb / model.rate(r) for r, mb in per.items() if model.rate(r) > 0])


__all__ = ["HostModel", "Schedule", "Slot", "Task", "auto_cap", "lower_bound", "plan_schedule", "restore_schedule"]
