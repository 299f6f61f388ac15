"""Several migration targets at run time: asking them for room, and the per-target links.

Before a stop with XENDOMAINS_MIGRATE_TARGETS, every target is asked
`xl info` over the same ssh command `xl migrate` will use (`-s CMD` of
XENDOMAINS_MIGRATE, else `ssh`), all at once and each under a watchdog; a
target that does not answer is left out with a warning.  `TargetPool` then
holds the placement ledger (xdcore.placement) and one limiter per target:
migrations to one target share its link (XENDOMAINS_PARALLEL_MIGRATE bounds
each target, not the sum; when it is auto, the scheduler's cap for that link,
chosen from the measured throughputs), and the operator's moves go through it.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from ..config import Config
from ..errors import CommandFailed, CommandTimedOut, ToolstackError
from ..events import Event, GuestPlaced, MessageLogged, TargetProbed
from ..placement import Decision, GuestNeed, Ledger, TargetHost, TargetRoom
from ..toolstack import process
from ..toolstack.parse import parse_xl_info
from ..toolstack.port import Toolstack
from .control import Limiter

#: watchdog of one `ssh TARGET xl info` (capped by XENDOMAINS_STOP_MAXWAIT when that is shorter)
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class MigrateSetup:
    """What every migration of a multi-target stop shares: xl's options, the ssh command, the hosts."""

    options: tuple[str, ...]
    ssh: tuple[str, ...]
    hosts: tuple[str, ...]

    def words(self, host: str) -> tuple[str, ...]:
        """The migrate words (options, then the host) for one target: what XENDOMAINS_MIGRATE would hold."""
        return (*self.options, host)


def migrate_setup(cfg: Config, toolstack: Toolstack) -> MigrateSetup | None:
    """None without XENDOMAINS_MIGRATE_TARGETS.  A host named in XENDOMAINS_MIGRATE joins the targets (first)."""
    if not cfg.migrate_targets:
        return None
    from ..toolstack.xl import split_migrate_words

    words, _ = toolstack.translate_migrate_options(cfg.migrate)
    options, host = split_migrate_words(words, getattr(toolstack, "migrate_arg_options", frozenset({"-s", "-C"})))
    ssh: tuple[str, ...] = ("ssh",)
    if toolstack.name == "xl":
        for i, w in enumerate(options[:-1]):
            if w == "-s":
                try:
                    ssh = tuple(shlex.split(options[i + 1])) or ("ssh",)
                except ValueError:
                    ssh = tuple(options[i + 1].split())
    hosts = tuple(dict.fromkeys(((host,) if host else ()) + cfg.migrate_targets))
    return MigrateSetup(tuple(options), ssh, hosts)


def probe_timeout(cfg: Config) -> float:
    return min(PROBE_TIMEOUT, float(cfg.stop_maxwait)) if cfg.stop_maxwait else PROBE_TIMEOUT


async def probe_target(host: str, ssh: Sequence[str], tool: str, timeout: float,
                       observers: Sequence[process.CommandObserver] = (),
                       peer_argv: Callable[..., list[str]] | None = None) -> TargetHost:
    """`SSH HOST xl info` (as `peer_argv` builds it: Toolstack.peer_argv): the target's free memory and
    Xen version, or why it did not answer."""
    argv = (peer_argv or (lambda s, h, *c: [*s, h, *c]))(ssh, host, tool, "info")
    try:
        done = await process.run(argv, timeout=timeout, observers=observers)
    except CommandTimedOut:
        return TargetHost(host, error=f"no answer to `{' '.join(argv)}` within {timeout:g}s")
    except CommandFailed as exc:
        last = next((ln.strip() for ln in reversed(exc.stderr.splitlines()) if ln.strip()), "")
        return TargetHost(host, error=f"`{' '.join(argv)}` exited {exc.returncode}" + (f": {last}" if last else ""))
    except ToolstackError as exc:
        return TargetHost(host, error=str(exc))
    info = parse_xl_info(done.stdout)
    if not info.total_memory_mib:
        return TargetHost(host, error=f"`{' '.join(argv)}` gave no memory figures")
    return TargetHost(host, info.free_memory_mib, info.total_memory_mib, info.xen_version, xen_release=info.xen_release)


async def probe_targets(setup: MigrateSetup, tool: str, timeout: float,
                        observers: Sequence[process.CommandObserver] = (),
                        peer_argv: Callable[..., list[str]] | None = None) -> list[TargetHost]:
    """Every target at once (a dead one costs its watchdog, never the sum of them)."""
    return list(await asyncio.gather(*(probe_target(h, setup.ssh, tool, timeout, observers, peer_argv)
                                       for h in setup.hosts)))


