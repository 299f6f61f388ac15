"""The host the console drives: config + toolstack, and how to build a Service for a run.

No Textual here.  The CLI makes one `HostContext` (this host, or the demo
host) and the app factory takes it.  The console reads the host through it
(domains, lists, plans); runs are `xendomains` processes it launches
(`xdtui.launch`), pointed at the same config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xdcore.config import Config
from xdcore.toolstack.port import Toolstack

if TYPE_CHECKING:  # the run machinery is imported when first used, not before the console's first frame
    from xdcore.events import EventBus
    from xdcore.pipeline.control import RunControl
    from xdcore.service import Service


@dataclass(frozen=True)
class HostContext:
    """What the console is pointed at.

    `label` names the host in the header ("demo" for the simulated one);
    `watch_interval` is the poll interval of the domain watcher;
    `demo_dir` is the simulator's state directory in demo mode;
    `run_env` is added to the environment of the `xendomains` runs the
    console launches (the demo host puts its simulated `xl` first on PATH).
    """

    cfg: Config
    toolstack: Toolstack
    label: str = ""
    watch_interval: float = 2.0
    demo_dir: Path | None = None
    lock_wait: float = 10.0
    run_env: Mapping[str, str] = field(default_factory=dict)

    def service(self, bus: EventBus, control: RunControl | None = None, cfg: Config | None = None, *,
                planning: bool = True) -> Service:
        """A Service on this host; `planning=False` leaves out the estimator (reading the host needs none,
        and on the simulated host building it reads the whole state once more)."""
        from xdcore.pipeline.control import RunControl
        from xdcore.service import Service

        cfg = cfg or self.cfg
        estimate = None
        if planning:  # xdcore.plan only when planning: the host view's list poller never needs it
            from xdcore.plan import estimator

            estimate = estimator(cfg, toolstack=self.toolstack)
        return Service(cfg, self.toolstack, bus, control=control or RunControl(cfg.parallel, emit=bus.emit),
                       estimate=estimate)
