"""Short, fixed-width renderings of sizes, durations and ages for narrow tables.

Every column of the console has a few cells to spare at 80×24, so each
figure is given in at most ~6 characters ("1.5G", "3h05m", "12s").
"""

from __future__ import annotations

import time
from functools import lru_cache


@lru_cache(maxsize=4096)
def mib(n: int) -> str:
    """Memory in MiB as 512M / 1.5G / 32G."""
    if n <= 0:
        return "-"
    if n < 1024:
        return f"{n}M"
    g = n / 1024
    return f"{g:.1f}G" if g < 10 else f"{g:.0f}G"


def size(n: int) -> str:
    """Bytes as 512B / 40K / 12M / 1.5G."""
    units = ("B", "K", "M", "G", "T")
    x = float(n)
    for u in units:
        if x < 1024 or u == units[-1]:
            if u == "B":
                return f"{int(x)}B"
            return f"{x:.1f}{u}" if x < 10 else f"{x:.0f}{u}"
        x /= 1024
    return f"{n}B"  # pragma: no cover


def duration(seconds: float | None) -> str:
    """Elapsed time: 0.4s / 12s / 3m05s / 2h07m / 3d04h."""
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def age(mtime: float, now: float) -> str:
    """How long ago: 12s / 5m / 3h / 2d."""
    s = max(0.0, now - mtime)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m"
    if s < 86400:
        return f"{s // 3600:.0f}h"
    return f"{s // 86400:.0f}d"


def clock(at: float) -> str:
    """HH:MM:SS in local time (tests pin TZ)."""
    return time.strftime("%H:%M:%S", time.localtime(at))
