"""The kill matrix (issue 10): `xendomains` killed at random instants of a stop and of a start — zero guests lost.

Each trial, on a simulated host with 4 running guests (all in the auto directory):

1. `stop` (XENDOMAINS_PARALLEL 1 or 4, alternating) is killed at a random (seeded) instant;
2. `start` is killed at a random instant;
3. `start` runs to its end — the recovery.

The kill is SIGKILL or SIGTERM, sent to the xendomains process **alone** (its xl commands live
on in their own sessions and finish their work) or to its **group** — the process group and every
process it started, as systemd's control-group kill does: an xl save dies mid-way and, as on real
Xen 4.17, leaves its guest suspended (`---ss-`).

After the recovery every guest must be running, or be named in the start's report and in
`status` with its image in the quarantine (a guest left suspended by a dead save).  Anything
else is a lost guest.  The host is then reset to 4 running guests for the next trial.

Trials per cell: $XD_KILL_TRIALS (CI sets 30; 3 by default to keep developers' runs short),
seed $XD_KILL_SEED.  The counts are printed as the README's "Reliability" section states them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter

import psutil
import pytest

from xdcore import events as ev
from xdcore.savedir import QUARANTINE
from xdcore.sim import host as simhost
from xdcore.sim.testing import add_domain, config_of

from .helpers import E2EHost, kill_xl_children, read_progress

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("XD_KILL_TRIALS", "3"))
SEED = int(os.environ.get("XD_KILL_SEED", "20261130"))
GUESTS = ["k1", "k2", "k3", "k4"]


def _spawn(h: E2EHost, verb: str) -> subprocess.Popen:
    # its own process group, so that a group kill never reaches pytest; no pipes to fill or break
    return subprocess.Popen(h.argv(verb, json_out=False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=h.env(), start_new_session=True)


def _kill(proc: subprocess.Popen, sig: int, scope: str) -> None:
    if proc.poll() is not None:
        return
    kids: list[psutil.Process] = []
    if scope == "group":
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)  # its xl commands (own sessions)
        except psutil.NoSuchProcess:
            pass
    try:
        if scope == "group":
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    for k in kids:
        try:
            k.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _wait_running(h: E2EHost, proc: subprocess.Popen) -> None:
    """Until the run holds its lock (its pid in the lock file) or has ended."""
    from tests.support import wait_for

    def holds() -> bool:
        try:
            return proc.poll() is not None or h.lock.read_text().split()[1:2] == [str(proc.pid)]
        except (OSError, IndexError):
            return False

    wait_for(holds, what="the run to take its lock")


def _moment(h: E2EHost, verb: str) -> str:
    """Where the killed run was, from its progress file: before any command, mid-stage, or done."""
    evs = read_progress(h.progress)
    if not evs or not any(isinstance(e, ev.RunStarted) and e.verb == verb for e in evs):
        return "before it began"
    if any(isinstance(e, ev.RunFinished) for e in evs):
        return "after it ended"
    op = "save" if verb == "stop" else "restore"
    started = sum(1 for e in evs if isinstance(e, ev.CommandStarted) and op in e.argv)
    ended = sum(1 for e in evs if isinstance(e, ev.CommandFinished) and op in e.argv)
    return f"mid-{op}" if started > ended else ("between stages" if started else "before any " + op)


def _reset(h: E2EHost) -> None:
    """Back to 4 running guests, nothing in the save directory (the admin's way out, done by hand)."""
    kill_xl_children(h.layout.bin_dir)
    with simhost.transaction(h.state) as st:
        for d in list(st.domains):
            if d.domid != 0 and (d.name not in GUESTS or d.dying or d.flags[3] == "s" or d.busy):
                st.remove(d)
    have = h.domains()
    for g in GUESTS:
        if g not in have:
            add_domain(h.state, config_of(h.layout.configs[g]), config_path=str(h.layout.configs[g]))
    for p in h.save_entries():
        if p.is_dir():
            for q in p.iterdir():
                q.unlink()
            p.rmdir()
        else:
            p.unlink()
    if h.lock.exists() and not h.lock.is_dir():
        h.lock.unlink()


def _verdicts(h: E2EHost, recovery) -> dict[str, str]:
    doms = h.domains()
    qdir = h.save_dir / QUARANTINE
    jailed = {p.name for p in qdir.iterdir()} if qdir.is_dir() else set()
    out = {}
    status = None
    report = None
    for g in GUESTS:
        d = doms.get(g)
        if d is not None and not d.dying and d.flags[3] != "s" and not h.image_of(g).exists():
            out[g] = "restored" if recovery.outcomes.get(g) == "restored" else "running"
            continue
        if status is None:
            res = h.run("status")
            status = next(json.loads(ln) for ln in res.stdout.splitlines() if '"event": "status"' in ln
                          or '"event":"status"' in ln)
            report = (h.progress.parent / "last-start.json").read_text()
        named_status = g in {x["name"] for x in status["suspended"]} | {x["guest"] for x in status["quarantined"]}
        in_quarantine = any(n == h.image_of(g).name or n.startswith(h.image_of(g).name + ".") for n in jailed)
        if named_status and in_quarantine and f'"{g}"' in report:
            out[g] = "suspended, named, image quarantined" if d is not None else "quarantined, named"
        else:
            out[g] = f"LOST (domain {d.flags if d else 'gone'}, image {'yes' if h.image_of(g).exists() else 'no'}, " \
                     f"quarantine {sorted(jailed)}, status {status})"
    return out


@pytest.mark.parametrize("signame,scope", [("SIGKILL", "alone"), ("SIGKILL", "group"),
                                          ("SIGTERM", "alone"), ("SIGTERM", "group")])
def test_kill_matrix_no_guest_is_ever_lost(tmp_path, capsys, signame, scope):
    sig = getattr(signal, signame)
    rng = random.Random(f"{SEED}-{signame}-{scope}")
    h = E2EHost.make(tmp_path, guests=[(g, 256, 1) for g in GUESTS], auto=GUESTS,
                     XENDOMAINS_STOP_MAXWAIT=20, XENDOMAINS_START_MAXWAIT=20)
    h.sim("latency", "save", "0.15")
    h.sim("latency", "restore", "0.1")
    moments: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    lost: list[str] = []
    t0 = time.monotonic()
    try:
        for i in range(TRIALS):
            parallel = (1, 4)[i % 2]
            h.configure(XENDOMAINS_PARALLEL=parallel)
            for verb in ("stop", "start"):
                proc = _spawn(h, verb)
                _wait_running(h, proc)
                span = {"stop": 1.3 if parallel == 1 else 0.6, "start": 0.7 if parallel == 1 else 0.4}[verb]
                time.sleep(rng.uniform(0.0, span))  # the random instant within the run (not a wait for a condition)
                moments[f"{verb} killed {_moment(h, verb) if proc.poll() is None else 'after it ended'}"] += 1
                _kill(proc, sig, scope)
                proc.wait(timeout=120)
            recovery = h.run("start", timeout=120)
            assert "Traceback" not in recovery.stderr, recovery.describe()
            for g, v in _verdicts(h, recovery).items():
                verdicts[v if not v.startswith("LOST") else "LOST"] += 1
                if os.environ.get("XD_KILL_VERBOSE") and v not in ("running", "restored"):
                    with capsys.disabled():
                        print(f"\ntrial {i} {g}: {v}; moments {dict(moments)}\n" + "\n".join(
                            f"  [{m.level}] {m.text}" for m in recovery.messages("warning", "error")))
                if v.startswith("LOST"):
                    lost.append(f"trial {i} (PARALLEL={parallel}) {g}: {v}\n{recovery.describe()}")
            _reset(h)
    finally:
        kill_xl_children(h.layout.bin_dir)
    took = time.monotonic() - t0
    with capsys.disabled():
        print(f"\nkill matrix {signame} {scope}: {TRIALS} trials (stop then start killed at random instants, "
              f"PARALLEL 1 and 4, {len(GUESTS)} guests each, seed {SEED}, {took:.0f}s): "
              + ", ".join(f"{k} {v}" for k, v in sorted(moments.items()))
              + " | guests after the recovering start: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
              + f" | lost {len(lost)}")
    assert not lost, "\n\n".join(lost[:3])
