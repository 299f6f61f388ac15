"""The mixed-host scenario of bench/evacuate.py: an evacuation bound by a shared disk and a shared link.

40 guests (memory drawn log-uniformly from 0.5–32 GiB, fixed seed), one save
disk, one migration target; every fourth guest may not migrate (the host
refuses it, and its config says `xendomains_stop = "save, shutdown"`); a few
guests re-dirty memory while they migrate.  Side by side, each on a fresh
copy of the host:

* the classic upstream script (sequential: migrate, else save);
* ours in listing order with a fixed XENDOMAINS_PARALLEL (XENDOMAINS_SCHEDULE=listing);
* ours with the scheduler (XENDOMAINS_PARALLEL=auto);
* the same two of ours under a deadline of 60% of the scheduler's makespan;
* the boot side: `start` restoring all 40 images over the disk.

Time is scaled: every guest's memory and every fixed latency is divided by
`scale` while the disk and the link keep the rates named (500 MB/s, 10 GbE
by default), so an evacuation of ~280 GiB takes seconds instead of minutes
(and its images fit in a test machine's free space, which the save-room
check really measures); every ratio is scale-free.  Makespan is measured
on the simulated host itself — from the first migrate/save/shutdown any `xl`
began to the last one's end (the simulator's history) — so the classic
script and ours are timed alike.  The physical lower bound of a run is
max(Σ saved MB / disk rate, Σ migrated MB / link rate, the longest single
guest), from what that run actually did.  Before the measured runs ours
learns the host's throughputs once from a small calibration stop (what a
first evacuation teaches it); every run of ours starts from that file.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from simhost import write_counting_shims

from xdcore.sim import host
from xdcore.sim.cli import main as xdsim
from xdcore.sim.testing import config_of, guest_config_text
from xdcore.sim.xlcmd import domain_from_config

TARGET = "xen02"
NOT_MIGRATABLE_EVERY = 4
DIRTY_EVERY = 7
SAVE_LAT, MIGRATE_LAT, RESTORE_LAT = 0.5, 1.0, 0.5  # the fixed part of each operation at real speed, s


@dataclass(frozen=True)
class Mixed:
    guests: tuple[tuple[str, int, bool, float], ...]  # name, MiB, migratable, dirty MB/s (real)
    disk: float  # MB/s at real speed
    link: float
    scale: float

    def sim_mib(self, mib: int) -> int:
        """A guest's memory on the scaled host."""
        return max(1, int(round(mib / self.scale)))

    @property
    def memory(self) -> dict[str, int]:
        """MiB on the scaled host, by guest."""
        return {g: self.sim_mib(m) for g, m, _, _ in self.guests}


def mixed_guests(n: int = 40, seed: int = 14, lo_gib: float = 0.5, hi_gib: float = 32.0) -> tuple:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        mib = int(round(1024 * lo_gib * (hi_gib / lo_gib) ** rng.random() / 64) * 64) or 512
        migratable = i % NOT_MIGRATABLE_EVERY != NOT_MIGRATABLE_EVERY - 1
        dirty = 40.0 if (migratable and i % DIRTY_EVERY == 3) else 0.0
        out.append((f"vm{i:02d}", mib, migratable, dirty))
    return tuple(out)


@dataclass
class MixedRun:
    label: str
    makespan: float  # s on the simulated host: first op began → last op ended
    bound: float
    outcomes: dict[str, str]
    plan: float | None = None  # the plan's predicted makespan
    rc: int = 0
    problem: str = ""
    graceful: int = 0  # guests migrated or saved (state kept)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.makespan / self.bound if self.bound else math.nan


