"""The host the console drives: config + toolstack, and how to build a Service for a run.

No Textual here.  The CLI makes one `HostContext` (this host, or the demo
host), the app factory takes it, and every run or plan builds its Service
through `service()` so the console and `xendomains` run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xdcore.config import Config
from xdcore.events import EventBus
from xdcore.pipeline.control import RunControl
from xdcore.plan import estimator
from xdcore.service import Service
from xdcore.toolstack.port import Toolstack


@dataclass(frozen=True)
class HostContext:
    """What the console is pointed at.

    `label` names the host in the header ("demo" for the simulated one);
    `watch_interval` is the poll interval of the domain watcher;
    `demo_dir` is the simulator's state directory in demo mode.
    """

    cfg: Config
    toolstack: Toolstack
    label: str = ""
    watch_interval: float = 2.0
    demo_dir: Path | None = None
    lock_wait: float = 10.0

    def service(self, bus: EventBus, control: RunControl | None = None, cfg: Config | None = None) -> Service:
        cfg = cfg or self.cfg
        return Service(cfg, self.toolstack, bus, control=control or RunControl(cfg.parallel, emit=bus.emit),
                       estimate=estimator(cfg))
