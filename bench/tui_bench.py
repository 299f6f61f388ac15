"""Console benchmark with 1,000 simulated guests, idle and on a loaded machine, side by side.

    python bench/tui_bench.py [--guests 1000] [--load N] [--repeat 5] [--idle-seconds 10]

Every measure is taken twice in one run: once as the machine is ("idle": no
load made by the benchmark; the load average it found is printed), and once
under a load the benchmark makes itself — N CPU-bound processes (a busy
loop each, same priority as the console; N = the number of CPUs unless
`--load N`), so "a loaded 2-core machine" is the same thing on every run.

1. refresh: the domain table receives a list where every row changed (the
   simulator's CPU times move on every look) — time to apply the diff
   (`DomainsRefreshed` handler: diff + update_cell in batch_update) and time
   until that frame is drawn.  Goal ≤ 100 ms.
2. first paint: from spawning `xdtui` in tmux to the host view on screen
   (median and worst of `--repeat` starts), with the 12-guest demo host and
   with 1,000 guests.  Goal ≤ 1 s.  Also the CPU time the console had used
   by then: what the machine must find for it, whatever else runs (a shared
   machine's own load adds to the loaded column's wall times, not to this).
3. idle CPU: `xdtui --demo --state DIR` running in a real terminal (tmux) on
   the 1,000-guest host, nobody touching it, CPU time of the process over
   `--idle-seconds`.  Goal ≤ 5 % of one core.

Prints measured numbers next to the goals; not a test (timings vary by machine).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from xdcore.model import DomainState  # noqa: E402
from xdcore.sim import host as simhost  # noqa: E402
from xdcore.sim.demo import build_demo, xendomains_conf  # noqa: E402
from xdcore.sim.testing import make_host  # noqa: E402
from xdcore.xenstore.watcher import diff_domains  # noqa: E402
from xdtui.app import make_app  # noqa: E402
from xdtui.demo import demo_host  # noqa: E402
from xdtui.messages import DomainsRefreshed  # noqa: E402
from xdtui.providers import Providers  # noqa: E402
from xdtui.widgets.domain_table import DomainTable  # noqa: E402


def big_host(state: Path, n: int) -> Path:
    """A simulated host with n running guests (plus a demo-style config), laid out once."""
    if (state / "xendomains.conf").exists():
        return state
    from xdcore.sim.testing import config_of, guest_config_text
    from xdcore.sim.xlcmd import domain_from_config

    layout = make_host(state, (), fast=True)
    now = time.time()
    with simhost.transaction(state) as st:  # one transaction: adding guests one by one is quadratic
        st.total_memory_mib = 1024 * 1024
        for i in range(n):
            name = f"guest{i:04d}"
            path = layout.configs_dir / f"{name}.cfg"
            path.write_text(guest_config_text(name, 512 + 256 * (i % 8), 1 + i % 4))
            dom = domain_from_config(st, config_of(path), str(path), now, True)
            dom.flags, dom.ready_at, dom.cpu_rate = "-b----", None, 0.05
            st.add(dom)
            if i < 50:
                (layout.auto_dir / f"{name}.cfg").symlink_to(path)
    for sub in ("lock", "run"):
        (state / sub).mkdir(exist_ok=True)
    (state / "xendomains.conf").write_text(xendomains_conf(state, fast=True))
    return state


async def bench_refresh(state: Path, rounds: int = 10) -> tuple[list[float], list[float], int]:
    host = demo_host(state)
    host = host.__class__(host.cfg, host.toolstack, label="bench", watch_interval=3600.0, demo_dir=state)
    app = make_app(host, Providers.frozen())
    apply_ms, frame_ms, cells = [], [], 0
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.host_screen
        while not screen.domains_seen:
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        table = screen.query_one(DomainTable)
        known = {d.name: d for d in await host.toolstack.list_domains()}
        for k in range(rounds):
            # every row changes: CPU time moves on by a visible amount, every other round the state too
            fresh = [dataclasses.replace(d, cpu_time=d.cpu_time + 61.0 * (k + 1),
                                         state=DomainState.from_flags("r-----" if k % 2 == 0 else "-b----"))
                     if not d.is_dom0 else d for d in await host.toolstack.list_domains()]
            change = diff_domains(known, fresh, "poll")
            known = {d.name: d for d in change.domains}
            t0 = time.perf_counter()
            screen.on_domains_refreshed(DomainsRefreshed(change))
            t1 = time.perf_counter()
            await pilot.pause()  # until the message queue is empty and the frame is drawn
            t2 = time.perf_counter()
            apply_ms.append((t1 - t0) * 1000)
            frame_ms.append((t2 - t0) * 1000)
            cells = max(cells, table.cells_written)
    return apply_ms, frame_ms, cells


class Tmux:
    def __init__(self) -> None:
        self.socket = f"bench-xdtui-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True).stdout

    def kill(self) -> None:
        self.run("kill-server")


def spawn_in_tmux(state: Path) -> tuple[Tmux, float]:
    t = Tmux()
    cmd = f"cd {shlex.quote(str(ROOT))} && env PYTHONPATH={shlex.quote(str(ROOT))} TERM=xterm-256color " \
          f"{sys.executable} -m xdtui.cli --demo --state {shlex.quote(str(state))}"
    start = time.perf_counter()
    t.run("-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", "120", "-y", "40", cmd)
    return t, start


def console_process(t: Tmux) -> psutil.Process:
    """The xdtui process in the tmux pane (the pane's shell may have exec'd it or forked it)."""
    proc = psutil.Process(int(t.run("display-message", "-p", "-t", "b", "#{pane_pid}").strip()))
    if "xdtui" not in " ".join(proc.cmdline()):
        proc = next(p for p in proc.children(recursive=True) if "xdtui" in " ".join(p.cmdline()))
    return proc


def first_paint(state: Path) -> tuple[float, float, float]:
    """(seconds to the first frame of the host view, seconds to the domain table filled, CPU seconds the
    console had used by then — what a loaded machine has to find for it, whatever else runs)."""
    t, start = spawn_in_tmux(state)
    frame = None
    try:
        while True:
            screen = t.run("capture-pane", "-p", "-t", "b")
            now = time.perf_counter() - start
            if frame is None and "Stage board" in screen:
                frame = now
            if "Domains (" in screen and "Name" in screen:
                cpu = console_process(t).cpu_times()
                return frame or now, now, cpu.user + cpu.system
            if now > 30:
                return frame or float("inf"), float("inf"), float("inf")
            time.sleep(0.02)  # each look is a tmux process: look often, not so often it loads the machine
    finally:
        t.kill()


def idle_cpu(state: Path, seconds: float) -> float:
    t, start = spawn_in_tmux(state)
    try:
        while "Domains (" not in t.run("capture-pane", "-p", "-t", "b"):
            time.sleep(0.05)
        proc = console_process(t)
        time.sleep(3.0)  # settle: first lists, figures, first watcher rounds
        c0, w0 = sum(proc.cpu_times()[:2]), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = sum(proc.cpu_times()[:2]), time.perf_counter()
        return (c1 - c0) / (w1 - w0) * 100
    finally:
        t.kill()


class Load:
    """N CPU-bound processes (a busy loop each, same priority as the console) for as long as the block runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Load":
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                               stdin=subprocess.DEVNULL, start_new_session=True))
        for p in self.procs:  # until every one of them is burning CPU (not still starting)
            ps = psutil.Process(p.pid)
            while sum(ps.cpu_times()[:2]) < 0.2:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