def lay_out(root: Path, m: Mixed, *, auto: bool = True) -> tuple[Path, Path, Path, Path]:
    """A fresh simulated host for the scenario: (state dir, bin dir, auto dir, save dir)."""
    state = root / "host"
    host.init_state(state, fast=True)
    configs, auto_dir, save_dir, bin_dir = state / "configs", state / "auto", state / "save", root / "bin"
    for d in (configs, auto_dir, save_dir):
        d.mkdir(parents=True, exist_ok=True)
    now = time.time()
    built = []
    for name, mib, migratable, _ in m.guests:
        p = configs / f"{name}.cfg"
        text = guest_config_text(name, m.sim_mib(mib), 1)
        if not migratable:
            text += 'xendomains_stop = "save, shutdown"\n'
        p.write_text(text)
        if auto:
            (auto_dir / p.name).symlink_to(p)
        built.append((p, config_of(p)))
    with host.transaction(state) as st:
        st.total_memory_mib = 4096 + sum(m.memory.values())
        for p, config in built:
            dom = domain_from_config(st, config, str(p), now, True)
            dom.flags = "-b----"
            st.add(dom)
        st.latency.update({"create": 0.0, "restore": RESTORE_LAT / m.scale, "save": SAVE_LAT / m.scale,
                           "migrate": MIGRATE_LAT / m.scale, "shutdown": 0.5 / m.scale, "ack": 0.0, "destroy": 0.0,
                           "sysrq": 0.0, "list": 0.0})
        st.rate = {"save": 0.0, "migrate": 0.0, "restore": 0.0}
        st.resources = {"disk": m.disk, f"link:{TARGET}": m.link}
        st.dirty = {name: d for name, _, _, d in m.guests if d}
        st.faults = [host.Fault("migrate", name, "fail") for name, _, ok, _ in m.guests if not ok]
    write_counting_shims(state, bin_dir, root / "xl-calls.txt")
    return state, bin_dir, auto_dir, save_dir


def write_mixed_config(path: Path, *, auto_dir: Path, save_dir: Path, run_dir: Path, parallel: str,
                       schedule: str, deadline: float | None = None, migrate: str = TARGET) -> Path:
    lines = [
        f'XENDOMAINS_SAVE="{save_dir}"', f'XENDOMAINS_MIGRATE="{migrate}"', 'XENDOMAINS_SYSRQ=""',
        f'XENDOMAINS_AUTO="{auto_dir}"', "XENDOMAINS_AUTO_ONLY=false", "XENDOMAINS_RESTORE=true",
        "XENDOMAINS_CREATE_USLEEP=0", "XENDOMAINS_USLEEP=0", "XENDOMAINS_STOP_MAXWAIT=600",
        'XENDOMAINS_SHUTDOWN="--wait"', 'XENDOMAINS_SHUTDOWN_ALL="--all --wait"',
        f'XENDOMAINS_LOCKFILE="{run_dir / "ours.lock"}"', f'XENDOMAINS_PROGRESS="{run_dir / "progress.jsonl"}"',
        f"XENDOMAINS_PARALLEL={parallel}", f"XENDOMAINS_SCHEDULE={schedule}",
        f"XENDOMAINS_POLICY_DIR={run_dir / 'policy.d'}",
    ]
    if deadline:
        lines.append(f"XENDOMAINS_STOP_DEADLINE={deadline:.1f}")
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def sim_makespan(state: Path, ops: tuple[str, ...] = ("migrate", "save", "shutdown", "destroy")) -> float:
    """First start to last end of the state-changing xl commands `ops` (the simulator's history)."""
    hist = [h for h in host.load(state).history if len(h["argv"]) > 1
            and next((w for w in h["argv"][1:] if not w.startswith("-")), "") in ops]
    if not hist:
        return math.nan
    return max(h["end"] for h in hist) - min(h["t"] for h in hist)


def outcomes_of(state: Path, m: Mixed, save_dir: Path) -> dict[str, str]:
    """Where each guest ended, read from the host: migrated (on the target), saved (an image), or gone."""
    st = host.load(state)
    migrated = {g["name"] for g in st.targets.get(TARGET, [])}
    running = {d.name for d in st.domains}
    out = {}
    for name, *_ in m.guests:
        if name in migrated:
            out[name] = "migrated"
        elif (save_dir / name).exists():
            out[name] = "saved"
        elif name in running:
            out[name] = "running"
        else:
            out[name] = "off"
    return out


def lower_bound(m: Mixed, outcomes: dict[str, str]) -> float:
    disk, link = m.disk, m.link
    saved = sum(m.memory[g] for g, o in outcomes.items() if o == "saved")
    moved = sum(m.memory[g] for g, o in outcomes.items() if o == "migrated")
    longest = max([m.memory[g] / (disk if o == "saved" else link) for g, o in outcomes.items()
                   if o in ("saved", "migrated")] or [0.0])
    return max(saved / disk, moved / link, longest)


