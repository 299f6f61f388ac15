"""A plan before acting: what each guest will go through, why, how long, and room to save.

`xendomains plan` and the console's confirmation dialog show the same plan;
the stop run uses the same `guests_without_room` so that it does exactly
what the plan said.  Estimates come from throughputs measured in earlier
runs (a small JSON state file in the persistent report directory); before
the first run, from a simulated host's own latencies and bandwidths, else
from conservative defaults — and the plan says which (`estimate_source`:
measured, simulated or assumed).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import Config
from .fsutil import read_small, write_atomic
from .events import Event, GuestPlanned, RunFinished, StageFinished
from .model import Domain
from .pipeline.control import RunControl
from .pipeline.stages import STAGES, STOP_GUEST_STAGES
from .placement import TargetRoom

#: bytes reserved per image beyond the guest's memory (header, config, page tables)
IMAGE_OVERHEAD = 16 * 1024 * 1024
DEFAULTS = {"save_mbps": 250.0, "migrate_mbps": 110.0, "restore_mbps": 300.0, "shutdown_s": 15.0,
            "create_s": 5.0, "sysrq_s": 0.5}
#: the part of an operation that moves no memory (suspend, set-up, build), seconds
FIXED = {"save": 0.5, "migrate": 1.0, "restore": 0.5}


def migrate_target(words: Sequence[str]) -> str:
    """The host XENDOMAINS_MIGRATE names: its last word that is neither an option nor an option's argument."""
    host, skip = "", False
    for w in words:
        if skip:
            skip = False
        elif w in ("-s", "-C"):
            skip = True
        elif not w.startswith("-"):
            host = w
    return host


