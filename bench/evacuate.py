"""Benchmarks of the "Evacuate fast" issue: the classic upstream script vs ours, on the simulated host.

    python bench/evacuate.py            # everything, the sizes of the issue (several minutes)
    python bench/evacuate.py --quick    # 16 guests of 0.5 s, 20 configs: about two minutes
    python bench/evacuate.py --only stop --stop-guests 32

Scenarios (each on a fresh simulated host, fixed latencies: shutdown 1 s,
every other operation 0; save and migrate disabled, so a stop is shutdowns):

* stop of N guests (default 64): the classic script from Debian's
  xen-utils-4.17, ours sequential, ours with XENDOMAINS_PARALLEL=8 and 16 —
  wall time and its ratio to the ideal ceil(N/P)·t;
* `status` and `start` with M auto configs (default 200), all running:
  classic vs ours — wall time and the number of `xl` processes spawned
  (ours also with a tenth of the configs, to show the count is constant);
* pool (bench/pool_scenario.py): 40 guests onto three targets placed by room
  vs the single-target classic configuration (XENDOMAINS_MIGRATE="xen02"),
  with physics (a 4000 MB/s link per target, a 1000 MB/s save disk) — guests
  kept running (migrated rather than saved) and makespan, side by side;
* our orchestration's own CPU time per guest (getrusage of the `xendomains`
  process, children excluded; see bench/_ours.py);
* the mixed host (bench/_mixed.py): 40 guests of 0.5–32 GiB sharing one disk
  and one link — classic, ours in listing order with a fixed PARALLEL, ours
  with the scheduler, each against the physical lower bound; the plan's
  prediction against the actual; the same under a deadline; and the boot side
  (all 40 images restored over the disk).

The table is printed and, for a full run (or with --results FILE), written
to bench/RESULTS.md with the date and the machine.  Nothing is faked: a row
whose run did not do what it should (a guest left running, a failed exit)
says so in the "met?" column.

Python processes (the simulated `xl` and ours) keep compiled bytecode in a
private PYTHONPYCACHEPREFIX, as an installed package has its .pyc files.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from simhost import BenchHost, bench_env, build_host  # noqa: E402
from xdconfig import write_config  # noqa: E402

from xdcore.sim.classic import ClassicUnavailable, classic_env, fetch_classic, prepare_classic  # noqa: E402

OURS = BENCH / "_ours.py"


@dataclass(frozen=True)
class Run:
    """One measured run."""

    scenario: str
    who: str  # "classic" or "ours"
    guests: int
    wall: float
    xl: Counter  # subcommand -> number of xl processes
    cpu: float | None  # our process's own user+sys seconds
    rc: int
    problem: str = ""  # why the run did not do what it should ("" = it did)
    parallel: int | None = None
    output: str = ""
    cut: bool = False  # stopped at its time budget: wall is a lower bound
    xl_cpu: float | None = None  # CPU of the xl processes ours waited for (the simulator's cost)

    @property
    def wall_text(self) -> str:
        return f"> {self.wall:.0f}" if self.cut else f"{self.wall:.1f}"

    @property
    def xl_total(self) -> int:
        return sum(self.xl.values())


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def find(self, scenario: str, who: str, parallel: int | None = None, guests: int | None = None) -> Run | None:
        for r in self.runs:
            if (r.scenario, r.who) == (scenario, who) and (parallel is None or r.parallel == parallel) and (
                    guests is None or r.guests == guests):
                return r
        return None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def subcommands(calls: list[list[str]]) -> Counter:
    """'list -l', 'create --dryrun', 'shutdown', … per xl process."""
    c: Counter = Counter()
    for argv in calls:
        words = argv
        sub = next((w for w in words if not w.startswith("-")), "?")
        if sub == "list" and any(w in ("-l", "--long") for w in words):
            sub = "list -l"
        elif sub == "create" and any(w in ("-n", "--dryrun") for w in words):
            sub = "create --dryrun"
        c[sub] += 1
    return c


class Bench:
    def __init__(self, work: Path, classic_script: Path | None):
        self.work = work
        self.original = classic_script
        self.pycache = work / "pycache"
        self.n = 0

    def fresh(self, tag: str, guests: int, *, auto: bool, shutdown_s: float) -> BenchHost:
        self.n += 1
        root = self.work / f"{self.n:02d}-{tag}"
        return build_host(root, guests, auto=auto, latency={"shutdown": shutdown_s})

    def config(self, h: BenchHost, parallel: int = 1) -> Path:
        return write_config(h.root / "xendomains.conf", auto_dir=h.auto_dir, save_dir=None, run_dir=h.root / "run",
                            parallel=parallel)

    def classic(self, h: BenchHost) -> Path:
        assert self.original is not None
        lock_dir = h.root / "lock"
        lock_dir.mkdir(exist_ok=True)
        return prepare_classic(self.original, h.root / "xendomains.classic", bindir=h.bin_dir,
                               config=self.config(h), lock_dir=lock_dir)

    def env(self, h: BenchHost) -> dict[str, str]:
        return bench_env(h, self.pycache)

    def warm(self, h: BenchHost) -> None:
        """Compile the bytecode once (shim and ours) so no measured run pays for it."""
        env = self.env(h)
        subprocess.run([str(h.bin_dir / "xl"), "list"], env=env, capture_output=True, check=True)
        subprocess.run([sys.executable, str(OURS), "--config", str(self.config(h)), "plan", "stop"], env=env,
                       capture_output=True)
        h.reset_count()

    def run_classic(self, scenario: str, h: BenchHost, verb: str, budget: float | None = None) -> Run:
        """Run the classic script; past `budget` seconds stop it and report the budget as a lower bound."""
        script = self.classic(h)
        env = classic_env(h.bin_dir) | {k: v for k, v in self.env(h).items() if k.startswith("PYTHON")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        h.reset_count()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["bash", str(script), verb], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        cut = False
        try:
            out, _ = proc.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            cut = True
            stop_group(proc)
            out, _ = proc.communicate()
        wall = time.perf_counter() - t0
        return Run(scenario, "classic", len(h.names), budget if cut and budget else wall, subcommands(h.xl_calls()),
                   None, proc.returncode, output=out, cut=cut)

    def run_ours(self, scenario: str, h: BenchHost, verb: str, parallel: int = 1) -> Run:
        conf = self.config(h, parallel)
        usage = h.root / f"rusage-{verb}-{parallel}.txt"
        env = self.env(h) | {"XDBENCH_RUSAGE": str(usage)}
        h.reset_count()
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, str(OURS), "--config", str(conf), verb], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        try:
            u, s, cu, cs = (float(x) for x in usage.read_text().split())
            cpu: float | None = u + s
            child_cpu: float | None = cu + cs
        except (OSError, ValueError):
            cpu = child_cpu = None
        return Run(scenario, "ours", len(h.names), wall, subcommands(h.xl_calls()), cpu, done.returncode,
                   parallel=parallel, output=done.stdout + done.stderr, xl_cpu=child_cpu)

    def run_inproc(self, h: BenchHost, parallel: int) -> Run:
        """Our stop with the simulated xl in-process (bench/_inproc.py): the orchestration alone."""
        conf = self.config(h, parallel)
        h.reset_count()
        done = subprocess.run([sys.executable, str(BENCH / "_inproc.py"), str(conf), str(h.state_dir), str(parallel)],
                              env=self.env(h), capture_output=True, text=True)
        try:
            wall, cpu, rc = done.stdout.split()
            return Run("stop", "ours-inproc", len(h.names), float(wall), subcommands(h.xl_calls()), float(cpu),
                       int(rc), parallel=parallel, output=done.stderr)
        except ValueError:
            return Run("stop", "ours-inproc", len(h.names), math.nan, Counter(), None, done.returncode,
                       problem=f"no result: {done.stderr.strip()[-200:]}", parallel=parallel)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a run we started in its own session: the script and every process it spawned."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- scenarios -------------------------------------------------------------------------------


def checked_stop(run: Run, h: BenchHost) -> Run:
    left = h.running()
    problem = ""
    if left:
        problem = f"{len(left)} guest(s) still running: {' '.join(left[:5])}"
    elif run.rc != 0:
        problem = f"exit code {run.rc}"
    shut = run.xl.get("shutdown", 0)
    if not problem and shut < len(h.names):
        problem = f"only {shut} xl shutdown for {len(h.names)} guests"
    return Run(**{**run.__dict__, "problem": problem})


def bench_stop(b: Bench, res: Results, guests: int, seconds: float, parallels: list[int], classic: bool,
               inproc: bool = True) -> None:
    if classic:
        h = b.fresh("stop-classic", guests, auto=True, shutdown_s=seconds)
        b.warm(h)
        log(f"classic stop of {guests} guests ({seconds:g} s shutdown each; takes > {guests * seconds:.0f} s)")
        res.runs.append(checked_stop(b.run_classic("stop", h, "stop"), h))
    for p in parallels:
        h = b.fresh(f"stop-ours-p{p}", guests, auto=True, shutdown_s=seconds)
        b.warm(h)
        log(f"our stop of {guests} guests, XENDOMAINS_PARALLEL={p}")
        res.runs.append(checked_stop(b.run_ours("stop", h, "stop", p), h))
    if inproc and parallels:
        p = max(parallels)
        h = b.fresh(f"stop-inproc-p{p}", guests, auto=True, shutdown_s=seconds)
        b.warm(h)
        log(f"diagnostic: our stop of {guests} guests, XENDOMAINS_PARALLEL={p}, simulated xl in-process")
        r = b.run_inproc(h, p)
        left = h.running()
        problem = r.problem or (f"{len(left)} guest(s) still running" if left else "")
        res.runs.append(Run(**{**r.__dict__, "problem": problem}))


def configs_done(run: Run, h: BenchHost) -> int:
    """How many auto configs the classic run got through (its progress line names each)."""
    if "Starting auto Xen domains:" in run.output:
        return run.output.count("(skip)")
    words = run.output.split()
    return sum(1 for n in h.names if n in words)


def checked_start(run: Run, h: BenchHost) -> Run:
    problem = ""
    creates = run.xl.get("create", 0)
    if creates:
        problem = f"{creates} xl create although every guest runs"
    elif len(h.running()) != len(h.names):
        problem = "guests missing after start"
    elif run.cut:
        pass
    elif run.rc != 0:
        problem = f"exit code {run.rc}"
    elif run.who == "classic" and run.output.count("(skip)") != len(h.names):
        problem = f"{run.output.count('(skip)')} (skip) for {len(h.names)} running guests"
    return Run(**{**run.__dict__, "problem": problem})


def checked_status(run: Run, h: BenchHost) -> Run:
    problem = ""
    if run.cut:
        pass
    elif run.rc != 0:
        problem = f"exit code {run.rc} (expected 0: all auto guests up)"
    else:
        if run.who == "ours":
            missing = [n for n in h.names if f"{n}(" not in run.output]
        else:
            missing = [n for n in h.names if n not in run.output.split()]
        if missing:
            problem = f"{len(missing)} guest(s) not reported running"
    return Run(**{**run.__dict__, "problem": problem})


def bench_status_start(b: Bench, res: Results, configs: int, classic: bool, budget: float | None) -> None:
    small = max(2, configs // 10)
    for n, who in ((configs, "ours"), (small, "ours")) + (((configs, "classic"),) if classic else ()):
        h = b.fresh(f"auto{n}-{who}", n, auto=True, shutdown_s=1.0)
        b.warm(h)
        lock = h.root / "lock" / "xendomains"
        if who == "ours":
            log(f"our start, then status, with {n} auto configs, all running")
            res.runs.append(checked_start(b.run_ours("start", h, "start"), h))  # takes our lock: status sees it
            res.runs.append(checked_status(b.run_ours("status", h, "status"), h))
            continue
        for verb in ("start", "status"):
            limit = f" (stopped after {budget:g} s if not done)" if budget else ""
            log(f"classic {verb} with {n} auto configs, all running{limit}")
            if verb == "start":
                lock.unlink(missing_ok=True)  # else it only says "already running"
            else:
                lock.parent.mkdir(exist_ok=True)
                lock.touch()  # else it only says "unused"
            check = checked_start if verb == "start" else checked_status
            r = check(b.run_classic(verb, h, verb, budget), h)
            if r.cut:
                res.notes.append(f"classic {verb} with {n} configs was stopped at its {budget:g} s budget after "
                                 f"{configs_done(r, h)} of {n} configs ({r.xl_total} xl processes so far): its "
                                 "wall time and the speed-up are lower bounds (--classic-budget 0 runs it to the end)")
            res.runs.append(r)


def measure_sim_call(b: Bench, res: Results) -> None:
    """The simulator's own cost per `xl` process (Python start-up + the command), for the notes."""
    for n in (0, 200):
        h = b.fresh(f"xlcost{n}", n, auto=False, shutdown_s=1.0)
        b.warm(h)
        env = b.env(h)
        for argv in (["list"], ["list", "-l"]):
            k = 10
            t0 = time.perf_counter()
            for _ in range(k):
                subprocess.run([str(h.bin_dir / "xl"), *argv], env=env, capture_output=True, check=True)
            per = (time.perf_counter() - t0) / k
            res.notes.append(f"simulated `xl {' '.join(argv)}` with {n} guests: {per * 1000:.0f} ms per process (wall)")
    h = b.fresh("startup", 0, auto=False, shutdown_s=1.0)
    b.warm(h)
    r = b.run_ours("startup", h, "status")
    if r.cpu is not None:
        res.notes.append(f"our `xendomains status` on an empty host: {r.wall * 1000:.0f} ms wall, "
                         f"{r.cpu * 1000:.0f} ms own CPU (interpreter start-up + imports + one `xl list -l`)")


