"""What varies from one moment or machine to the next, injected into the app.

The clock, the host name and the dom0 figures (psutil) come through one
frozen `Providers` value so that tests and the screenshot script can freeze
them (`Providers.frozen()`) and get the same screen every time.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Dom0Figures:
    """dom0's own load: CPU percent, memory used/total (bytes), 1/5/15-minute load averages."""

    cpu_percent: float
    mem_used: int
    mem_total: int
    load: tuple[float, float, float]


def psutil_figures() -> Dom0Figures:
    """Measured now; cpu_percent is since the previous call (non-blocking)."""
    import psutil

    vm = psutil.virtual_memory()
    try:
        load = tuple(os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        load = (0.0, 0.0, 0.0)
    return Dom0Figures(psutil.cpu_percent(interval=None), vm.total - vm.available, vm.total, load)  # type: ignore[arg-type]


FROZEN_AT = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC


@dataclass(frozen=True)
class Providers:
    """Sources of time and host facts; defaults read the real machine."""

    clock: Callable[[], float] = time.time
    hostname: Callable[[], str] = socket.gethostname
    dom0: Callable[[], Dom0Figures] = psutil_figures
    frozen_clock: bool = field(default=False)

    @classmethod
    def frozen(cls, at: float = FROZEN_AT, hostname: str = "xenhost01",
               dom0: Dom0Figures | None = None) -> "Providers":
        """Fixed values for snapshots and screenshots."""
        figs = dom0 or Dom0Figures(7.5, 3 * 2**30, 8 * 2**30, (0.42, 0.35, 0.30))
        return cls(clock=lambda: at, hostname=lambda: hostname, dom0=lambda: figs, frozen_clock=True)
