"""One line of host figures: dom0 CPU, memory and load (psutil), Xen free memory (`xl info`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from xdcore.model import HostInfo

from ..formatting import clock, mib, size
from ..providers import Dom0Figures


def figures_text(dom0: Dom0Figures | None, xen: HostInfo | None, xen_error: str = "", at: float | None = None) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if at is not None:  # the screen is live: the time of this reading, first (never the part cut off)
        t.append(clock(at) + " ", style="bold")
    if dom0 is not None:
        t.append("dom0 ", style="bold")
        t.append(f"CPU {dom0.cpu_percent:.1f}% ")
        t.append(f"mem {size(dom0.mem_used)}/{size(dom0.mem_total)} ")
        t.append("load " + " ".join(f"{x:.2f}" for x in dom0.load))
    t.append(" │ ", style="dim")
    t.append("Xen ", style="bold")
    if xen is not None:
        t.append(f"free {mib(xen.free_memory_mib)}/{mib(xen.total_memory_mib)}")
        if xen.nr_cpus:
            t.append(f" {xen.nr_cpus} CPUs")
        if xen.xen_version:
            t.append(f" {xen.xen_version}", style="dim")
    else:
        t.append(xen_error or "…", style="dim")
    return t


class HostFigures(Static):
    """dom0 and Xen figures on one line (refreshed by the host screen's poll worker)."""

    DEFAULT_CSS = """
    HostFigures { height: 1; padding: 0 1; background: $boost; }
    """

    def show(self, dom0: Dom0Figures | None, xen: HostInfo | None, xen_error: str = "", at: float | None = None) -> None:
        self.update(figures_text(dom0, xen, xen_error, at))