def _number(v: Any, positive: bool = False) -> bool:
    """A JSON number that is finite, below 1e12, and >= 1e-6 (positive) or >= 0.

    "Positive" has a floor: a subnormal speed such as 5e-324 MB/s is > 0 yet
    turns every division by it into an infinite estimate.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v < 1e12:
        return False
    return v >= 1e-6 if positive else v >= 0


@dataclass
class Throughputs:
    """Measured speeds (MB/s) and durations (s), smoothed over runs.

    Speeds are of resources, not of guests: `save_mbps` is what the save
    directory's disk writes, `restore_mbps` what it reads, `links[HOST]` what
    the link to a migration target carries (`migrate_mbps` for a target never
    measured) — learned from each run as the memory moved over the time the
    resource was busy, so that two saves sharing the disk teach its speed, not
    half of it.
    """

    save_mbps: float = DEFAULTS["save_mbps"]
    migrate_mbps: float = DEFAULTS["migrate_mbps"]
    restore_mbps: float = DEFAULTS["restore_mbps"]
    shutdown_s: float = DEFAULTS["shutdown_s"]
    create_s: float = DEFAULTS["create_s"]
    sysrq_s: float = DEFAULTS["sysrq_s"]
    samples: int = 0
    links: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=lambda: dict(FIXED))  # the part that moves no memory, s

    @classmethod
    def load(cls, path: Path | None) -> "Throughputs":
        if path is None:
            return cls()
        try:
            data = json.loads(read_small(path))
            if not isinstance(data, dict):
                return cls()
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            return cls()
        # each value on its own: finite and in range, else its default (a 0 or NaN speed must never reach a division)
        values: dict[str, Any] = {}
        for k, v in data.items():
            if k == "samples":
                if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31:
                    values[k] = v
            elif k in DEFAULTS and _number(v, positive=True):
                values[k] = float(v)
        links = data.get("links")
        values["links"] = ({str(k): float(v) for k, v in links.items() if _number(v, positive=True)}
                           if isinstance(links, dict) else {})
        fixed = data.get("fixed")
        values["fixed"] = {**FIXED, **({str(k): float(v) for k, v in fixed.items() if k in FIXED and _number(v)}
                                       if isinstance(fixed, dict) else {})}
        return cls(**values)

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=1))

    def link_mbps(self, target: str) -> float:
        return self.links.get(target, self.migrate_mbps)

    def estimate(self, stage: str, d: Domain, cfg: Config | None = None) -> float:
        """Seconds `stage` takes for `d` with its resource to itself."""
        mb = max(d.memory_mib, 1)
        if stage == "migrate":
            return mb / self.link_mbps(migrate_target(cfg.migrate) if cfg else "") + self.fixed["migrate"]
        if stage == "save":
            return mb / self.save_mbps + self.fixed["save"]
        if stage == "restore":
            return mb / self.restore_mbps + self.fixed["restore"]
        if stage == "shutdown":
            return self.shutdown_s
        if stage == "sysrq":
            n = len(cfg.sysrq) if cfg else 1
            return n * (self.sysrq_s + (cfg.usleep_us / 1e6 if cfg else 0.1))
        if stage == "create":
            return self.create_s
        return 0.0

    def model(self, cfg: Config | None = None, reading: bool = False):
        """The host as the scheduler sees it (pipeline.schedule.HostModel): rates per resource, fixed costs.

        reading: the disk as restores use it (its read speed) rather than saves.
        """
        from .pipeline.schedule import HostModel

        rates = {"disk": self.restore_mbps if reading else self.save_mbps}
        target = migrate_target(cfg.migrate) if cfg else ""
        for host, mbps in self.links.items():
            rates[f"link:{host}"] = mbps
        if target:
            rates[f"link:{target}"] = self.link_mbps(target)
        sysrq = self.estimate("sysrq", Domain(-1, ""), cfg) if (cfg and cfg.sysrq) else 0.0
        return HostModel(rates, dict(self.fixed), shutdown_s=self.shutdown_s, sysrq_s=sysrq,
                         default_link=self.migrate_mbps)

    def observe(self, stage: str, memory_mib: int, elapsed: float) -> None:
        """Fold one measured duration (shutdown, create, sysrq) into the averages (exponential smoothing)."""
        if elapsed <= 0 or stage not in ("shutdown", "create", "sysrq"):
            return
        key = f"{stage}_s"
        setattr(self, key, (1 - 0.3) * getattr(self, key) + 0.3 * elapsed)
        self.samples += 1

    def observe_resource(self, key: str, mb: float, busy_s: float) -> None:
        """Fold one run's use of a resource: `mb` moved while it was busy `busy_s` seconds.

        key: "save" (disk write), "restore" (disk read) or "link:HOST".  The first
        measurement replaces the default outright (a default is a guess, not a sample).
        """
        if mb <= 0 or busy_s <= 0.05:
            return
        speed = mb / busy_s
        if key.startswith("link:"):
            host = key[5:]
            old = self.links.get(host)
            self.links[host] = speed if old is None else 0.5 * old + 0.5 * speed
        else:
            attr = f"{key}_mbps"
            fresh = getattr(self, attr) == DEFAULTS[attr]
            setattr(self, attr, speed if fresh else 0.5 * getattr(self, attr) + 0.5 * speed)
        self.samples += 1


def fit_fixed(ops: Sequence[tuple[float, float, float]]) -> float | None:
    """The fixed part of an operation from those that ran alone: (start, end, MB) -> the intercept of
    elapsed = fixed + MB / rate (least squares); None without two solo runs of clearly different sizes."""
    ops = sorted(ops)
    solo = [o for i, o in enumerate(ops)
            if (i == 0 or ops[i - 1][1] <= o[0]) and (i + 1 == len(ops) or ops[i + 1][0] >= o[1])]
    if len(solo) < 2:
        return None
    xs = [mb for _, _, mb in solo]
    ys = [b - a for a, b, _ in solo]
    if max(xs) < 1.5 * min(xs):
        return None
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if slope <= 0:
        return None
    return max(0.0, my - slope * mx)


def busy_time(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals: how long a resource was in use."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def throughput_path(cfg: Config) -> Path:
    """Measured throughputs must survive a reboot: kept in the persistent report directory."""
    from .report import report_dirs

    return report_dirs(cfg)[-1] / "throughput.json"


class ThroughputRecorder:
    """An event sink that learns throughputs from a run and stores them when it finishes.

    Per resource: each successful save, restore or migration adds the memory it
    moved and its transfer's interval (its elapsed time less the fixed part);
    at the end of the run the resource's speed is that memory over the union of
    the intervals — the time the resource was busy.
    """

    def __init__(self, cfg: Config, path: Path | None = None):
        self.path = path or throughput_path(cfg)
        self.t = Throughputs.load(self.path)
        self.cfg = cfg
        self.memory: dict[str, int] = {}
        #: why the measured throughputs could not be stored (the caller warns; the run's outcome stands)
        self.error: str | None = None
        self.used: dict[str, list[tuple[float, float, float]]] = {}  # key -> [(start, end, mb)]
        self.stage_of: dict[str, str] = {}

    def _key(self, stage: str, detail: str) -> str | None:
        if stage in ("save", "restore"):
            return stage
        if stage == "migrate":
            return "link:" + (migrate_target(detail.split()) or migrate_target(self.cfg.migrate))
        return None

    def __call__(self, e: Event) -> None:
        if isinstance(e, GuestPlanned):
            self.memory[e.guest] = e.memory_mib
        elif isinstance(e, StageFinished) and e.outcome == "done" and e.guest:
            key = self._key(e.stage, e.detail)
            mb = self.memory.get(e.guest, 0)
            if key is not None:
                if mb > 0:
                    self.used.setdefault(key, []).append((e.at - e.elapsed, e.at, float(mb)))
                    self.stage_of[key] = e.stage
            else:
                self.t.observe(e.stage, mb, e.elapsed)
        elif isinstance(e, RunFinished):
            for key, uses in self.used.items():
                stage = self.stage_of[key]
                fit = fit_fixed(uses)
                if fit is not None:
                    old = self.t.fixed.get(stage, FIXED[stage])
                    self.t.fixed[stage] = fit if old == FIXED[stage] else 0.5 * old + 0.5 * fit
                fixed = self.t.fixed.get(stage, FIXED[stage])
                busy = busy_time([(a + min(fixed, (b - a) * 0.9), b) for a, b, _ in uses])
                self.t.observe_resource(key, sum(u[2] for u in uses), busy)
            self.used.clear()
            try:
                self.t.save(self.path)
            except OSError as exc:
                self.error = f"cannot store the measured throughputs in {self.path}: {exc.strerror or exc}"


class Estimator:
    """estimate(stage, domain) -> seconds alone on its resource; `.model()` the host for the scheduler.

    The one estimate the plans, the scheduler, the runner's deadline and the console use.
    """

    def __init__(self, cfg: Config, t: Throughputs, source: str = "measured"):
        self.cfg, self.t = cfg, t
        #: where the figures come from: measured (earlier runs), simulated (a simulated host's own
        #: latencies and bandwidths, before its first run) or assumed (the defaults, before a real host's first run)
        self.source = source

    def basis(self, stages: Sequence[str]) -> tuple[str, ...]:
        """The figures behind the stages' estimates, in words."""
        t, out = self.t, []
        target = migrate_target(self.cfg.migrate)
        words = {
            "save": f"save: disk {t.save_mbps:.0f} MB/s + {t.fixed['save']:.1f}s",
            "restore": f"restore: disk {t.restore_mbps:.0f} MB/s + {t.fixed['restore']:.1f}s",
            "migrate": f"migrate: link {t.link_mbps(target):.0f} MB/s + {t.fixed['migrate']:.1f}s",
            "shutdown": f"shutdown {t.shutdown_s:.1f}s",
            "create": f"create {t.create_s:.1f}s",
        }
        for s in dict.fromkeys(stages):
            if s in words:
                out.append(words[s])
        return tuple(out)

    def __call__(self, stage: str, d: Domain) -> float:
        return self.t.estimate(stage, d, self.cfg)

    def model(self, reading: bool = False):
        return self.t.model(self.cfg, reading)


