"""Console benchmark with 1,000 simulated guests: refresh cost, idle CPU, first paint.

    python bench/tui_bench.py [--guests 1000] [--idle-seconds 10]

1. refresh: the domain table receives a list where every row changed (the
   simulator's CPU times move on every look) — time to apply the diff
   (`DomainsRefreshed` handler: diff + update_cell in batch_update) and time
   until that frame is drawn.  Goal ≤ 100 ms.
2. idle CPU: `xdtui --demo --state DIR` running in a real terminal (tmux) on
   the 1,000-guest host, nobody touching it, CPU time of the process over
   `--idle-seconds`.  Goal ≤ 5 % of one core.
3. first paint: from spawning `xdtui` in tmux to the domain table on screen.
   Goal ≤ 1 s (with the 12-guest demo host and with 1,000 guests).

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


def first_paint(state: Path) -> tuple[float, float]:
    """(seconds to the first frame of the host view, seconds to the domain table filled)."""
    t, start = spawn_in_tmux(state)
    frame = None
    try:
        while True:
            screen = t.run("capture-pane", "-p", "-t", "b")
            now = time.perf_counter() - start
            if frame is None and "Stage board" in screen:
                frame = now
            if "Domains (" in screen and "Name" in screen:
                return frame or now, now
            if now > 30:
                return frame or float("inf"), float("inf")
            time.sleep(0.005)
    finally:
        t.kill()


def idle_cpu(state: Path, seconds: float) -> float:
    t, start = spawn_in_tmux(state)
    try:
        while "Domains (" not in t.run("capture-pane", "-p", "-t", "b"):
            time.sleep(0.05)
        pane = int(t.run("display-message", "-p", "-t", "b", "#{pane_pid}").strip())
        proc = psutil.Process(pane)
        if "xdtui" not in " ".join(proc.cmdline()):
            proc = next(p for p in proc.children(recursive=True) if "xdtui" in " ".join(p.cmdline()))
        time.sleep(3.0)  # settle: first lists, figures, first watcher rounds
        c0, w0 = sum(proc.cpu_times()[:2]), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = sum(proc.cpu_times()[:2]), time.perf_counter()
        return (c1 - c0) / (w1 - w0) * 100
    finally:
        t.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xdtui-bench-") as tmp:
        big = big_host(Path(tmp) / "big", ns.guests)
        small = Path(tmp) / "demo"
        build_demo(small, fast=True)
        apply_ms, frame_ms, cells = asyncio.run(bench_refresh(big))
        print(f"xdtui benchmark — {ns.guests} simulated guests (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        print(f"{'measure':<44}{'measured':>14}{'goal':>12}")
        print(f"{'refresh, every row changed: apply (median)':<44}{statistics.median(apply_ms):>11.1f} ms{'≤ 100 ms':>12}")
        print(f"{'refresh, every row changed: apply (max)':<44}{max(apply_ms):>11.1f} ms{'≤ 100 ms':>12}")
        print(f"{'refresh incl. drawing the frame (median)':<44}{statistics.median(frame_ms):>11.1f} ms{'≤ 100 ms':>12}")
        print(f"{'  cells rewritten per refresh':<44}{cells:>14}")
        if shutil.which("tmux"):
            print(f"{'idle CPU, ' + str(ns.guests) + ' guests (% of one core)':<44}{idle_cpu(big, ns.idle_seconds):>12.1f} %{'≤ 5 %':>12}")
            print(f"{'idle CPU, demo host (12 guests)':<44}{idle_cpu(small, ns.idle_seconds):>12.1f} %{'≤ 5 %':>12}")
            for label, state in (("demo host (12 guests)", small), (f"{ns.guests} guests", big)):
                frame, filled = first_paint(state)
                print(f"{'first paint, ' + label:<44}{frame:>12.2f} s{'≤ 1 s':>12}")
                print(f"{'  domain table filled, ' + label:<44}{filled:>12.2f} s")
        else:
            print("tmux not found: idle CPU and first paint not measured")


if __name__ == "__main__":
    main()