class TargetPool:
    """The ledger of a running stop, with one link (limiter) per target and the migrations in flight."""

    def __init__(self, setup: MigrateSetup, targets: Sequence[TargetHost], needs: Sequence[GuestNeed],
                 reserve_mib: int, per_target: int | None):
        self.setup = setup
        self.ledger = Ledger(targets, needs, reserve_mib)
        self.links = {t.name: Limiter(per_target) for t in targets}
        self.in_flight: dict[str, str] = {}  # guest -> target it is migrating to now
        self.decisions: list[Decision] = []  # the first placement
        self.notes: list[str] = []  # what the plan and the run say about the targets as a whole

    def place_all(self, chosen: Mapping[str, str] | None = None) -> list[Decision]:
        """The first placement: the operator's choices (guest -> target) first, see Ledger.place_all."""
        self.decisions = self.ledger.place_all(chosen)
        return self.decisions

    @property
    def refused(self) -> list[tuple[str, str, str]]:
        """The operator's choices that could not be honoured: (guest, target, why)."""
        return self.ledger.refused

    def follow_schedule(self, schedule_caps: Mapping[str, int]) -> None:
        """The schedule's concurrency per link ("link:HOST", auto: from the measured throughputs) bounds each
        target's migrations.  A target the schedule did not plan for (no guest placed there at first; a
        re-placed or moved guest may still go) takes the most cautious of the planned links' caps."""
        caps = {res[len("link:"):]: c for res, c in schedule_caps.items() if res.startswith("link:")}
        fallback = min(caps.values()) if caps else None
        for name, link in self.links.items():
            link.set_limit(caps.get(name, fallback))

    def announce(self, emit: Callable[[Event], None]) -> None:
        """Each target's answer with its link's cap (so: after follow_schedule), then the first placement;
        a warning for each target left out and each guest placed nowhere."""
        for t in self.ledger.targets.values():
            emit(TargetProbed(target=t.name, free_mib=t.free_mib, total_mib=t.total_mib,
                              reserve_mib=self.ledger.reserve_mib, xen_version=t.xen_version, error=t.error,
                              at_once=0 if t.error else self.link_cap(t.name) or 0))
            if t.error:
                emit(MessageLogged(level="warning", text=f"migration target {t.name} left out: {t.error}"))
        for dec in self.decisions:
            need = self.ledger.needs.get(dec.guest)
            emit(GuestPlaced(guest=dec.guest, target=dec.target, reason=dec.reason,
                             memory_mib=need.memory_mib if need else 0, by=dec.by))
            if not dec.target:
                emit(MessageLogged(level="warning", guest=dec.guest,
                                   text=f"{dec.guest}: no migration target ({dec.reason}); it goes on to the next stage"))

    def link_cap(self, target: str) -> int | None:
        """How many migrations to `target` may run at once (None: no bound of its own)."""
        link = self.links.get(target)
        return link.limit if link is not None else None

    def target_of(self, guest: str) -> str | None:
        return self.ledger.target_of(guest)

    def move(self, guest: str, target: str) -> str | None:
        """The operator's move: an error, or None when done (applies to a migration not yet begun)."""
        if guest in self.in_flight:
            return f"{guest} is migrating to {self.in_flight[guest]} now; skip its migrate stage to stop that"
        return self.ledger.move(guest, target)

    async def begin(self, guest: str) -> str | None:
        """Wait for a free slot on the guest's target's link; the target (None: it has none any more)."""
        while True:
            target = self.ledger.target_of(guest)
            if target is None:
                return None
            link = self.links[target]
            await link.acquire()
            if self.ledger.target_of(guest) == target:  # not moved while it waited
                self.in_flight[guest] = target
                return target
            link.release()

    def end(self, guest: str, target: str, ok: bool, replace: bool = True) -> Decision | None:
        """A migration ended.  Failed: the guest is re-placed on a target it has not tried (the
        decision says where, or nowhere); cancelled (replace=False): its room is given back."""
        self.in_flight.pop(guest, None)
        self.links[target].release()
        if ok:
            self.ledger.migrated(guest, target)
            return None
        if not replace:
            self.ledger.release(guest)
            return None
        return self.ledger.failed(guest, target)

    def rooms(self) -> list[TargetRoom]:
        return [replace(r, at_once=self.link_cap(r.name) or 0) for r in self.ledger.rooms()]

    def status(self) -> list[dict]:
        """For the control socket and the console: each target's figures and what goes there."""
        out = []
        for r in self.rooms():
            out.append({"name": r.name, "free_mib": r.free_mib, "room_left_mib": r.room_left_mib,
                        "reserve_mib": r.reserve_mib, "xen_version": r.xen_version, "error": r.error,
                        "at_once": r.at_once,
                        "in_flight": sorted(g for g, t in self.in_flight.items() if t == r.name),
                        "guests": list(r.guests)})
        return out


__all__ = ["MigrateSetup", "PROBE_TIMEOUT", "TargetPool", "migrate_setup", "probe_target", "probe_targets",
           "probe_timeout"]