def estimator(cfg: Config, t: Throughputs | None = None, toolstack=None) -> Estimator:
    """The estimator of this host: measured throughputs; before any run, a simulated host's own figures
    (when `toolstack` drives the simulator), else the defaults, said as "assumed"."""
    t = t or Throughputs.load(throughput_path(cfg))
    if t.samples:
        return Estimator(cfg, t, "measured")
    sim = simulated_throughputs(toolstack) if toolstack is not None else None
    if sim is not None:
        return Estimator(cfg, sim, "simulated")
    return Estimator(cfg, t, "assumed")


#: what spawning one simulated `xl` costs on top of its latencies (interpreter start, the state lock)
SPAWN_S = 0.08


def simulated_state_dir(toolstack) -> Path | None:
    """The simulator's state directory when `toolstack` drives one: in-process, or `xl` on PATH is an xdsim shim."""
    sdir = getattr(toolstack, "state_dir", None)
    if sdir is not None:
        return Path(sdir)
    exe = shutil.which(getattr(toolstack, "name", "") or "xl")
    if not exe:
        return None
    try:
        with open(exe, "rb") as fh:
            head = fh.read(1024).decode("utf-8", "replace")
    except OSError:
        return None
    marker = "(xdsim): acts on the host in "
    for line in head.splitlines():
        if marker in line:
            d = Path(line.split(marker, 1)[1].strip().strip("'\""))
            return d if d.is_dir() else None
    return None


