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
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import Config
from .fsutil import read_small, write_atomic
from .events import Event, GuestPlanned, RunFinished, RunStarted, StageFinished
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
#: what a run costs beside its guests' stages (starting, listing the guests, shutdown_all, cleanup), seconds
OVERHEAD = {"stop": 1.0, "start": 1.0}


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


#: the figure that says how long each stage takes (a stage is "measured" once a run has measured it)
STAGE_FIGURE = {"save": "save_mbps", "restore": "restore_mbps", "shutdown": "shutdown_s", "create": "create_s",
                "sysrq": "sysrq_s"}
#: how sure an estimate is, weakest first
SOURCES = ("assumed", "simulated", "measured")


def _line_of(text: str, dotted: str) -> int:
    """The line of `text` where the JSON key `dotted` ("links.peer": "peer" after "links") appears (1: not found)."""
    i = 0
    for key in dotted.split("."):
        i = text.find(f'"{key}"', i)
        if i < 0:
            return 1
    return text.count("\n", 0, i) + 1


@dataclass
class Throughputs:
    """Measured speeds (MB/s) and durations (s), smoothed over runs.

    Speeds are of resources, not of guests: `save_mbps` is what the save
    directory's disk writes, `restore_mbps` what it reads, `links[HOST]` what
    the link to a migration target carries (`migrate_mbps` for a target never
    measured) — learned from each run as the memory moved over the time the
    resource was busy, so that two saves sharing the disk teach its speed, not
    half of it.

    `measured` counts the samples of each figure on its own ("save", "restore",
    "shutdown", "create", "sysrq", "link:HOST", "fixed:save" …): a figure no run
    has measured is still its default, and `over(prior)` takes it from what the
    host says instead (a simulated host's own figures, or the assumed defaults).
    `samples` is their total, kept for the versions that read only it.
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
    overhead: dict[str, float] = field(default_factory=lambda: dict(OVERHEAD))  # per verb, beside the stages, s
    measured: dict[str, int] = field(default_factory=dict)
    #: what was wrong with the file it was loaded from (FILE:LINE: …); not stored
    problems: list[str] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path | None) -> "Throughputs":
        """The throughputs stored in `path`; a missing file is the defaults, a bad one the defaults
        for what is bad, each problem named in `problems` (the file itself is left as it is)."""
        if path is None:
            return cls()
        try:
            text = read_small(path)
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return cls(problems=[f"{path}: cannot read the stored throughputs ({why}); estimating without them"])
        try:
            data = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", 1)
            return cls(problems=[f"{path}:{line}: the stored throughputs are not JSON ({getattr(exc, 'msg', exc)});"
                                 " estimating without them"])
        except RecursionError:
            return cls(problems=[f"{path}:1: the stored throughputs are nested too deeply; estimating without them"])
        if not isinstance(data, dict):
            return cls(problems=[f"{path}:1: the stored throughputs are not a JSON object; estimating without them"])
        problems: list[str] = []
        rejected: set[str] = set()  # figures whose stored value is unusable: estimated as if never measured
        figure_of = {attr: stage for stage, attr in STAGE_FIGURE.items()}

        def bad(key: str, v: Any, what: str) -> None:
            shown = json.dumps(v) if not isinstance(v, (dict, list)) else type(v).__name__
            problems.append(f"{path}:{_line_of(text, key)}: {key}: {shown[:40]} is not {what};"
                            " estimated as if never measured")
            head, _, tail = key.partition(".")
            rejected.add(figure_of.get(key, "") or (f"link:{tail}" if head == "links" else f"{head}:{tail}"))

        # each value on its own: finite and in range, else its default (a 0 or NaN speed must never reach a division)
        values: dict[str, Any] = {}
        for k, v in data.items():
            if k == "samples":
                if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31:
                    values[k] = v
                else:
                    bad(k, v, "a count")
            elif k in DEFAULTS:
                if _number(v, positive=True):
                    values[k] = float(v)
                else:
                    bad(k, v, "a positive number")
        links = data.get("links", {})
        values["links"] = {}
        if isinstance(links, dict):
            for host, v in links.items():
                if _number(v, positive=True):
                    values["links"][str(host)] = float(v)
                else:
                    bad(f"links.{host}", v, "a positive number")
        else:
            bad("links", links, "an object")
        for name, defaults in (("fixed", FIXED), ("overhead", OVERHEAD)):  # seconds by stage / by verb
            given = data.get(name, {})
            values[name] = dict(defaults)
            if not isinstance(given, dict):
                bad(name, given, "an object")
                continue
            for k, v in given.items():
                if k in defaults and _number(v):
                    values[name][k] = float(v)
                elif k in defaults:
                    bad(f"{name}.{k}", v, "a number of seconds")
        measured = data.get("measured")
        if isinstance(measured, dict):
            values["measured"] = {str(k): v for k, v in measured.items()
                                  if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31}
        else:
            if measured is not None:
                bad("measured", measured, "an object")
            if values.get("samples"):  # a file from before the per-figure counts: what differs from its default was measured
                values["measured"] = _measured_by_value(values)
        if "measured" in values:
            values["measured"] = {k: v for k, v in values["measured"].items() if k not in rejected}
        t = cls(**values)
        t.problems = problems
        return t

    def save(self, path: Path) -> None:
        data = asdict(self)
        del data["problems"]
        write_atomic(path, json.dumps(data, indent=1))

    def is_measured(self, key: str) -> bool:
        return self.measured.get(key, 0) > 0

    def _count(self, key: str) -> None:
        self.measured[key] = min(self.measured.get(key, 0) + 1, 2**31 - 1)
        self.samples = min(self.samples + 1, 2**31 - 1)

    def over(self, prior: "Throughputs") -> "Throughputs":
        """These throughputs where a run measured them, `prior`'s (what the host says) everywhere else."""
        pick = lambda key, attr: getattr(self if self.is_measured(key) else prior, attr)  # noqa: E731
        links = {**prior.links, **{h: v for h, v in self.links.items() if self.is_measured(f"link:{h}")}}
        fixed = {s: (self.fixed if self.is_measured(f"fixed:{s}") else prior.fixed).get(s, FIXED[s]) for s in FIXED}
        overhead = {v: (self.overhead if self.is_measured(f"overhead:{v}") else prior.overhead).get(v, OVERHEAD[v])
                    for v in OVERHEAD}
        return Throughputs(**{attr: pick(stage, attr) for stage, attr in STAGE_FIGURE.items()},
                           migrate_mbps=prior.migrate_mbps, samples=self.samples, links=links, fixed=fixed,
                           overhead=overhead, measured=dict(self.measured))

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
        """Fold one measured duration (shutdown, create, sysrq) into the averages (exponential smoothing).

        The first measurement replaces the figure outright (a default is a guess, not a sample)."""
        if elapsed <= 0 or stage not in ("shutdown", "create", "sysrq"):
            return
        key = f"{stage}_s"
        fresh = not self.is_measured(stage)
        setattr(self, key, elapsed if fresh else (1 - 0.3) * getattr(self, key) + 0.3 * elapsed)
        self._count(stage)

    def observe_resource(self, key: str, mb: float, busy_s: float) -> None:
        """Fold one run's use of a resource: `mb` moved while it was busy `busy_s` seconds.

        key: "save" (disk write), "restore" (disk read) or "link:HOST".  The first
        measurement replaces the default outright (a default is a guess, not a sample).
        """
        if mb <= 0 or busy_s <= 0.05:
            return
        speed = mb / busy_s
        fresh = not self.is_measured(key)
        if key.startswith("link:"):
            host = key[5:]
            old = self.links.get(host)
            self.links[host] = speed if fresh or old is None else 0.5 * old + 0.5 * speed
        else:
            attr = f"{key}_mbps"
            setattr(self, attr, speed if fresh else 0.5 * getattr(self, attr) + 0.5 * speed)
        self._count(key)

    def observe_overhead(self, verb: str, seconds: float) -> None:
        """Fold one run's time beside its guests' stages; the first replaces the prior's."""
        if verb not in OVERHEAD or not seconds >= 0:
            return
        key = f"overhead:{verb}"
        self.overhead[verb] = seconds if not self.is_measured(key) else 0.5 * self.overhead[verb] + 0.5 * seconds
        self._count(key)

    def observe_fixed(self, stage: str, fit: float) -> None:
        """Fold one fitted fixed part of `stage` (fit_fixed); the first replaces the prior's."""
        key = f"fixed:{stage}"
        old = self.fixed.get(stage, FIXED[stage])
        self.fixed[stage] = fit if not self.is_measured(key) else 0.5 * old + 0.5 * fit
        self._count(key)


