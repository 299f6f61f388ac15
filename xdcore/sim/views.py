"""Read-only views of the simulated host for its readers (the simulated xenstored, tests, xdsim list).

Split from host.py so that the simulated `xl` processes, which never take a
snapshot, do not pay for importing dataclasses.  `host.load_snapshot`,
`host.snapshot_of`, `host.DomainView` and `host.HostSnapshot` reach these.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .host import HostState


@dataclass(frozen=True, slots=True)
class DomainView:
    """One domain as a reader sees it at snapshot time."""

    domid: int
    name: str
    uuid: str
    memory_kib: int
    maxmem_kib: int
    current_kib: int
    vcpus: int
    online_vcpus: int
    cpu_time: float
    flags: str
    start_time: float
    domain_type: str
    config_path: str | None
    dying: bool
    shutdown_reason: int | None


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    taken_at: float
    domains: tuple[DomainView, ...]
    total_memory_mib: int
    free_memory_mib: int
    targets: tuple[tuple[str, tuple[str, ...]], ...]


def snapshot_of(st: HostState, now: float) -> HostSnapshot:
    views = tuple(
        DomainView(
            domid=d.domid, name=d.name, uuid=d.uuid, memory_kib=d.memory_kib, maxmem_kib=d.maxmem_kib,
            current_kib=d.current_kib, vcpus=d.vcpus, online_vcpus=d.online_vcpus,
            cpu_time=d.cpu_time_now(now), flags=d.flags, start_time=d.start_time,
            domain_type=d.domain_type, config_path=d.config_path, dying=d.dying,
            shutdown_reason=d.shutdown_code,
        )
        for d in sorted(st.domains, key=lambda d: d.domid)
    )
    targets = tuple((host, tuple(g["name"] for g in guests)) for host, guests in sorted(st.targets.items()))
    return HostSnapshot(now, views, st.total_memory_mib, st.free_memory_mib(), targets)
