"""The pool scenario of bench/evacuate.py: 40 guests onto three targets vs one target, side by side.

    python bench/evacuate.py --only pool          # or: python bench/pool_scenario.py

One simulated host runs 40 guests (512 MiB to 3 GiB, 62 GiB in all); three
peers (xen02..xen04) each have 24 GiB free.  Both runs use the same host,
sizes, parallelism and physics — each link to a target carries 4000 MB/s
shared by the migrations on it, the save disk 1000 MB/s shared by the saves:

* one target, the classic configuration: `XENDOMAINS_MIGRATE="xen02"`.  xen02
  fills up, every later migration is refused and falls back to a save;
* three targets: `XENDOMAINS_MIGRATE_TARGETS="xen02 xen03 xen04"`, guests
  placed by room.

Printed: guests kept running (migrated rather than saved), saved, and the
makespan of the stop, with the ratios.  Nothing is faked: a run that left a
guest on the host or lost one says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from xdcore.sim import host, pool  # noqa: E402
from xdcore.sim.cli import main as xdsim  # noqa: E402
from xdcore.sim.testing import make_host  # noqa: E402

GUESTS = 40
SIZES = (512, 1024, 1536, 2048, 3072)  # MiB, cycled: 40 guests, 62 GiB
PEER_FREE_MIB = 24 * 1024
LINK_MBPS = 4000.0
DISK_MBPS = 1000.0
PARALLEL = 8
PER_LINK = 4


@dataclass(frozen=True)
class PoolRun:
    label: str
    migrated: int
    saved: int
    other: int
    makespan: float
    problem: str = ""


def _layout(root: Path) -> tuple[Path, dict[str, Path]]:
    guests = [(f"vm{i:02d}", SIZES[i % len(SIZES)], 1) for i in range(GUESTS)]
    layout = make_host(root / "xen01", guests, fast=True)
    sdir = layout.state_dir
    pool.rename_self(sdir, "xen01")
    with host.transaction(sdir) as st:
        st.total_memory_mib = 2048 + sum(g[1] for g in guests) + 4096
        for op in ("migrate", "save", "shutdown", "create", "restore", "destroy", "ack"):
            st.latency[op] = 0.05 if op in ("migrate", "save") else 0.0
    peers = {}
    for name in ("xen02", "xen03", "xen04"):
        peers[name] = Path(pool.add_member(sdir, name, 2048 + PEER_FREE_MIB))
        xdsim(["--state", str(sdir), "resource", "link", name, repr(LINK_MBPS)])
    xdsim(["--state", str(sdir), "resource", "disk", repr(DISK_MBPS)])
    return sdir, peers


def _config(sdir: Path, migrate: str, targets: str) -> Path:
    conf = sdir / "xendomains.conf"
    lines = [f'XENDOMAINS_SAVE="{sdir / "save"}"', f'XENDOMAINS_AUTO="{sdir / "auto"}"',
             f'XENDOMAINS_MIGRATE="{migrate}"', f'XENDOMAINS_MIGRATE_TARGETS="{targets}"',
             f"XENDOMAINS_LOCKFILE={sdir / 'lock' / 'xendomains'}", f"XENDOMAINS_PROGRESS={sdir / 'run' / 'progress.jsonl'}",
             "XENDOMAINS_STOP_MAXWAIT=300", "XENDOMAINS_USLEEP=0", "XENDOMAINS_CREATE_USLEEP=0",
             'XENDOMAINS_SHUTDOWN="--wait"', 'XENDOMAINS_SHUTDOWN_ALL="--all --wait"', "XENDOMAINS_TOOLSTACK=xl",
             f"XENDOMAINS_PARALLEL={PARALLEL}", f"XENDOMAINS_PARALLEL_MIGRATE={PER_LINK}",
             "XENDOMAINS_TARGET_RESERVE_MIB=1024"]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _xendomains() -> str:
    here = Path(sys.executable).parent / "xendomains"
    return str(here) if here.exists() else "xendomains"


def one_run(root: Path, label: str, migrate: str, targets: str) -> PoolRun:
    sdir, peers = _layout(root)
    conf = _config(sdir, migrate, targets)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENDOMAINS_")}
    env.update(PATH=f"{sdir / 'bin'}{os.pathsep}{env.get('PATH', '')}", XDSIM_STATE=str(sdir), XENDOMAINS_SYSLOG="no")
    t0 = time.monotonic()
    done = subprocess.run([_xendomains(), "--config", str(conf), "stop"], capture_output=True, text=True, env=env,
                          timeout=900)
    makespan = time.monotonic() - t0
    report = json.loads((sdir / "run" / "last-stop.json").read_text())
    outcomes = [g["outcome"] for g in report["guests"]]
    migrated, saved = outcomes.count("migrated"), outcomes.count("saved")
    problem = ""
    left = [d.name for d in host.load_snapshot(sdir).domains if d.domid]
    on_peers = [d.name for p in peers.values() for d in host.load_snapshot(p).domains if d.domid]
    if done.returncode != 0:
        problem = f"exit {done.returncode}"
    elif left:
        problem = f"{len(left)} guests left on the host"
    elif len(on_peers) != migrated or len(set(on_peers)) != len(on_peers):
        problem = f"{len(on_peers)} guests on the peers, {migrated} migrated"
    return PoolRun(label, migrated, saved, len(outcomes) - migrated - saved, makespan, problem)


def run(work: Path) -> list[PoolRun]:
    """Both configurations on fresh, identical pools under `work`."""
    return [one_run(work / "pool-single", 'one target: XENDOMAINS_MIGRATE="xen02"', "xen02", ""),
            one_run(work / "pool-three", 'three targets: XENDOMAINS_MIGRATE_TARGETS="xen02 xen03 xen04"', "",
                    "xen02 xen03 xen04")]


def table(runs: list[PoolRun]) -> str:
    head = ("pool: 40 guests (62 GiB), 3 peers × 24 GiB free", "kept running (migrated)", "saved", "makespan s",
            "vs one target", "met?")
    base = runs[0]
    rows = [head]
    for r in runs:
        ratio = "1.0" if r is base else (f"{r.migrated / base.migrated:.1f}× kept, "
                                         f"{base.makespan / r.makespan:.1f}× faster" if base.migrated and r.makespan else "–")
        rows.append((r.label, f"{r.migrated}/{GUESTS}", str(r.saved), f"{r.makespan:.1f}", ratio,
                     "no: " + r.problem if r.problem else "yes"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows[1:])])


if __name__ == "__main__":
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="xdbench-pool-"))
    try:
        runs = run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(runs))
    sys.exit(1 if any(r.problem for r in runs) else 0)