def simulated_throughputs(toolstack) -> Throughputs | None:
    """A simulated host's own latencies, rates and shared bandwidths as Throughputs.

    None when the host is not simulated, or declares no shared bandwidth (`xdsim resource`): the
    scheduler then plans from the defaults, as on a real host.  One operation alone gets a shared
    resource's whole bandwidth, which replaces the operation's own rate, as in the simulator
    (xdcore.sim.physics).
    """
    sdir = simulated_state_dir(toolstack)
    if sdir is None:
        return None
    try:
        from .sim import host as simhost

        st = simhost.load(sdir)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not st.resources:  # a host without declared bandwidths (the tests' fast hosts): nothing to go by
        return None
    spawn = 0.0 if getattr(toolstack, "state_dir", None) is not None else SPAWN_S

    def mbps(op: str, res: str) -> float:
        rate = float(st.resources.get(res) or 0.0) or float(st.rate.get(op, 0.0) or 0.0)
        return rate if rate > 0 else DEFAULTS[f"{op}_mbps"]

    links = {k[5:]: float(v) for k, v in st.resources.items() if k.startswith("link:") and float(v or 0) > 0}
    return Throughputs(save_mbps=mbps("save", "disk"), restore_mbps=mbps("restore", "disk"),
                       migrate_mbps=float(st.rate.get("migrate", 0.0) or 0.0) or DEFAULTS["migrate_mbps"],
                       shutdown_s=st.lat("ack") + st.lat("shutdown") + spawn, create_s=st.lat("create") + spawn,
                       sysrq_s=st.lat("sysrq") + spawn, samples=0, links=links,
                       fixed={"save": st.lat("save") + spawn, "migrate": st.lat("migrate") + spawn,
                              "restore": st.lat("restore") + spawn})


def _estimate_of(service):
    return service.estimate or estimator(service.cfg, toolstack=service.ts)


def free_bytes(directory: Path) -> int | None:
    """Free space of the filesystem that holds `directory` (or its nearest existing parent)."""
    p = Path(os.path.abspath(directory))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def guests_without_room(cfg: Config, guests: Sequence[Domain], control: RunControl | None = None,
                        free: int | None = None) -> frozenset[str]:
    """Guests (in selection order) whose image would not fit in the save directory's free space.

    Every guest that has Save among its stages is reserved room (a migrate may
    fail and fall through to save); the first that does not fit and all after
    it are shut down instead.
    """
    if cfg.save_dir is None:
        return frozenset()
    free = free_bytes(cfg.save_dir) if free is None else free
    if free is None:
        return frozenset()
    used = 0
    out: set[str] = set()
    for d in guests:
        if d.zombie:
            continue
        need = d.memory_mib * 1024 * 1024 + IMAGE_OVERHEAD
        if used + need > free:
            out.add(d.name)
        else:
            used += need
    return frozenset(out)


