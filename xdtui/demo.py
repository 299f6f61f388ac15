"""`xdtui --demo`: the console on the simulator's demo host, no root.

The host is laid out by the simulator's own demo builder (`xdsim demo`), so
the console, `xendomains --config DIR/xendomains.conf` and `xl` with DIR/bin
first on PATH all see the same simulated host.  A directory that already
holds a demo host is reused, so a headless `xendomains stop` run against it
from another terminal can be attached to.  Runs the console starts are
`xendomains` processes with the simulator's `xl` first on PATH (`run_env`).
"""

from __future__ import annotations

import os
from pathlib import Path

from xdcore.config import load_config
from xdcore.sim import host as simhost
from xdcore.sim.demo import build_demo
from xdcore.sim.inprocess import SimToolstack

from .host import HostContext

DEMO_CONF = "xendomains.conf"


def demo_host(state_dir: Path, fast: bool = False, *, rebuild: bool = False) -> HostContext:
    """Build (or reuse) the demo host in `state_dir` and point a HostContext at it."""
    state_dir = Path(state_dir)
    if rebuild or not ((state_dir / DEMO_CONF).is_file() and simhost.state_path(state_dir).is_file()):
        build_demo(state_dir, fast=fast)
    cfg = load_config(str(state_dir / DEMO_CONF))
    env = {"PATH": f"{state_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "XDSIM_STATE": str(state_dir), "XENDOMAINS_SYSLOG": "no"}
    return HostContext(cfg, SimToolstack(state_dir), label="demo host (simulated)",
                       watch_interval=0.5 if fast else 2.0, demo_dir=state_dir, lock_wait=5.0, run_env=env)