class MixedBench:
    """Runs the scenario's variants; `ours` and `classic` run a verb against a laid-out host."""

    def __init__(self, work: Path, m: Mixed, env_for, ours: Path, classic_script: Path | None):
        self.work, self.m, self.env_for, self.ours_script, self.classic_script = work, m, env_for, ours, classic_script
        self.n = 0
        self.learned: Path | None = None

    def fresh(self, tag: str, m: Mixed | None = None):
        self.n += 1
        root = self.work / f"mixed-{self.n:02d}-{tag}"
        return root, lay_out(root, m or self.m)

    def _env(self, state: Path, bin_dir: Path) -> dict[str, str]:
        return self.env_for(state, bin_dir)

    def run_ours(self, root: Path, lay, verb: str, *, parallel: str, schedule: str,
                 deadline: float | None = None, migrate: str = TARGET) -> tuple[int, str, float | None]:
        state, bin_dir, auto_dir, save_dir = lay
        run_dir = root / "run"
        conf = write_mixed_config(root / "xendomains.conf", auto_dir=auto_dir, save_dir=save_dir, run_dir=run_dir,
                                  parallel=parallel, schedule=schedule, deadline=deadline, migrate=migrate)
        if self.learned is not None:
            shutil.copy(self.learned, run_dir / "throughput.json")
        env = self._env(state, bin_dir)
        predicted = None
        if verb == "stop":
            p = subprocess.run([sys.executable, str(self.ours_script), "--config", str(conf), "--json", "plan", "stop"],
                               env=env, capture_output=True, text=True)
            try:
                predicted = float(json.loads(p.stdout)["estimate_s"])
            except (ValueError, KeyError):
                predicted = None
        done = subprocess.run([sys.executable, str(self.ours_script), "--config", str(conf), verb], env=env,
                              capture_output=True, text=True)
        return done.returncode, done.stdout + done.stderr, predicted

    def calibrate(self) -> Path:
        """A first, small evacuation teaches ours the host (throughput.json), as on a real host."""
        sizes = (512, 2048, 8192, 4096, 1024, 16384, 3072, 6144)  # half saved, half migrated, sizes spread
        small = Mixed(tuple((f"cal{i}", mib, i % 2 == 0, 0.0) for i, mib in enumerate(sizes)),
                      self.m.disk, self.m.link, self.m.scale)
        root, lay = self.fresh("calibrate", small)
        self.run_ours(root, lay, "stop", parallel="1", schedule="listing")
        learned = root / "run" / "throughput.json"
        self.learned = learned
        return learned

    def classic(self, label: str) -> MixedRun:
        from xdcore.sim.classic import classic_env, prepare_classic

        root, lay = self.fresh("classic")
        state, bin_dir, auto_dir, save_dir = lay
        conf = write_mixed_config(root / "xendomains.conf", auto_dir=auto_dir, save_dir=save_dir, run_dir=root / "run",
                                  parallel="1", schedule="listing")
        lock_dir = root / "lock"
        lock_dir.mkdir()
        script = prepare_classic(self.classic_script, root / "xendomains.classic", bindir=bin_dir, config=conf,
                                 lock_dir=lock_dir)
        env = classic_env(bin_dir) | {k: v for k, v in self._env(state, bin_dir).items() if k.startswith(("PYTHON", "XDSIM"))}
        done = subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, text=True)
        out = outcomes_of(state, self.m, save_dir)
        return self._result(label, state, out, done.returncode, None)

    def ours(self, label: str, *, parallel: str, schedule: str, deadline: float | None = None) -> MixedRun:
        root, lay = self.fresh(label.split()[0])
        rc, text, predicted = self.run_ours(root, lay, "stop", parallel=parallel, schedule=schedule, deadline=deadline)
        out = outcomes_of(lay[0], self.m, lay[3])
        r = self._result(label, lay[0], out, rc, predicted)
        if rc != 0 and not deadline:
            r.problem = f"exit code {rc}: {text.strip().splitlines()[-1] if text.strip() else ''}"
        return r

    def _result(self, label: str, state: Path, out: dict[str, str], rc: int, predicted: float | None) -> MixedRun:
        r = MixedRun(label, sim_makespan(state), lower_bound(self.m, out), out, predicted, rc)
        r.graceful = sum(1 for o in out.values() if o in ("migrated", "saved"))
        left = [g for g, o in out.items() if o == "running"]
        if left:
            r.problem = f"{len(left)} guest(s) still running"
        return r

    def boot(self, label: str, boot_scale: float) -> MixedRun:
        """Restore every guest's image with `start`: first save all 40 (instantly), then restore over the disk."""
        m = Mixed(self.m.guests, self.m.disk, self.m.link, boot_scale)
        root, lay = self.fresh("boot", m)
        state, bin_dir, auto_dir, save_dir = lay
        with host.transaction(state) as st:  # the images are written at no cost: only the restore is measured
            saved_rates, st.resources = st.resources, {}
            st.latency["save"] = 0.0
            st.faults = []
        env = self._env(state, bin_dir)
        for name, *_ in m.guests:
            subprocess.run([str(bin_dir / "xl"), "save", name, str(save_dir / name)], env=env, capture_output=True,
                           check=True)
        with host.transaction(state) as st:
            st.resources = saved_rates
            st.history = []
        for p in auto_dir.iterdir():  # restores only: nothing else to create
            p.unlink()
        rc, text, _ = self.run_ours(root, lay, "start", parallel="auto", schedule="auto")
        st = host.load(state)
        restored = {d.name for d in st.domains}
        makespan = sim_makespan(state, ("restore",))
        bound = sum(m.memory.values()) / m.disk
        r = MixedRun(label, makespan, bound, {n: ("restored" if n in restored else "left") for n, *_ in m.guests}, None, rc)
        missing = [n for n, *_ in m.guests if n not in restored]
        if missing or rc != 0:
            r.problem = f"{len(missing)} not restored, exit {rc}"
        return r


