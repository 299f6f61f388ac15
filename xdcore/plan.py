"""A plan before acting: what each guest will go through, why, how long, and room to save.

`xendomains plan` and the console's confirmation dialog show the same plan;
the stop run uses the same `guests_without_room` so that it does exactly
what the plan said.  Estimates come from throughputs measured in earlier runs
(a small JSON state file beside the progress file), falling back to
conservative defaults.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .config import Config
from .fsutil import read_small, write_atomic
from .events import Event, GuestPlanned, RunFinished, StageFinished
from .model import Domain
from .pipeline.control import RunControl
from .pipeline.stages import STAGES, STOP_GUEST_STAGES

#: bytes reserved per image beyond the guest's memory (header, config, page tables)
IMAGE_OVERHEAD = 16 * 1024 * 1024
DEFAULTS = {"save_mbps": 250.0, "migrate_mbps": 110.0, "restore_mbps": 300.0, "shutdown_s": 15.0,
            "create_s": 5.0, "sysrq_s": 0.5}


@dataclass
class Throughputs:
    """Measured speeds (MB/s) and durations (s), smoothed over runs."""

    save_mbps: float = DEFAULTS["save_mbps"]
    migrate_mbps: float = DEFAULTS["migrate_mbps"]
    restore_mbps: float = DEFAULTS["restore_mbps"]
    shutdown_s: float = DEFAULTS["shutdown_s"]
    create_s: float = DEFAULTS["create_s"]
    sysrq_s: float = DEFAULTS["sysrq_s"]
    samples: int = 0

    @classmethod
    def load(cls, path: Path | None) -> "Throughputs":
        if path is None:
            return cls()
        try:
            data = json.loads(read_small(path))
            return cls(**{k: float(v) if k != "samples" else int(v) for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            return cls()

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=1))

    def estimate(self, stage: str, d: Domain, cfg: Config | None = None) -> float:
        mb = max(d.memory_mib, 1)
        if stage == "migrate":
            return mb / self.migrate_mbps + 1.0
        if stage == "save":
            return mb / self.save_mbps + 0.5
        if stage == "restore":
            return mb / self.restore_mbps + 0.5
        if stage == "shutdown":
            return self.shutdown_s
        if stage == "sysrq":
            n = len(cfg.sysrq) if cfg else 1
            return n * (self.sysrq_s + (cfg.usleep_us / 1e6 if cfg else 0.1))
        if stage == "create":
            return self.create_s
        return 0.0

    def observe(self, stage: str, memory_mib: int, elapsed: float) -> None:
        """Fold one measured stage into the averages (exponential smoothing)."""
        if elapsed <= 0:
            return
        a = 0.3
        if stage in ("save", "migrate", "restore") and memory_mib > 0:
            key = f"{stage}_mbps"
            speed = memory_mib / max(elapsed - 0.5, 0.05)
            setattr(self, key, (1 - a) * getattr(self, key) + a * speed)
        elif stage in ("shutdown", "create", "sysrq"):
            key = f"{stage}_s"
            setattr(self, key, (1 - a) * getattr(self, key) + a * elapsed)
        else:
            return
        self.samples += 1


def throughput_path(cfg: Config) -> Path:
    """Measured throughputs must survive a reboot: kept in the persistent report directory."""
    from .report import report_dirs

    return report_dirs(cfg)[-1] / "throughput.json"


class ThroughputRecorder:
    """An event sink that learns throughputs from a run and stores them when it finishes."""

    def __init__(self, cfg: Config, path: Path | None = None):
        self.path = path or throughput_path(cfg)
        self.t = Throughputs.load(self.path)
        self.memory: dict[str, int] = {}
        #: why the measured throughputs could not be stored (the caller warns; the run's outcome stands)
        self.error: str | None = None

    def __call__(self, e: Event) -> None:
        if isinstance(e, GuestPlanned):
            self.memory[e.guest] = e.memory_mib
        elif isinstance(e, StageFinished) and e.outcome == "done" and e.guest:
            self.t.observe(e.stage, self.memory.get(e.guest, 0), e.elapsed)
        elif isinstance(e, RunFinished):
            try:
                self.t.save(self.path)
            except OSError as exc:
                self.error = f"cannot store the measured throughputs in {self.path}: {exc.strerror or exc}"


def estimator(cfg: Config, t: Throughputs | None = None):
    """estimate(stage, domain) -> seconds, from measured throughputs (or the defaults).

    The one estimate both the plans and the runner's deadline use.
    """
    t = t or Throughputs.load(throughput_path(cfg))
    return lambda stage, d: t.estimate(stage, d, cfg)


def _estimate_of(service):
    return service.estimate or estimator(service.cfg)


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
    guests = await service.guests()
    selected, skipped = await service.select_for_stop(guests, set(only) if only else None)
    no_room = guests_without_room(cfg, selected, control) if (cfg.save_dir and control.stage_enabled("save")) else frozenset()
    raw = await service.policies([d.name for d in selected])
    pols, order = await service.stop_order(selected, warn=False)
    errors = [f"{p} ({n} is stopped with the default policy)" for n in raw for p in raw[n].problems]
    errors += order.cycle_errors()
    gindex = {n: i for i, g in enumerate(order.stop_groups()) for n in g.guests}
    out: list[GuestPlan] = []
    for d in selected:
        if d.zombie:
            out.append(GuestPlan(d.name, d.domid, d.memory_mib, ("zombie",), ("dying: no migrate, save or shutdown",), 0.0))
            continue
        stages, reasons = [], []
        pol = pols[d.name]
        for st in STOP_GUEST_STAGES:
            if not st.is_enabled(cfg) or not control.stage_enabled(st.name):
                continue
            if st.name == "save" and d.name in no_room:
                reasons.append("save: no room in the save directory, shut down instead")
                continue
            if not pol.allows(st.name):
                reasons.append(f"{st.name}: not in xendomains_stop ({pol.where.get('stop_stages', '')})")
                continue
            stages.append(st.name)
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
        out.append(GuestPlan(d.name, d.domid, d.memory_mib, tuple(stages), tuple(reasons), round(est, 1), note,
                             gindex.get(d.name, 0), pol.describe()))
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
    out.sort(key=lambda g: g.group)
    par = control.parallel or 1
    est = _groups_estimate(out, par)
    return Plan("stop", tuple(out), tuple((d.name, why) for d, why in skipped), tuple(host), round(est, 1), par,
                free_bytes(cfg.save_dir) if cfg.save_dir else None, needed, tuple(sorted(no_room)), tuple(notes),
                _order_dict(order, "stop"), tuple(errors))


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
                mem = max(im.size // (1024 * 1024), 1)
                d = Domain(-1, im.guest or im.path.name, memory_mib=mem)
                out.append(GuestPlan(d.name, -1, mem, ("restore",), (f"restore {im.path}",), round(estimate("restore", d), 1)))
    guests = await service.guests()
    running = {d.name for d in guests}
    autos = await service.auto_configs()
    creates = []
    for a in autos:
        if a.name is None:
            skipped.append((a.path.name, f"unreadable config: {a.error}"))
        elif a.name in running:
            skipped.append((a.name, "already running"))
        elif a.name in blocked:
            skipped.append((a.name, "has a saved image"))
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
    par = service.control.parallel or 1
    gates = [max((gt.seconds if gt.kind == "delay" else 0.0) for _, gt in grp.gates) if grp.gates else 0.0
             for grp in order.groups[:-1]]
    notes = list(order.notes)
    if not order.trivial and len(order.groups) > 1:
        maxwait = service.cfg.start_maxwait
        notes.append("each group starts when the previous one is ready; a gate ends after "
                     + (f"XENDOMAINS_START_MAXWAIT={maxwait}s" if maxwait else "no limit (XENDOMAINS_START_MAXWAIT=0)")
                     + "; the last group's gates are not waited for")
    return Plan("start", tuple(out), tuple(skipped), ("lock",), round(_groups_estimate(out, par, gates), 1), par,
                notes=tuple(notes), order=_order_dict(order, "start"), errors=tuple(errors))