@dataclasses.dataclass
class Column:
    """One column of the table: every measure under one condition."""

    apply_ms: list[float]
    frame_ms: list[float]
    cells: int
    paint: dict[str, list[float]]  # host label -> seconds to the first frame, one per start
    filled: dict[str, list[float]]
    cpu: dict[str, list[float]]  # CPU seconds of the console until the table was filled
    idle_cpu: dict[str, float]
    loadavg: float


def measure(big: Path, small: Path, ns: argparse.Namespace, hosts: list[tuple[str, Path]]) -> Column:
    apply_ms, frame_ms, cells = asyncio.run(bench_refresh(big))
    paint: dict[str, list[float]] = {}
    filled: dict[str, list[float]] = {}
    used: dict[str, list[float]] = {}
    idle: dict[str, float] = {}
    if shutil.which("tmux"):
        for label, state in hosts:
            for _ in range(ns.repeat):
                f, d, c = first_paint(state)
                paint.setdefault(label, []).append(f)
                filled.setdefault(label, []).append(d)
                used.setdefault(label, []).append(c)
        for label, state in hosts:
            idle[label] = idle_cpu(state, ns.idle_seconds)
    return Column(apply_ms, frame_ms, cells, paint, filled, used, idle, os.getloadavg()[0])


def table(cols: list[tuple[str, Column]], guests: int) -> list[str]:
    """The printed table: one row per measure, one column per condition, the goal, met or not."""
    rows: list[tuple[str, list[str], str, list[float], float | None]] = []

    def row(name: str, values: list[float], fmt: str, goal: str, limit: float | None) -> None:
        rows.append((name, [fmt.format(v) for v in values], goal, values, limit))

    row("refresh, every row changed: apply (median)", [statistics.median(c.apply_ms) for _, c in cols], "{:.0f} ms", "≤ 100 ms", 100)
    row("refresh, every row changed: apply (max)", [max(c.apply_ms) for _, c in cols], "{:.0f} ms", "≤ 100 ms", 100)
    row("refresh incl. drawing the frame (median)", [statistics.median(c.frame_ms) for _, c in cols], "{:.0f} ms", "≤ 100 ms", 100)
    rows.append(("  cells rewritten per refresh", [str(c.cells) for _, c in cols], "", [], None))
    labels = list(cols[0][1].paint)
    for label in labels:
        row(f"first paint, {label} (median)", [statistics.median(c.paint[label]) for _, c in cols], "{:.2f} s", "≤ 1 s", 1)
        row(f"  table filled, {label} (median)", [statistics.median(c.filled[label]) for _, c in cols], "{:.2f} s", "≤ 1 s", 1)
        row(f"  table filled, {label} (worst)", [max(c.filled[label]) for _, c in cols], "{:.2f} s", "≤ 1 s", 1)
        rows.append((f"  CPU used by then, {label} (median)",
                     [f"{statistics.median(c.cpu[label]):.2f} s" for _, c in cols], "", [], None))
    for label in labels:
        row(f"idle CPU, {label} (% of one core)", [c.idle_cpu[label] for _, c in cols], "{:.1f} %", "≤ 5 %", 5)
    rows.append(("load average (1 min) at the end", [f"{c.loadavg:.1f}" for _, c in cols], "", [], None))
    w0 = max(len(r[0]) for r in rows) + 2
    ws = [max(len(title), 10) + 2 for title, _ in cols]
    head = f"{'measure':<{w0}}" + "".join(f"{title:>{w}}" for (title, _), w in zip(cols, ws)) + f"{'goal':>10}  met?"
    out = [head]
    for name, shown, goal, values, limit in rows:
        met = "" if limit is None else ("yes" if all(v <= limit for v in values) else "NO")
        out.append(f"{name:<{w0}}" + "".join(f"{v:>{w}}" for v, w in zip(shown, ws)) + f"{goal:>10}  {met}".rstrip())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--load", type=int, default=os.cpu_count() or 1, metavar="N",
                    help="CPU-bound processes making the loaded column (default: one per CPU)")
    ap.add_argument("--repeat", type=int, default=5, help="starts measured for each first paint")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xdtui-bench-") as tmp:
        big = big_host(Path(tmp) / "big", ns.guests)
        small = Path(tmp) / "demo"
        build_demo(small, fast=True)
        hosts = [("demo host (12 guests)", small), (f"{ns.guests} guests", big)]
        found = os.getloadavg()[0]
        idle = measure(big, small, ns, hosts)
        with Load(ns.load):
            loaded = measure(big, small, ns, hosts)
    print(f"xdtui benchmark — {ns.guests} simulated guests (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"load average {found:.1f} when it began)")
    if not shutil.which("tmux"):
        print("tmux not found: first paint and idle CPU not measured")
    for line in table([("idle", idle), (f"loaded ({ns.load} busy)", loaded)], ns.guests):
        print(line)


if __name__ == "__main__":
    main()