# -- the table -------------------------------------------------------------------------------

READING = """How to read it:

- *ratio vs ideal*: wall time over ceil(N/P)·t, the time P lanes need for N guests of t seconds each.
- *own CPU ms/guest*: user+sys CPU of the `xendomains` process itself (start-up and imports included,
  the `xl` children excluded), divided by the number of guests.
- *xl procs*: every simulated `xl` process, reads included, counted by the shims.
- *xl in-process (diagnostic)*: the same `Service.stop` with the simulated xl run in-process
  (bench/_inproc.py): no process is spawned, so it shows what the orchestration achieves when
  an `xl` costs what a real one does (a C program, a few ms).  With processes, each simulated
  `xl` is a Python interpreter costing ~15–25 ms of CPU, and 16 of them start at once per wave
  on 2 cores; that start-up delay is added to every wave.
- *> N*: the classic run was stopped at its time budget (`--classic-budget`); the wall time
  and the speed-up are lower bounds.
"""

HEAD = ("scenario", "wall s", "xl procs", "ratio vs ideal", "speed-up vs classic", "own CPU ms/guest", "goal", "met?")


def bench_mixed(b: Bench, args, classic_script: Path | None) -> str:
    """The mixed host: the table (markdown) and its notes."""
    from _mixed import MIXED_HEAD, Mixed, MixedBench, mixed_guests, mixed_rows

    scale = args.mixed_scale or (16.0 if args.quick else 8.0)
    m = Mixed(mixed_guests(args.mixed_guests), args.disk, args.link, scale)

    def env_for(state: Path, bin_dir: Path) -> dict[str, str]:
        h = BenchHost(state.parent, state, bin_dir, state / "auto", state / "save", state.parent / "xl-calls.txt", ())
        return bench_env(h, b.pycache)

    mb = MixedBench(b.work, m, env_for, OURS, classic_script)
    total = sum(mib for _, mib, _, _ in m.guests) / 1024
    log(f"mixed host: {len(m.guests)} guests, {total:.0f} GiB, disk {m.disk:g} MB/s, link {m.link:g} MB/s, "
        f"time scale ×{scale:g}; calibrating ours with a first small stop")
    mb.calibrate()
    runs = []
    if classic_script is not None:
        log("mixed host: classic stop")
        runs.append(mb.classic("classic"))
    p = args.mixed_parallel
    log(f"mixed host: ours, listing order, PARALLEL={p}")
    runs.append(mb.ours(f"ours listing PARALLEL={p}", parallel=p, schedule="listing"))
    log("mixed host: ours with the scheduler (PARALLEL=auto)")
    sched = mb.ours("ours scheduler PARALLEL=auto", parallel="auto", schedule="auto")
    runs.append(sched)
    deadline = round(0.6 * sched.makespan, 1)
    deadline_runs = []
    for label, par, schedule in ((f"ours listing PARALLEL={p}", p, "listing"), ("ours listing PARALLEL=auto", "auto", "listing"),
                                 ("ours scheduler PARALLEL=auto", "auto", "auto")):
        log(f"mixed host: {label} under a deadline of {deadline:g}s")
        deadline_runs.append(mb.ours(label, parallel=par, schedule=schedule, deadline=deadline))
    boot_scale = scale * 2
    log(f"mixed host: start restoring all {len(m.guests)} images (time scale ×{boot_scale:g})")
    boot = mb.boot(f"boot: restore {len(m.guests)} images, ours PARALLEL=auto", boot_scale)
    rs = mixed_rows(runs, deadline_runs, boot, deadline)
    widths = [max(len(MIXED_HEAD[i]), *(len(r[i]) for r in rs)) for i in range(len(MIXED_HEAD))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    table_text = "\n".join([line(MIXED_HEAD), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rs)])
    notes = [f"Mixed host: {len(m.guests)} guests, {total:.0f} GiB in all (0.5–32 GiB each, seed 14); one disk at "
             f"{m.disk:g} MB/s and one link at {m.link:g} MB/s; time scaled ÷{scale:g} (boot ÷{boot_scale:g}): memory "
             f"and fixed latencies divided, rates as named, so multiply seconds by {scale:g} for the real host; every "
             "4th guest may not migrate (refused by the host; `xendomains_stop = \"save, shutdown\"` in its config), "
             "every 7th re-dirties 40 MB/s while it migrates; 'graceful' = migrated or saved, the guest's state kept."]
    return table_text + "\n\n" + "\n".join(f"- {n}" for n in notes)