@dataclass(frozen=True)
class GuestPlan:
    guest: str
    domid: int
    memory_mib: int
    stages: tuple[str, ...]
    reasons: tuple[str, ...]
    estimate_s: float
    note: str = ""
    group: int = 0  # index of its order group in this verb's run order
    policy: str = ""  # its xendomains_* policy in a line (what differs from the defaults)
    # the scheduler's slot (stop plans): the stage expected to end the guest, the resource it waits on,
    # its place in that resource's queue and its predicted start/finish (s after the stages begin)
    planned: str = ""
    resource: str = ""
    order: int = -1
    start_s: float = 0.0
    finish_s: float = 0.0
    why_planned: str = ""
    target: str = ""  # with several migration targets: where it is placed ("" : none can take it)
    placed_by: str = ""  # who chose the target: "placement" (by room) or "operator" (--place)


@dataclass(frozen=True)
class Plan:
    verb: str
    guests: tuple[GuestPlan, ...]
    skipped: tuple[tuple[str, str], ...]
    host_stages: tuple[str, ...]
    estimate_s: float
    parallel: int
    save_dir_free: int | None = None
    save_needed: int = 0
    no_room: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    order: dict | None = None  # groups in run order, gates, dependencies and why (xdcore.bootorder), when not trivial
    errors: tuple[str, ...] = ()  # the plan cannot be carried out as configured (a dependency cycle, policy errors)
    caps: tuple[tuple[str, int], ...] = ()  # resource -> guests at once, as the schedule chose
    scheduled: bool = False  # estimate_s is the makespan of the scheduler's simulated schedule
    targets: tuple[TargetRoom, ...] = ()  # several migration targets: each one's room before and after
    #: where the estimate's figures come from: measured, simulated or assumed (see Estimator.source)
    estimate_source: str = "assumed"
    #: the figures behind it, e.g. "save: disk 500 MB/s + 0.6s"
    estimate_basis: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def _wall_estimate(durations: Sequence[float], parallel: int) -> float:
    """Greedy list scheduling of per-guest durations on `parallel` lanes."""
    lanes = [0.0] * max(1, parallel)
    for d in sorted(durations, reverse=True):
        i = lanes.index(min(lanes))
        lanes[i] += d
    return max(lanes) if lanes else 0.0


