"""A host that looks the same every time, for snapshot tests: fake toolstack, fixed paths, scripted events."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

from tests.core.fakes import FakeToolstack
from xdcore.config import Config
from xdcore.events import (
    CommandStarted,
    Event,
    GuestFinished,
    GuestPlanned,
    GuestSkipped,
    LockTaken,
    MessageLogged,
    RunStarted,
    StageFinished,
    StageStarted,
)
from xdcore.model import XL_SAVE_MAGIC, Domain, DomainState
from xdtui.host import HostContext
from xdtui.providers import FROZEN_AT

ROOT = Path("/tmp/xdtui-snapshots")  # fixed: paths show on screen
GUESTS = [  # name, MiB, vCPUs, flags, cpu seconds
    ("web01", 2048, 2, "-b----", 4321.0), ("web02", 2048, 2, "r-----", 5012.5), ("db-primary", 8192, 4, "-b----", 86400.0),
    ("db-replica", 4096, 2, "-b----", 40100.0), ("mail", 1024, 1, "--p---", 720.0), ("dns1", 512, 1, "-b----", 1440.0),
    ("backup", 2048, 2, "-b----", 2160.0), ("legacy-app", 0, 0, "-b---d", 99.0),
]
AUTO = ["web01", "web02", "db-primary", "dns1", "intranet"]
SAVED = ["wiki", "gitlab"]


def _image(path: Path, name: str, size: int) -> None:
    cfg = json.dumps({"c_info": {"name": name}}).encode() + b"\0"
    head = XL_SAVE_MAGIC + struct.pack("<IIIII", 0x01020304, 3, 0, 4 + len(cfg), len(cfg)) + cfg
    path.write_bytes(head + b"\0" * (size - len(head)))
    os.utime(path, (FROZEN_AT - 5 * 3600, FROZEN_AT - 5 * 3600))


def scripted_host(name: str, extra: int = 0) -> HostContext:
    """A fresh fixed directory ROOT/name with auto configs and save images, and a fake toolstack
    (`extra` more guests vm001… for a big host)."""
    root = ROOT / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "auto").mkdir(parents=True)
    (root / "save").mkdir()
    (root / "run").mkdir()
    ts = FakeToolstack()
    for g, mem, vcpus, flags, cpu in GUESTS:
        d = ts.add(g, mem, flags)
        ts.domains[d.domid] = Domain(d.domid, g, memory_mib=mem, vcpus=vcpus, cpu_time=cpu,
                                     state=DomainState.from_flags(flags))
    for i in range(extra):
        d = ts.add(f"vm{i + 1:03d}", 1024 + 512 * (i % 4), "-b----")
        ts.domains[d.domid] = Domain(d.domid, d.name, memory_mib=d.memory_mib, vcpus=1 + i % 2, cpu_time=60.0 * (i % 50),
                                     state=DomainState.from_flags("-b----"))
    for g in AUTO:
        p = root / "auto" / f"{g}.cfg"
        p.write_text(f'name = "{g}"\n')
        ts.configs[p] = g
    for i, g in enumerate(SAVED):
        _image(root / "save" / g, g, 4096 * (i + 1))
    cfg = Config(path=root / "xendomains.conf", auto_dir=root / "auto", save_dir=root / "save",
                 lockfile=root / "lock", progress=root / "run" / "progress.jsonl", shutdown=("--wait",),
                 shutdown_all=("--all", "--wait"), stop_maxwait=300, parallel=2)
    return HostContext(cfg, ts, label="xenhost01", watch_interval=3600.0)


def evacuation_events(run: str = "20251009T085000-abc123", pid: int = 4242) -> list[Event]:
    """An evacuation two minutes in: some guests saved, two running, one waiting."""
    t0 = FROZEN_AT - 120
    ev: list[Event] = [
        RunStarted(run=run, at=t0, verb="stop", pid=pid, toolstack="xl", parallel=2,
                   stages=("select", "sysrq", "migrate", "save", "shutdown", "shutdown_all", "cleanup")),
        LockTaken(run=run, at=t0, path="/var/lock/xendomains"),
        StageStarted(run=run, at=t0, stage="select"),
        StageFinished(run=run, at=t0 + 0.2, stage="select", outcome="done", elapsed=0.2, detail="7 selected, 0 skipped"),
    ]
    plan = [("web01", ("migrate", "save", "shutdown")), ("web02", ("migrate", "save", "shutdown")),
            ("db-primary", ("migrate", "save", "shutdown")), ("db-replica", ("migrate", "save", "shutdown")),
            ("mail", ("migrate", "save", "shutdown")), ("dns1", ("migrate", "save", "shutdown")),
            ("backup", ("migrate", "save", "shutdown"))]
    for i, (g, stages) in enumerate(plan):
        ev.append(GuestPlanned(run=run, at=t0 + 0.3, guest=g, domid=i + 1, stages=stages, memory_mib=2048))
    ev.append(GuestSkipped(run=run, at=t0 + 0.3, guest="legacy-app", reason="dying: no migrate, save or shutdown", domid=8))

    def handled(g, start, stages_outcomes, outcome):
        t = start
        for st, oc, secs in stages_outcomes:
            ev.append(StageStarted(run=run, at=t, stage=st, guest=g, timeout=300))
            t += secs
            ev.append(StageFinished(run=run, at=t, stage=st, guest=g, outcome=oc, elapsed=secs))
        ev.append(GuestFinished(run=run, at=t, guest=g, outcome=outcome, elapsed=t - start))

    handled("web01", t0 + 1, [("migrate", "done", 14.2)], "migrated")
    handled("web02", t0 + 1, [("migrate", "failed", 3.1), ("save", "done", 21.7)], "saved")
    handled("dns1", t0 + 16, [("migrate", "done", 8.0)], "migrated")
    ev.append(MessageLogged(run=run, at=t0 + 4.1, level="error", guest="web02",
                            text="Migrate of web02 failed: xl migrate exited 1: Target reported a problem; falls back to save"))
    ev.append(StageStarted(run=run, at=t0 + 30, stage="migrate", guest="db-primary", timeout=300))
    ev.append(CommandStarted(run=run, at=t0 + 30, argv=("xl", "migrate", "3", "host2"), timeout=300, guest="db-primary", stage="migrate"))
    handled("mail", t0 + 26, [("migrate", "done", 6.5)], "migrated")
    ev.append(StageStarted(run=run, at=t0 + 95, stage="migrate", guest="db-replica", timeout=300))
    ev.append(CommandStarted(run=run, at=t0 + 95, argv=("xl", "migrate", "4", "host2"), timeout=300, guest="db-replica", stage="migrate"))
    ev.sort(key=lambda e: e.at)
    return ev