def rows(res: Results, stop_guests: int, seconds: float, configs: int) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []

    def fmt_xl(r: Run) -> str:
        return str(r.xl_total)

    def cpu(r: Run) -> str:
        return f"{r.cpu * 1000 / max(r.guests, 1):.1f}" if r.cpu is not None else "–"

    def verdict(ok: bool, r: Run) -> str:
        return f"NO ({r.problem})" if r.problem else ("yes" if ok else "NO")

    classic_stop = res.find("stop", "classic")
    if classic_stop:
        ideal = stop_guests * seconds
        out.append((f"stop {stop_guests}×{seconds:g}s: classic", f"{classic_stop.wall:.1f}", fmt_xl(classic_stop),
                    f"{classic_stop.wall / ideal:.2f}", "1.0", "–", "(baseline)",
                    f"NO ({classic_stop.problem})" if classic_stop.problem else "–"))
    for r in [r for r in res.runs if r.scenario == "stop" and r.who == "ours"]:
        p = r.parallel or 1
        ideal = math.ceil(stop_guests / p) * seconds
        ratio = r.wall / ideal
        speed = classic_stop.wall / r.wall if classic_stop else None
        label = "sequential" if p == 1 else f"PARALLEL={p}"
        goal, ok = "–", True
        if p == 16:
            goal = "≤ 1.25× ideal, ≥ 10× classic"
            ok = ratio <= 1.25 and (speed is not None and speed >= 10)
        out.append((f"stop {stop_guests}×{seconds:g}s: ours {label}", f"{r.wall:.1f}", fmt_xl(r), f"{ratio:.2f}",
                    f"{speed:.1f}" if speed else "–", cpu(r), goal,
                    verdict(ok, r) if goal != "–" or r.problem else "–"))
    for r in [r for r in res.runs if r.scenario == "stop" and r.who == "ours-inproc"]:
        ideal = math.ceil(stop_guests / (r.parallel or 1)) * seconds
        out.append((f"stop {stop_guests}×{seconds:g}s: ours PARALLEL={r.parallel}, xl in-process (diagnostic)",
                    f"{r.wall:.1f}", "0 (in-process)", f"{r.wall / ideal:.2f}",
                    f"{classic_stop.wall / r.wall:.1f}" if classic_stop else "–",
                    f"({r.cpu * 1000 / max(r.guests, 1):.1f} incl. sim)" if r.cpu is not None else "–",
                    "(orchestration alone)", f"NO ({r.problem})" if r.problem else "–"))
    for verb in ("status", "start"):
        c = res.find(verb, "classic", guests=configs)
        if c:
            out.append((f"{verb} {configs} configs: classic", c.wall_text, fmt_xl(c) + (" so far" if c.cut else ""),
                        "–", "1.0", "–", "(baseline)", f"NO ({c.problem})" if c.problem else "–"))
        big = res.find(verb, "ours", guests=configs)
        small = next((r for r in res.runs if r.scenario == verb and r.who == "ours" and r.guests != configs), None)
        if big:
            speed = c.wall / big.wall if c else None
            constant = small is not None and small.xl_total == big.xl_total
            ok = (speed is not None and speed >= 20) and constant
            xl = fmt_xl(big) + (f" ({small.xl_total} with {small.guests})" if small else "")
            speed_text = "–" if speed is None else (f"> {speed:.0f}" if c.cut else f"{speed:.0f}")
            out.append((f"{verb} {configs} configs: ours", f"{big.wall:.2f}", xl, "–", speed_text, cpu(big),
                        "≥ 20× classic, constant xl procs", verdict(ok, big)))
    return out


