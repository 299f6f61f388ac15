"""Do the plans' estimates hold?  The plan's "about …" against the run it announced, on the demo host.

    python bench/estimates.py              # the demo host (a stop takes about 80 s): 2 stop/start cycles
    python bench/estimates.py --cycles 3
    python bench/estimates.py --fast       # the fast demo host: runs of a few seconds

On a fresh demo host (`xdsim demo`: a dozen guests, a disk of 500 MB/s, a
save that hangs until the watchdog), each cycle runs `xendomains plan stop`,
then `xendomains stop`, then `plan start` and `start`, and prints each
plan's estimate beside the wall time of the run it announced, in one table.
The first cycle plans before any run was measured (its source says
"simulated": the simulator's own latencies and bandwidths; on a real host
it would say "assumed"); later cycles plan from what the earlier runs
measured.  Goals (issue 13): the first within ±30 %, later ones within ±10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def exe(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name) or name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--fast", action="store_true", help="the fast demo host (tiny latencies)")
    ap.add_argument("--keep", action="store_true", help="keep the demo host's directory")
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-estimates-"))
    state = tmp / "host"
    try:
        subprocess.run([exe("xdsim"), "--state", str(state), "demo", *(["--fast"] if ns.fast else [])], check=True,
                       stdout=subprocess.DEVNULL)
        env = dict(os.environ, PATH=f"{state / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", XDSIM_STATE=str(state),
                   XENDOMAINS_SYSLOG="no")
        env.pop("XENDOMAINS_CONFIG", None)
        base = [exe("xendomains"), "--config", str(state / "xendomains.conf")]
        rows = []
        for cycle in range(1, ns.cycles + 1):
            for verb in ("stop", "start"):
                plan = json.loads(subprocess.run([*base, "--json", "plan", verb], env=env, check=True,
                                                 capture_output=True, text=True).stdout)
                t0 = time.monotonic()
                run = subprocess.run([*base, verb], env=env, capture_output=True, text=True)
                wall = time.monotonic() - t0
                err = (plan["estimate_s"] - wall) / wall * 100 if wall > 0 else 0.0
                first = cycle == 1
                goal = 30.0 if first else 10.0
                rows.append((cycle, verb, len(plan["guests"]), plan["estimate_source"], plan["estimate_s"], wall, err,
                             goal, abs(err) <= goal and run.returncode in (0, 1)))
                print(f"  cycle {cycle} {verb}: plan {plan['estimate_s']:.1f}s ({plan['estimate_source']}), "
                      f"run {wall:.1f}s, exit {run.returncode}", file=sys.stderr, flush=True)
        head = ("cycle", "verb", "guests", "estimate source", "plan s", "run s", "error", "goal", "met?")
        table = [head] + [(str(c), v, str(n), src, f"{p:.1f}", f"{w:.1f}", f"{e:+.0f}%", f"±{g:.0f}%", "yes" if ok else "NO")
                          for c, v, n, src, p, w, e, g, ok in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        line = lambda r: "| " + " | ".join(x.ljust(wd) for x, wd in zip(r, widths)) + " |"  # noqa: E731
        print(f"Plan estimates against the runs, demo host{' (fast)' if ns.fast else ''}:")
        print(line(head))
        print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
        for r in table[1:]:
            print(line(r))
        return 0 if all(r[-1] for r in rows) else 1
    finally:
        if ns.keep:
            print(f"demo host kept in {state}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
