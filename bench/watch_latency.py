"""How fast the live domain view notices a created, a saved and a migrated guest.

Runs a simulated host with its simulated xenstored, follows it with
`xdcore.xenstore.watcher.watch_domains` twice — once through XenStore watches,
once by polling only — and prints, per kind of change, the time from the host
state being written to the watcher yielding the change.  The XenStore column
is expected well under 100 ms; the polling column under one poll interval.

    python bench/watch_latency.py [--rounds 20] [--interval 0.5]

Each change is made as the simulator's xl makes it, through
`xdcore.sim.host.transaction`: a create adds a running guest; a save pauses the
guest and then removes it; a migrate pauses it, renames it `NAME--incoming` style
on the host side and removes it.  The toolstack is a read of the host snapshot
(no process spawn), so the figures measure the watcher, not `xl list -l`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xdcore.model import Domain, DomainState  # noqa: E402
from xdcore.sim import host  # noqa: E402
from xdcore.xenstore.watcher import DomainsChanged, watch_domains  # noqa: E402


class SnapshotToolstack:
    """list_domains straight from the simulated host's state file."""

    def __init__(self, state: Path):
        self.state = state
        self.calls = 0

    async def list_domains(self) -> list[Domain]:
        self.calls += 1
        snap = host.load_snapshot(self.state)
        return [
            Domain(
                domid=d.domid, name=d.name, uuid=d.uuid, memory_mib=d.memory_kib // 1024,
                maxmem_mib=d.maxmem_kib // 1024, vcpus=d.vcpus, cpu_time=d.cpu_time,
                state=DomainState.from_flags(d.flags), domain_type=d.domain_type,
            )  # fmt: skip
            for d in snap.domains
        ]


def written_at(state: Path) -> float:
    return os.stat(host.state_path(state)).st_mtime_ns / 1e9


def create(state: Path, name: str) -> float:
    with host.transaction(state) as st:
        st.add(host.SimDomain(
            domid=st.new_domid(), name=name, uuid=host.new_uuid(), memory_kib=262144, maxmem_kib=262144,
            current_kib=262144, vcpus=1, online_vcpus=1, flags="-b----", start_time=time.time(),
        ))  # fmt: skip
    return written_at(state)


def save(state: Path, name: str) -> float:
    with host.transaction(state) as st:
        st.by_name(name).flags = "--p---"
    with host.transaction(state) as st:
        st.remove(st.by_name(name))
    return written_at(state)


def migrate(state: Path, name: str) -> float:
    with host.transaction(state) as st:
        st.by_name(name).flags = "--p---"
    with host.transaction(state) as st:
        dom = st.by_name(name)
        st.remove(dom)
        st.targets.setdefault("otherhost", []).append({"name": name})
    return written_at(state)


async def measure(state: Path, socket: str, rounds: int, interval: float, via_xenstore: bool) -> dict[str, list[float]]:
    ts = SnapshotToolstack(state)
    path = socket if via_xenstore else str(state / "no-xenstored-here.sock")
    gen = watch_domains(ts, interval=interval, xenstore_path=path, safety_interval=600.0)
    first = await anext(gen)
    expected = "xenstore" if via_xenstore else "poll"
    if first.source != expected:
        raise SystemExit(f"watcher runs in {first.source!r} mode, expected {expected!r}")
    seen: asyncio.Queue[tuple[float, DomainsChanged]] = asyncio.Queue()

    async def pump() -> None:
        async for change in gen:
            seen.put_nowait((time.time(), change))

    task = asyncio.ensure_future(pump())
    results: dict[str, list[float]] = {"created": [], "saved": [], "migrated": []}

    async def wait_for(name: str, field: str, since: float) -> float:
        while True:
            at, change = await asyncio.wait_for(seen.get(), timeout=max(5.0, 3 * interval))
            if name in getattr(change, field):
                return at - since

    try:
        for i in range(rounds):
            for kind, op, field in (("created", create, "appeared"), ("saved", save, "gone")):
                name = f"bench-{i}-a"  # created, then saved
                t = await asyncio.to_thread(op, state, name)
                results[kind].append(await wait_for(name, field, t))
            name = f"bench-{i}-b"
            t = await asyncio.to_thread(create, state, name)
            await wait_for(name, "appeared", t)
            t = await asyncio.to_thread(migrate, state, name)
            results["migrated"].append(await wait_for(name, "gone", t))
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await gen.aclose()
    return results


def fmt(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval of the polling run (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xd-bench-") as tmp:
        state = Path(tmp) / "host"
        host.init_state(state, fast=True)
        socket = state / "xenstored.sock"
        server = subprocess.Popen(
            [sys.executable, "-m", "xdcore.sim.xenstored", "--state", str(state)], cwd=REPO,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not socket.exists():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("simulated xenstored did not start")
                time.sleep(0.01)
            xs_results = asyncio.run(measure(state, str(socket), args.rounds, args.interval, True))
            poll_results = asyncio.run(measure(state, str(socket), max(3, args.rounds // 4), args.interval, False))
        finally:
            server.terminate()
            server.wait(10)
    print(f"watch_domains latency, host change -> change yielded ({args.rounds} rounds; poll interval {args.interval}s)")
    print(f"{'':10} {'via XenStore watches':<58} | polling only")
    worst = 0.0
    for kind in ("created", "saved", "migrated"):
        worst = max(worst, max(xs_results[kind]))
        print(f"{kind:10} {fmt(xs_results[kind])} | {fmt(poll_results[kind])}")
    ok_xs = worst < 0.100
    ok_poll = all(max(v) <= args.interval + 0.05 for v in poll_results.values())
    print(f"XenStore worst case {worst * 1000:.1f} ms: {'within' if ok_xs else 'OVER'} 100 ms")
    print(f"polling worst case within one interval (+50 ms slack): {'yes' if ok_poll else 'NO'}")
    return 0 if ok_xs and ok_poll else 1


if __name__ == "__main__":
    sys.exit(main())