def table(rs: list[tuple[str, ...]]) -> str:
    widths = [max(len(HEAD[i]), *(len(r[i]) for r in rs)) if rs else len(HEAD[i]) for i in range(len(HEAD))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(HEAD), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rs)])


def machine() -> str:
    model = ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({model or platform.machine()}), {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, bash {bash_version()}")


def bash_version() -> str:
    r = subprocess.run(["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True)
    return r.stdout.strip()


def breakdown(res: Results) -> list[str]:
    out = []
    for r in res.runs:
        if r.scenario in ("stop", "status", "start"):
            label = f"{r.scenario} {r.who}" + (f" P={r.parallel}" if r.parallel else "") + f" ({r.guests})"
            cost = f"; their CPU {r.xl_cpu:.2f} s ({r.xl_cpu * 1000 / max(r.xl_total, 1):.0f} ms each)" if r.xl_cpu else ""
            calls = ", ".join(f"{k} {v}" for k, v in sorted(r.xl.items())) or "none (in-process)"
            out.append(f"{label}: {calls}{cost}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="16 guests of 0.5 s to stop, 20 configs, classic budget 20 s (about a minute)")
    ap.add_argument("--only", default="stop,status,cost,mixed,pool",
                    help="comma list of: stop, status (= status and start), cost, mixed, pool (40 guests onto 3 targets vs 1)")
    ap.add_argument("--stop-guests", type=int)
    ap.add_argument("--shutdown", type=float, help="seconds each guest takes to shut down (1; quick: 0.5)")
    ap.add_argument("--configs", type=int)
    ap.add_argument("--parallel", default="1,8,16", help="our XENDOMAINS_PARALLEL values for the stop")
    ap.add_argument("--no-classic", action="store_true", help="ours only")
    ap.add_argument("--classic-budget", type=float,
                    help="stop the classic status/start after this many seconds (60; quick: 20) and report a "
                         "lower bound (0: run to the end; with 200 configs that is many minutes)")
    ap.add_argument("--mixed-guests", type=int, default=40, help="guests of the mixed host (40)")
    ap.add_argument("--mixed-scale", type=float, help="time scale of the mixed host's disk and link (8; quick: 16)")
    ap.add_argument("--mixed-parallel", default="4", help="ours in listing order: XENDOMAINS_PARALLEL (4)")
    ap.add_argument("--disk", type=float, default=500.0, help="the mixed host's disk, MB/s at real speed (500)")
    ap.add_argument("--link", type=float, default=1250.0, help="its link to the target, MB/s at real speed (1250: 10 GbE)")
    ap.add_argument("--results", help="write the table there (default: bench/RESULTS.md for a full run)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)

    stop_guests = args.stop_guests or (16 if args.quick else 64)
    configs = args.configs or (20 if args.quick else 200)
    seconds = args.shutdown or (0.5 if args.quick else 1.0)
    budget = args.classic_budget if args.classic_budget is not None else (20.0 if args.quick else 60.0)
    only = set(args.only.split(","))
    parallels = [int(p) for p in args.parallel.split(",") if p]

    classic_script = None
    if not args.no_classic:
        try:
            classic_script = fetch_classic()
        except ClassicUnavailable as exc:
            log(f"classic script unavailable ({exc}); ours only")
    work = Path(tempfile.mkdtemp(prefix="xdbench-"))
    b = Bench(work, classic_script)
    res = Results()
    mixed_text = ""
    pool_runs: list = []
    started = time.time()
    load0 = os.getloadavg()
    try:
        if "stop" in only:
            bench_stop(b, res, stop_guests, seconds, parallels, classic_script is not None)
        if "status" in only:
            bench_status_start(b, res, configs, classic_script is not None, budget or None)
        if "cost" in only:
            measure_sim_call(b, res)
        if "mixed" in only:
            mixed_text = bench_mixed(b, args, classic_script)
        if "pool" in only:
            import pool_scenario

            log("pool: 40 guests onto one target, then onto three")
            pool_runs = pool_scenario.run(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work directory kept: {work}")
    elapsed = time.time() - started
    load1 = os.getloadavg()

    text = table(rows(res, stop_guests, seconds, configs)) if only - {"mixed", "pool"} else ""
    if mixed_text:
        text = (text + "\n\n" if text else "") + mixed_text
    if pool_runs:
        import pool_scenario

        text = (text + "\n\n" if text else "") + pool_scenario.table(pool_runs)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = (f"Run {when} on {machine()}; {'quick' if args.quick else 'full'} run, {elapsed:.0f} s in all; "
            f"load average {load0[0]:.1f} before, {load1[0]:.1f} after.")
    extra = [*res.notes, *("xl processes — " + line for line in breakdown(res))]
    print()
    print(head)
    print()
    print(text)
    print()
    for n in extra:
        print(f"- {n}")
    if args.results or not args.quick:
        dest = Path(args.results) if args.results else BENCH / "RESULTS.md"
        dest.write_text("# Evacuate fast: benchmark results\n\n"
                        "Produced by `python bench/evacuate.py` (see its docstring for the set-up).\n\n"
                        f"{head}\n\n{text}\n\n" + "".join(f"- {n}\n" for n in extra) + "\n" + READING)
        log(f"table written to {dest}")
    failed = any(r.problem for r in res.runs) or "| NO" in mixed_text or any(r.problem for r in pool_runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