async def stop_plan(service, only: Sequence[str] | None = None) -> Plan:  # service: xdcore.service.Service
    cfg: Config = service.cfg
    control: RunControl = service.control
    estimate = _estimate_of(service)
    await service.check_names(only)
    await service.check_placements(only)
    guests = await service.guests()
    selected, skipped = await service.select_for_stop(guests, set(only) if only else None)
    no_room = guests_without_room(cfg, selected, control) if (cfg.save_dir and control.stage_enabled("save")) else frozenset()
    raw = await service.policies([d.name for d in selected])
    pols, order = await service.stop_order(selected, warn=False)
    errors = [f"{p} ({n} is stopped with the default policy)" for n in raw for p in raw[n].problems]
    errors += order.cycle_errors()
    gindex = {n: i for i, g in enumerate(order.stop_groups()) for n in g.guests}
    pool = await service.target_pool(selected, announce=False, policies=pols)
    decisions = pool.decisions if pool is not None else []
    errors += service.placement_problems(pool)  # the run would refuse them: nothing stopped
    out: list[GuestPlan] = []
    for d in selected:
        if d.zombie:
            out.append(GuestPlan(d.name, d.domid, d.memory_mib, ("zombie",), (f"{'dying' if d.state and d.state.dying else 'being torn down'}: no migrate, save or shutdown",), 0.0))
            continue
        stages, reasons = [], []
        pol = pols[d.name]
        for st in STOP_GUEST_STAGES:
            if not st.is_enabled(cfg) or not control.stage_enabled(st.name):
                continue
            if st.name == "save" and d.name in no_room:
                reasons.append("save: no room in the save directory, shut down instead")
                continue
            if st.name == "migrate" and pool is not None:
                target = pool.target_of(d.name)
                reason = next((dec.reason for dec in decisions if dec.guest == d.name), "")
                if target is None:
                    reasons.append(f"migrate: no target ({reason})")
                    continue
            if not pol.allows(st.name):
                reasons.append(f"{st.name}: not in xendomains_stop ({pol.where.get('stop_stages', '')})")
                continue
            stages.append(st.name)
            if st.name == "migrate" and pool is not None:
                reasons.append(f"migrate: to {pool.target_of(d.name)} ({reason})")
            else:
                reasons.append(f"{st.name}: {st.why(cfg)}")
        stages = pol.stop_order(stages)
        if pol.down_wait and "shutdown" in stages:
            reasons.append(f"shutdown watchdog {pol.down_wait:g}s (xendomains_down_wait)")
        # estimate: the first terminal stage is expected to succeed
        est = 0.0
        for s in stages:
            est += estimate(s, d)
            if STAGES[s].terminal:
                break
        note = "" if any(STAGES[s].terminal for s in stages) else "no stage can stop this guest: it will stay running"
        target = (pool.target_of(d.name) or "") if pool is not None else ""
        by = next((dec.by for dec in decisions if dec.guest == d.name and dec.target), "") if target else ""
        out.append(GuestPlan(d.name, d.domid, d.memory_mib, tuple(stages), tuple(reasons), round(est, 1), note,
                             gindex.get(d.name, 0), pol.describe(), target=target, placed_by=by))
    sched = _schedule_for(service, selected, no_room, pols, order, pool)
    if sched is not None:

        by_name = {sl.guest: sl for sl in sched.slots}
        out = [replace(g, planned=sl.stage, resource=sl.resource, order=sl.order, start_s=sl.start,
                       finish_s=sl.finish, why_planned=sl.reason, estimate_s=round(sl.finish - sl.start, 1))
               if (sl := by_name.get(g.guest)) else g for g in out]
        rank = {g: i for i, g in enumerate(sched.order())}
        out.sort(key=lambda g: rank.get(g.guest, len(rank)))
    host = ["select"]
    if cfg.shutdown_all and control.stage_enabled("shutdown_all") and not only:
        host.append("shutdown_all")
    host.append("cleanup")
    needed = sum(g.memory_mib * 1024 * 1024 + IMAGE_OVERHEAD for g in out if "save" in g.stages)
    notes = []
    if cfg.auto_only and not selected:
        notes.append("XENDOMAINS_AUTO_ONLY=true and no running guest has a config in the auto directory")
    if cfg.stop_deadline:
        notes.append(f"deadline {cfg.stop_deadline:g}s: guests are downgraded migrate → save → shutdown as it nears")
        if any(pols[g.guest].priority for g in out):
            notes.append("under the deadline, guests with a higher xendomains_priority take the first slots")
    notes += order.notes
    if pool is not None and sched is not None and cfg.schedule == "auto" and cfg.parallel_migrate is None:
        pool.follow_schedule(sched.caps)  # what the runner will do: each target's migrations bounded like its link
    rooms = tuple(pool.rooms()) if pool is not None else ()
    notes += pool.notes if pool is not None else []
    for r in rooms:
        if r.error:
            notes.append(f"migration target {r.name} left out: {r.error}")
    out.sort(key=lambda g: g.group)  # stable: the schedule's order inside each group
    par = control.parallel
    if sched is not None:
        notes.extend(sched.notes)
        est = sched.makespan
    else:
        est = _groups_estimate(out, par or len(out) or 1)
    _, dropped = service.ts.translate_shutdown_options(cfg.shutdown, "XENDOMAINS_SHUTDOWN")
    if any("shutdown" in g.stages for g in out):  # what `stop` says it drops, the plan says too
        notes.extend(dropped)
    if "shutdown_all" in host:
        notes.extend(n for n in service.ts.translate_shutdown_options(cfg.shutdown_all, "XENDOMAINS_SHUTDOWN_ALL")[1]
                     if n not in notes)
    return Plan("stop", tuple(out), tuple((d.name, why) for d, why in skipped), tuple(host), round(est, 1), par,
                free_bytes(cfg.save_dir) if cfg.save_dir else None, needed, tuple(sorted(no_room)), tuple(notes),
                _order_dict(order, "stop"), tuple(errors), tuple(sorted(sched.caps.items())) if sched else (),
                sched is not None, rooms, *_source_of(estimate, [s for g in out for s in g.stages]))