def mixed_rows(runs: list[MixedRun], deadline_runs: list[MixedRun], boot: MixedRun | None, deadline: float) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    by = {r.label: r for r in runs}
    classic = next((r for r in runs if r.label.startswith("classic")), None)
    for r in runs:
        goal, ok = "–", True
        plan = f"{r.plan:.1f}" if r.plan is not None else "–"
        err = f"{(r.plan - r.makespan) / r.makespan * 100:+.0f}%" if r.plan is not None and r.makespan else "–"
        if r.label.startswith("ours scheduler"):
            goal = "≤ 1.10× bound; plan ±10%"
            ok = r.ratio <= 1.10 and r.plan is not None and abs(r.plan - r.makespan) <= 0.10 * r.makespan
        speed = f"{classic.makespan / r.makespan:.1f}" if classic and r.makespan else "–"
        rows.append((r.label, f"{r.makespan:.1f}", f"{r.bound:.1f}", f"{r.ratio:.2f}", plan, err, speed,
                     _outcomes(r), goal, (f"NO ({r.problem})" if r.problem else ("yes" if ok else "NO")) if goal != "–" or r.problem else "–"))
    best_fixed = max((r.graceful for r in deadline_runs if not r.label.startswith("ours scheduler")), default=0)
    for r in deadline_runs:
        goal, verdict = "–", "–"
        if r.label.startswith("ours scheduler"):
            goal = "graceful ≥ every fixed order"
            verdict = "yes" if r.graceful >= best_fixed else "NO"
        rows.append((f"{r.label} (deadline {deadline:.1f}s)", f"{r.makespan:.1f}", "–", "–", "–", "–", "–",
                     f"{r.graceful} graceful; " + _outcomes(r), goal, verdict))
    if boot is not None:
        ok = boot.ratio <= 1.10 and not boot.problem
        rows.append((boot.label, f"{boot.makespan:.1f}", f"{boot.bound:.1f}", f"{boot.ratio:.2f}", "–", "–", "–",
                     f"{sum(1 for o in boot.outcomes.values() if o == 'restored')} restored", "≤ 1.10× Σ/disk",
                     f"NO ({boot.problem})" if boot.problem else ("yes" if ok else "NO")))
    return rows


def _outcomes(r: MixedRun) -> str:
    counts: dict[str, int] = {}
    for o in r.outcomes.values():
        counts[o] = counts.get(o, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


MIXED_HEAD = ("mixed host", "makespan s", "bound s", "ratio", "plan s", "plan err", "speed-up vs classic",
              "outcome", "goal", "met?")
