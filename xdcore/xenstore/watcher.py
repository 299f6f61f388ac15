"""A live view of the host's guests: XenStore watches when a xenstored is reachable, polling when not.

The console wants "what runs now, and what just changed" without spawning
`xl list -l` every second.  XenStore already announces every change worth a
look — `@introduceDomain` when a guest appears, `@releaseDomain` when one shuts
down or goes away, writes under /local/domain for memory targets and vCPUs —
so with a reachable xenstored we wait on those and ask the toolstack for the
list only when something happened (one `list_domains()` per burst, debounced
~10 ms), plus a slow safety re-poll for what XenStore does not show (pause,
unpause).  Without one we poll: one `list_domains()` per interval.

The list always comes from the toolstack; XenStore only says *when* to look.
That keeps one source of truth (the port) and makes both modes yield the same
values.  A lost xenstored connection falls back to polling, and polling
re-tries XenStore once per interval when its socket exists.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Domain
from . import _lib
from .errors import NotFoundError, PyXenStoreError, XenStoreUnreachable
from .handle import Handle, socket_path

WATCH_TOKEN = "xdcore-domains"
WATCHED = ("@introduceDomain", "@releaseDomain", "/local/domain")
XENBUS_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")
OPEN_TIMEOUT = 5.0  # seconds for connecting and setting the three watches


@dataclass(frozen=True)
class DomainsChanged:
    """The current guests and what changed since the previous yield (names).

    The first yield lists every guest as `appeared`.  `source` is "xenstore"
    when a XenStore watch (or its safety re-poll) triggered the look, "poll"
    when the interval did.
    """

    domains: tuple[Domain, ...]
    appeared: tuple[str, ...]
    gone: tuple[str, ...]
    changed: tuple[str, ...]
    source: str


def _signature(d: Domain) -> tuple[Any, ...]:
    return (d.domid, d.state.flags if d.state else None, d.memory_mib, d.maxmem_mib, d.vcpus)


def diff_domains(
    old: Mapping[str, Domain], new: Sequence[Domain], source: str
) -> DomainsChanged:
    """Compare by name: appeared, gone, and changed in domid, state flags, memory or vCPUs."""
    by_name = {d.name: d for d in new}
    appeared = tuple(n for n in by_name if n not in old)
    gone = tuple(n for n in old if n not in by_name)
    changed = tuple(
        n for n, d in by_name.items() if n in old and _signature(old[n]) != _signature(d)
    )
    return DomainsChanged(tuple(new), appeared, gone, changed, source)


def _has_news(change: DomainsChanged) -> bool:
    return bool(change.appeared or change.gone or change.changed)


def xenstore_reachable(xenstore_path: str | None = None) -> bool:
    """Cheap check (no connection): the socket or xenbus device exists and libxenstore loads."""
    if xenstore_path or os.environ.get("XENSTORED_PATH"):
        present = os.path.exists(xenstore_path or os.environ["XENSTORED_PATH"])
    else:
        present = os.path.exists(socket_path()) or any(os.path.exists(p) for p in XENBUS_DEVICES)
    return present and _lib.available()


def _open_watching(xenstore_path: str | None) -> Handle:
    """A handle with the domain watches set (blocking: run in a thread)."""
    handle = Handle(path=xenstore_path)
    try:
        for path in WATCHED:
            handle.watch(path, WATCH_TOKEN)
    except BaseException:
        handle.close()
        raise
    return handle


def xenstore_domid(xenstore_path: str | None = None) -> int | None:
    """Domid of a xenstore stub domain (/tool/xenstored/domid); None when absent or unreachable.

    Blocking (one round trip): call it through asyncio.to_thread from a loop.
    """
    try:
        with Handle(path=xenstore_path) as handle:
            raw = handle.read("/tool/xenstored/domid")
    except (NotFoundError, PyXenStoreError):
        return None
    try:
        return int(raw.strip(b"\0").decode())
    except ValueError:
        return None


async def _try_open(xenstore_path: str | None) -> Handle | None:
    if not xenstore_reachable(xenstore_path):
        return None
    try:  # bounded: a hung xenstored must not stall the view (the thread is then left to finish)
        return await asyncio.wait_for(asyncio.to_thread(_open_watching, xenstore_path), OPEN_TIMEOUT)
    except (PyXenStoreError, asyncio.TimeoutError):
        return None


async def watch_domains(
    toolstack: Any,
    *,
    interval: float = 2.0,
    xenstore_path: str | None = None,
    debounce: float = 0.01,
    safety_interval: float = 30.0,
) -> AsyncIterator[DomainsChanged]:
    """Yield the current guests, then each change (see the module docstring).

    `toolstack` needs only `async list_domains() -> list[Domain]`; its errors
    propagate to the consumer.  Closing the generator closes the XenStore handle.
    """
    handle = await _try_open(xenstore_path)
    try:
        current = list(await toolstack.list_domains())
        known = {d.name: d for d in current}
        yield DomainsChanged(tuple(current), tuple(known), (), (), "xenstore" if handle else "poll")
        while True:
            if handle is not None:
                try:
                    async for change in _follow(handle, toolstack, known, interval, debounce, safety_interval):
                        known = {d.name: d for d in change.domains}
                        yield change
                except XenStoreUnreachable:
                    pass  # fall back to polling; each poll round re-tries XenStore
                handle.close()
                handle = None
            else:
                await asyncio.sleep(interval)
            change = diff_domains(known, await toolstack.list_domains(), "poll")
            known = {d.name: d for d in change.domains}
            if _has_news(change):
                yield change
            handle = await _try_open(xenstore_path)
    finally:
        if handle is not None:
            handle.close()


async def _follow(
    handle: Handle,
    toolstack: Any,
    known: dict[str, Domain],
    interval: float,
    debounce: float,
    safety_interval: float,
) -> AsyncIterator[DomainsChanged]:
    """Re-list on watch events (debounced) and on the safety timer, until the connection breaks."""
    loop = asyncio.get_running_loop()
    fd = handle.fileno()
    woken = asyncio.Event()
    lost: list[XenStoreUnreachable] = []

    def on_readable() -> None:
        try:
            while handle.check_watch() is not None:
                woken.set()
        except XenStoreUnreachable as exc:
            lost.append(exc)
            loop.remove_reader(fd)
            woken.set()

    loop.add_reader(fd, on_readable)
    last_list = time.monotonic()
    try:
        while True:
            timeout = min(interval, max(0.0, last_list + safety_interval - time.monotonic()))
            try:
                await asyncio.wait_for(woken.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                if handle.check_watch() is not None:  # liveness: raises once the connection is gone
                    woken.set()
                if not woken.is_set() and time.monotonic() - last_list < safety_interval:
                    continue
            if lost:
                raise lost[0]
            if woken.is_set():
                await asyncio.sleep(debounce)  # let a burst of writes land before one look
            woken.clear()
            last_list = time.monotonic()
            change = diff_domains(known, await toolstack.list_domains(), "xenstore")
            known = {d.name: d for d in change.domains}
            if _has_news(change):
                yield change
    finally:
        if not lost:
            loop.remove_reader(fd)