def move_problem(plan: Plan, guest: str, target: str) -> str | None:
    """Why moving `guest` onto `target` cannot be, judged from the plan alone (a target left out or not
    among them, not enough room left: a target is never over-committed), else None.  The guests' pins and
    `xendomains_apart` are not in a plan: the stop's own check is the plan made again with the move."""
    from .placement import GuestNeed, Ledger, TargetHost

    if not plan.targets:
        return "this stop has no migration targets (XENDOMAINS_MIGRATE_TARGETS)"
    if not any(g.guest == guest for g in plan.guests):
        return f"{guest} is not in this plan"
    ledger = Ledger([TargetHost(r.name, r.free_mib, error=r.error) for r in plan.targets],
                    [GuestNeed(g.guest, g.memory_mib) for g in plan.guests], plan.targets[0].reserve_mib)
    for g in plan.guests:
        if g.target:
            ledger.move(g.guest, g.target)
    return ledger.move(guest, target)


def _source_of(estimate, stages: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """(estimate_source, estimate_basis) of a plan; a bare estimate function (tests) says "assumed"."""
    basis = getattr(estimate, "basis", None)
    return getattr(estimate, "source", "assumed"), (basis(stages) if basis else ())


def _groups_estimate(out: Sequence[GuestPlan], parallel: int, gates: Sequence[float] = ()) -> float:
    """Groups run one after the other: the sum of each group's wall time (plus its gate)."""
    total = 0.0
    for i in sorted({g.group for g in out}):
        total += _wall_estimate([g.estimate_s for g in out if g.group == i], parallel)
        if i < len(gates):
            total += gates[i]
    return total


def _order_dict(order, verb: str) -> dict | None:
    """The boot order as plans show it (run order for `verb`), or None when it is today's behaviour."""
    if order.trivial:
        return None
    d = order.to_dict()
    if verb == "stop":
        d["groups"] = list(reversed(d["groups"]))
        for i, g in enumerate(d["groups"]):
            g["index"] = i
            g["gates"] = {}  # gates are for start
    return d


def _schedule_for(service, selected: Sequence[Domain], no_room: frozenset[str], pols, order, pool=None):
    """The schedule the stop runner will follow for `selected` (its predictions too under XENDOMAINS_SCHEDULE=listing)."""
    from .events import EventBus
    from .pipeline.runner import Deadline, StopRunner

    cfg: Config = service.cfg
    runner = StopRunner(cfg, service.ts, EventBus(), service.control, estimate=_estimate_of(service),
                        deadline=Deadline(cfg.stop_deadline), no_room=no_room, policies=pols, order=order,
                        pool=pool)
    return runner.make_schedule(selected)


async def start_plan(service) -> Plan:
    from . import savedir

    cfg: Config = service.cfg
    estimate = _estimate_of(service)
    images = savedir.scan(cfg.save_dir)
    blocked = {im.guest for im in images if im.guest and im.valid}
    out: list[GuestPlan] = []
    skipped: list[tuple[str, str]] = []
    if cfg.restore and cfg.save_dir:
        for im in images:
            if im.quarantined:
                skipped.append((im.guest or im.path.name, f"quarantined image {im.path}"))
            elif not im.valid:
                skipped.append((im.path.name, "no save-image header: left alone"))
            else:
                mem = savedir.image_memory_mib(im)  # the guest's memory from the image's header
                d = Domain(-1, im.guest or im.path.name, memory_mib=mem)
                out.append(GuestPlan(d.name, -1, mem, ("restore",), (f"restore {im.path}",), round(estimate("restore", d), 1)))
    guests = await service.guests()
    running = {d.name for d in guests}
    autos = await service.auto_configs()
    away = service.migrated_away()
    creates = []
    restoring = {g.guest for g in out}
    for a in autos:
        if a.name is None:
            skipped.append((a.path.name, f"unreadable config: {a.error}"))
        elif a.name in restoring:
            continue  # restored from its image, listed above: not created as well
        elif a.name in running:
            skipped.append((a.name, "already running"))
        elif a.name in blocked:
            skipped.append((a.name, "has a saved image that is not restored (waiting or quarantined)"))
        elif a.name in away:
            skipped.append((a.name, f"migrated to {away[a.name]} by the last stop: it runs there"))
        elif a.name not in {c.name for c in creates}:
            creates.append(a)
            out.append(GuestPlan(a.name, -1, 0, ("create",), (f"create from {a.path}",), round(estimate("create", Domain(-1, a.name)), 1)))
    pols = await service.policies([g.guest for g in out], autos=autos)
    errors: list[str] = []
    for g in list(out):
        if not pols[g.guest].ok:
            errors += [str(p) for p in pols[g.guest].problems]
            skipped.append((g.guest, "refused: its xendomains_* policy has errors"))
            out.remove(g)
    restores = [im for im in images if im.guest and any(g.guest == im.guest and g.stages == ("restore",) for g in out)]
    creates = [a for a in creates if any(g.guest == a.name for g in out)]
    _, order = await service.start_order(restores, creates, autos, guests, pols)
    errors += order.cycle_errors()
    gindex = {n: i for i, g in enumerate(order.groups) for n in g.guests}
    out = [replace(g, group=gindex.get(g.guest, 0), policy=pols[g.guest].describe(),
                   reasons=g.reasons + order.why.get(g.guest, ())[1 if order.trivial else 0:]) for g in out]
    out.sort(key=lambda g: g.group)
    par = service.control.parallel
    gates = [max((gt.seconds if gt.kind == "delay" else 0.0) for _, gt in grp.gates) if grp.gates else 0.0
             for grp in order.groups[:-1]]
    notes = list(order.notes)
    if not order.trivial and len(order.groups) > 1:
        maxwait = service.cfg.start_maxwait
        notes.append("each group starts when the previous one is ready; a gate ends after "
                     + (f"XENDOMAINS_START_MAXWAIT={maxwait}s" if maxwait else "no limit (XENDOMAINS_START_MAXWAIT=0)")
                     + "; the last group's gates are not waited for")
    total = _groups_estimate(out, par or len(out) or 1, gates)
    model_of = getattr(estimate, "model", None)
    restoring = [g for g in out if g.stages == ("restore",)]
    scheduled = bool(restoring and model_of is not None and len(order.groups) <= 1)
    if scheduled:  # restores share the disk's read bandwidth: their makespan, then the creates
        from .pipeline.schedule import restore_schedule

        sched = restore_schedule(model_of(reading=True), [(g.guest, g.memory_mib) for g in restoring], lanes=par or None)
        by = {sl.guest: sl for sl in sched.slots}
        out = [replace(g, planned="restore", resource="disk", order=by[g.guest].order, start_s=by[g.guest].start,
                       finish_s=by[g.guest].finish, estimate_s=round(by[g.guest].finish - by[g.guest].start, 1))
               if g.guest in by else g for g in out]
        total = sched.makespan + _wall_estimate([g.estimate_s for g in out if g.stages != ("restore",)],
                                                par or len(out) or 1)
    src, basis = _source_of(estimate, [s for g in out for s in g.stages])
    return Plan("start", tuple(out), tuple(skipped), ("lock",), round(total, 1), par,
                notes=tuple(notes), order=_order_dict(order, "start"), errors=tuple(errors), scheduled=scheduled,
                estimate_source=src, estimate_basis=basis)