def _measured_by_value(values: dict[str, Any]) -> dict[str, int]:
    """What a file written before the per-figure counts had measured: every figure that differs from
    its default (a measured speed is never exactly a default), every link."""
    out = {stage: 1 for stage, attr in STAGE_FIGURE.items() if attr in values and values[attr] != DEFAULTS[attr]}
    out.update({f"link:{h}": 1 for h in values.get("links", {})})
    out.update({f"fixed:{s}": 1 for s, v in values.get("fixed", {}).items() if v != FIXED[s]})
    return out


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
    the intervals — the time the resource was busy.  `prior` (what the host says,
    Estimator.prior) gives the fixed parts no run has fitted yet.

    A stored file that could not be read whole is kept beside the new one (FILE.bad,
    FILE.bad.1, …) before the new measurements replace it: nothing in it is lost.
    """

    def __init__(self, cfg: Config, path: Path | None = None, prior: Throughputs | None = None):
        self.path = path or throughput_path(cfg)
        self.t = Throughputs.load(self.path)
        self.prior = prior or Throughputs()
        self.cfg = cfg
        self.memory: dict[str, int] = {}
        #: why the measured throughputs could not be stored (the caller warns; the run's outcome stands)
        self.error: str | None = None
        #: what was wrong with the stored file and where it was kept (the caller warns)
        self.warnings: list[str] = list(self.t.problems)
        self.used: dict[str, list[tuple[float, float, float]]] = {}  # key -> [(start, end, mb)]
        self.stage_of: dict[str, str] = {}
        #: when the process began (the CLI sets it: starting up is part of the run); else the run's start
        self.started_at: float | None = None
        self._run: tuple[str, float] | None = None  # (verb, began at)
        self._span: list[float] = []  # [first guest stage's start, last one's end]

    def _key(self, stage: str, detail: str) -> str | None:
        if stage in ("save", "restore"):
            return stage
        if stage == "migrate":
            return "link:" + (migrate_target(detail.split()) or migrate_target(self.cfg.migrate))
        return None

    def __call__(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            began = e.at if self.started_at is None else min(self.started_at, e.at)
            self._run, self._span = (e.verb, began), []
        elif isinstance(e, GuestPlanned):
            self.memory[e.guest] = e.memory_mib
        if isinstance(e, StageFinished) and e.guest:
            a, b = e.at - e.elapsed, e.at
            self._span = [min(self._span[0], a), max(self._span[1], b)] if self._span else [a, b]
        if isinstance(e, StageFinished) and e.outcome == "done" and e.guest:
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
                    self.t.observe_fixed(stage, fit)
                fixed = self.t.over(self.prior).fixed[stage]
                busy = busy_time([(a + min(fixed, (b - a) * 0.9), b) for a, b, _ in uses])
                self.t.observe_resource(key, sum(u[2] for u in uses), busy)
            self.used.clear()
            if self._run is not None:  # the run's time beside its guests' stages
                verb, began = self._run
                stages = self._span[1] - self._span[0] if self._span else 0.0
                self.t.observe_overhead(verb, max(0.0, e.at - began - stages))
                self._run = None
            try:
                if self.t.problems:
                    kept = keep_aside(self.path)
                    if kept is not None:
                        self.warnings.append(f"the unreadable throughputs were kept as {kept}")
                    self.t.problems = []
                self.t.save(self.path)
            except OSError as exc:
                self.error = f"cannot store the measured throughputs in {self.path}: {exc.strerror or exc}"


def process_started() -> float | None:
    """When this process began (epoch seconds, to 10 ms, from /proc), interpreter start-up included; None off Linux."""
    try:
        with open("/proc/self/stat") as fh:
            stat = fh.read()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime: clock ticks after boot
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def keep_aside(path: Path) -> Path | None:
    """Rename `path` to the first free PATH.bad, PATH.bad.1, …; None when there is no such file."""
    for i in range(1000):
        dest = path.with_name(path.name + (".bad" if i == 0 else f".bad.{i}"))
        if not dest.exists() and not dest.is_symlink():
            try:
                os.rename(path, dest)
            except FileNotFoundError:
                return None
            return dest
    raise OSError(17, f"too many kept copies of {path}")


class Estimator:
    """estimate(stage, domain) -> seconds alone on its resource; `.model()` the host for the scheduler.

    The one estimate the plans, the scheduler, the runner's deadline and the console use.  Each
    figure on its own: measured when a run of this host measured it, else what the host says
    (`prior`: a simulated host's own latencies and bandwidths, "simulated"; else the conservative
    defaults, "assumed").
    """

    def __init__(self, cfg: Config, stored: Throughputs, prior: Throughputs | None = None,
                 prior_source: str = "assumed", faults: Sequence[Any] = ()):
        self.cfg, self.stored = cfg, stored
        self.prior = prior  # None: `stored` as it is, nothing layered under it
        #: a simulated host's injected faults (xdcore.sim.host.Fault): what it says of single guests
        self.faults = tuple(faults)
        #: where the figures no run has measured come from: simulated or assumed
        self.prior_source = prior_source
        self._view: tuple[int, Throughputs] | None = None

    @property
    def t(self) -> Throughputs:
        """The figures in use: measured ones over the prior's (follows the stored ones as a run teaches them)."""
        stamp = self.stored.samples
        if self.prior is None:
            return self.stored
        if self._view is None or self._view[0] != stamp:
            self._view = (stamp, self.stored.over(self.prior))
        return self._view[1]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self.stored.problems)

    def source_of(self, stage: str) -> str:
        """measured, simulated or assumed: where `stage`'s figure comes from."""
        if stage == "migrate":
            target = migrate_target(self.cfg.migrate)
            links = [target] if target else list(self.stored.links)
            measured = any(self.stored.is_measured(f"link:{h}") for h in links)
        else:
            measured = self.stored.is_measured(stage)
        return "measured" if measured else self.prior_source

    def fault_of(self, stage: str, d: Domain) -> tuple[str, float] | None:
        """("hang", 0) when the host says `stage` hangs for `d` (a shutdown it ignores too), ("delay", seconds)
        when it is delayed; else None.  Only a simulated host says so (its faults)."""
        for f in self.faults:
            if f.matches(stage, d.name, d.domid if d.domid >= 0 else None):
                if f.kind == "hang" or (f.kind == "ignore" and stage == "shutdown"):
                    return "hang", 0.0
                if f.kind == "delay":
                    return "delay", float(f.seconds)
                return None
        return None

    def overhead(self, verb: str) -> float:
        """Seconds a `verb` run takes beside its guests' stages (starting, listing, cleaning up)."""
        return self.t.overhead.get(verb, 0.0)

    def overhead_source(self, verb: str) -> str:
        return "measured" if self.stored.is_measured(f"overhead:{verb}") else self.prior_source

    def sources(self, stages: Sequence[str]) -> tuple[tuple[str, str], ...]:
        """(stage, source) of each distinct stage with an estimate, in order."""
        return tuple((s, self.source_of(s)) for s in dict.fromkeys(stages)
                     if s in STAGE_FIGURE or s == "migrate")

    def source_for(self, stages: Sequence[str]) -> str:
        """The plan's source in a word or two: one source, or e.g. "measured + simulated" when some stages
        were measured and others not (the basis says which)."""
        found = {src for _, src in self.sources(stages)}
        if not found:
            found = {"measured" if self.stored.measured else self.prior_source}
        return " + ".join(sorted(found, key=SOURCES.index, reverse=True))

    @property
    def source(self) -> str:
        """The source of every stage's estimate together (see source_for)."""
        return self.source_for(["migrate", "save", "shutdown", "restore", "create"])

    def basis(self, stages: Sequence[str]) -> tuple[str, ...]:
        """The figures behind the stages' estimates, in words, each with its source."""
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
                out.append(f"{words[s]} ({self.source_of(s)})")
        return tuple(out)

    def run_basis(self, verb: str) -> str:
        return f"run {self.overhead(verb):.1f}s beside the guests ({self.overhead_source(verb)})"

    def __call__(self, stage: str, d: Domain) -> float:
        return self.t.estimate(stage, d, self.cfg)

    def model(self, reading: bool = False):
        return self.t.model(self.cfg, reading)


def estimator(cfg: Config, t: Throughputs | None = None, toolstack=None) -> Estimator:
    """The estimator of this host: each figure measured by its earlier runs, else what the host says — a
    simulated host's own figures (when `toolstack` drives the simulator), else the defaults, said as "assumed"."""
    t = t or Throughputs.load(throughput_path(cfg))
    sim = simulated_host(toolstack) if toolstack is not None else None
    if sim is not None:
        return Estimator(cfg, t, sim[0], "simulated", faults=sim[1])
    return Estimator(cfg, t, Throughputs(), "assumed")


#: what spawning one simulated `xl` costs on top of its latencies (interpreter start, the state lock)
SPAWN_S = 0.03
#: what starting `xendomains` itself costs before its run begins (interpreter, imports, the config)
STARTUP_S = 0.15


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
    """A simulated host's own latencies, rates and shared bandwidths as Throughputs (see simulated_host)."""
    sim = simulated_host(toolstack)
    return sim[0] if sim is not None else None


def simulated_host(toolstack) -> tuple[Throughputs, tuple[Any, ...]] | None:
    """A simulated host's own latencies, rates and shared bandwidths as Throughputs, and its injected faults
    (a save that hangs until the watchdog is part of what the host says a stop will take).

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
    t = Throughputs(save_mbps=mbps("save", "disk"), restore_mbps=mbps("restore", "disk"),
                    migrate_mbps=float(st.rate.get("migrate", 0.0) or 0.0) or DEFAULTS["migrate_mbps"],
                    shutdown_s=st.lat("ack") + st.lat("shutdown") + spawn, create_s=st.lat("create") + spawn,
                    sysrq_s=st.lat("sysrq") + spawn, samples=0, links=links,
                    fixed={"save": st.lat("save") + spawn, "migrate": st.lat("migrate") + spawn,
                           "restore": st.lat("restore") + spawn},
                    # a run lists the guests twice around its stages (select, then shutdown_all or the end),
                    # and a spawned run starts an interpreter first
                    overhead={v: (STARTUP_S if spawn else 0.0) + 2 * (st.lat("list") + spawn) for v in OVERHEAD})
    return t, tuple(st.faults)


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
        if d.zombie or d.powered_off:  # neither is saved
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

    @property
    def untouched(self) -> bool:
        """A guest the run sends no command to: a zombie, or one an unfinished save left suspended."""
        return self.stages in (("zombie",), ("suspended",))


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
    #: the figures behind it, each with its source, e.g. "save: disk 500 MB/s + 0.6s (measured)"
    estimate_basis: tuple[str, ...] = ()
    #: (stage, source) of each stage the estimate uses: only the stages a run measured say "measured"
    estimate_sources: tuple[tuple[str, str], ...] = ()

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
    await service.check_names(only, guests)
    await service.check_placements(only, ask_targets=False, guests=guests)  # what the targets refuse: among the errors
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
        if d.powered_off:
            out.append(GuestPlan(d.name, d.domid, d.memory_mib, ("shutdown",),
                                 (f"already shut down ({d.state.flags if d.state else ''}) and not destroyed: its "
                                  "remains are destroyed (no toolstack monitor did)",), 0.0))
            continue
        if d.suspended:  # as the runner does: no command can reach it
            out.append(GuestPlan(d.name, d.domid, d.memory_mib, ("suspended",),
                                 (f"SUSPENDED by an earlier save that did not finish: no command sent; "
                                  f"see `xendomains resume {d.name}`",), 0.0))
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
    notes.extend(getattr(estimate, "warnings", ()))
    notes.extend(_fault_notes(estimate, cfg, selected, {g.guest: _expected(g) for g in out}))
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
    est += _overhead(estimate, "stop")
    return Plan("stop", tuple(out), tuple((d.name, why) for d, why in skipped), tuple(host), round(est, 1), par,
                free_bytes(cfg.save_dir) if cfg.save_dir else None, needed, tuple(sorted(no_room)), tuple(notes),
                _order_dict(order, "stop"), tuple(errors), tuple(sorted(sched.caps.items())) if sched else (),
                sched is not None, rooms, *_source_of(estimate, [s for g in out for s in _expected(g)], "stop"))


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


def _source_of(estimate, stages: Sequence[str], verb: str) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(estimate_source, estimate_basis, estimate_sources) of a plan; a bare estimate function (tests) says "assumed"."""
    if getattr(estimate, "source_for", None) is None:
        return "assumed", (), ()
    return (estimate.source_for(stages), estimate.basis(stages) + (estimate.run_basis(verb),),
            estimate.sources(stages) + (("run", estimate.overhead_source(verb)),))


def _expected(g: GuestPlan) -> tuple[str, ...]:
    """The stages a guest's estimate counts: those before the one expected to end it (the schedule's, else
    the first terminal stage), and that one — a fallback such as shutdown after save is not expected to run."""
    out: list[str] = []
    for s in g.stages:
        out.append(s)
        if s == g.planned or (not g.planned and s in STAGES and STAGES[s].terminal):
            break
    return tuple(out)


def _fault_notes(estimate, cfg: Config, guests: Sequence[Domain], stages: dict[str, tuple[str, ...]]) -> list[str]:
    """What a simulated host's faults do to the estimate, one note per guest and stage."""
    fault_of = getattr(estimate, "fault_of", None)
    out = []
    for d in guests if fault_of is not None else ():
        for s in stages.get(d.name, ()):
            kind, seconds = fault_of(s, d) or ("", 0.0)
            if kind == "hang":
                watchdog = "its watchdog" if s == "shutdown" else f"the watchdog (XENDOMAINS_STOP_MAXWAIT={cfg.stop_maxwait:g}s)"
                out.append(f"{d.name}: the simulated host makes its {s} hang: estimated to last until {watchdog}")
            elif kind == "delay":
                out.append(f"{d.name}: the simulated host delays its {s} by {seconds:g}s")
    return out


def _overhead(estimate, verb: str) -> float:
    """What the run adds to its guests' stages (0 for a bare estimate function)."""
    of = getattr(estimate, "overhead", None)
    return of(verb) if of is not None else 0.0


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
    src, basis, sources = _source_of(estimate, [s for g in out for s in g.stages], "start")
    total += _overhead(estimate, "start")
    notes.extend(getattr(estimate, "warnings", ()))
    return Plan("start", tuple(out), tuple(skipped), ("lock",), round(total, 1), par,
                notes=tuple(notes), order=_order_dict(order, "start"), errors=tuple(errors), scheduled=scheduled,
                estimate_source=src, estimate_basis=basis, estimate_sources=sources)
