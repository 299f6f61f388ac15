"""Placing guests on several migration targets by the room each has (XENDOMAINS_MIGRATE_TARGETS).

`xe host-evacuate` spreads a XenServer host's guests over its pool; for
standalone `xl` hosts this does the same from the figures each target gives
(`xl info` over ssh, asked once before the stop): guests are placed largest
first onto the target with the most free memory after a reserve
(XENDOMAINS_TARGET_RESERVE_MIB), and a target is never promised more than it
has.  Per-guest policy narrows the choice: `xendomains_targets` pins a guest
to some targets, `xendomains_apart` keeps it off any target that receives one
of the named guests (both ways).  A guest that fits nowhere gets no target
and goes on down its pipeline (save, else shutdown).

`Ledger` is the same bookkeeping while the run goes: a failed migration
gives its room back and re-places the guest on a target it has not tried;
an operator may move a guest to another target before its migration starts.
Everything here is pure (no I/O, no asyncio): the plan, the runner and the
tests share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

MIB = 1024 * 1024


@dataclass(frozen=True)
class TargetHost:
    """A migration target as it answered `xl info` before the stop; `error` set: left out (unreachable, or
    its Xen is older than this host's)."""

    name: str
    free_mib: int = 0
    total_mib: int = 0
    xen_version: str = ""
    error: str = ""
    xen_release: tuple[int, int] | None = None  # (xen_major, xen_minor) of its `xl info`; None: it did not say

    @property
    def reachable(self) -> bool:
        return not self.error


def release_text(release: tuple[int, int] | None) -> str:
    return f"{release[0]}.{release[1]}" if release else "?"


def leave_out_older(targets: Sequence[TargetHost], source_version: str,
                    source_release: tuple[int, int] | None) -> list[TargetHost]:
    """Targets running an older Xen than this host are left out (error set): Xen migrates a guest to the
    same or a newer hypervisor, never to an older one.  A version either side does not state is not judged."""
    if source_release is None:
        return list(targets)
    out = []
    for t in targets:
        if t.reachable and t.xen_release is not None and t.xen_release < source_release:
            t = replace(t, error=(f"runs Xen {t.xen_version or release_text(t.xen_release)}, older than this host's "
                                  f"Xen {source_version or release_text(source_release)} "
                                  f"({release_text(t.xen_release)} < {release_text(source_release)}): "
                                  "Xen migrates a guest only to the same or a newer version"))
        out.append(t)
    return out


@dataclass(frozen=True)
class GuestNeed:
    """What placement needs to know of one guest."""

    name: str
    memory_mib: int
    targets: tuple[str, ...] = ()  # xendomains_targets: only these (empty: any)
    apart: tuple[str, ...] = ()  # xendomains_apart: never on the same target as these guests


@dataclass(frozen=True)
class Decision:
    """Where one guest goes (target "" : nowhere) and why, in words for the plan and the report."""

    guest: str
    target: str
    reason: str
    by: str = "placement"  # "operator": chosen before the run (`--place GUEST=TARGET`)


@dataclass(frozen=True)
class TargetRoom:
    """One target in a plan: what it had, what it keeps back, and the room left after the placement."""

    name: str
    free_mib: int
    reserve_mib: int
    room_left_mib: int
    xen_version: str = ""
    error: str = ""
    guests: tuple[str, ...] = ()
    at_once: int = 0  # migrations to it at once, like its link (the schedule's cap; 0: no bound of its own)


def _apart_pairs(needs: Iterable[GuestNeed]) -> dict[str, set[str]]:
    """xendomains_apart is symmetric: A apart from B keeps B apart from A."""
    out: dict[str, set[str]] = {}
    for n in needs:
        for other in n.apart:
            if other == n.name:
                continue
            out.setdefault(n.name, set()).add(other)
            out.setdefault(other, set()).add(n.name)
    return out


class Ledger:
    """Room per target and the target of each guest, kept while a run goes.

    Room is `free − reserve` as the target answered before the stop, less the
    memory of every guest placed on it.  Every change goes through
    `place`, `replace`, `move` and `release`, which never let a target's room
    go below zero.
    """

    def __init__(self, targets: Sequence[TargetHost], needs: Sequence[GuestNeed], reserve_mib: int):
        self.targets = {t.name: t for t in targets}
        self.order = [t.name for t in targets]  # ties go to the target named first
        self.reserve_mib = max(0, int(reserve_mib))
        self.room = {t.name: max(0, t.free_mib - self.reserve_mib) for t in targets if t.reachable}
        self.needs = {n.name: n for n in needs}
        self.apart = _apart_pairs(needs)
        self.where: dict[str, str] = {}  # guest -> target holding its room
        self.tried: dict[str, set[str]] = {}  # guest -> targets whose migration failed
        self.done: dict[str, str] = {}  # guest -> target it migrated to
        self.refused: list[tuple[str, str, str]] = []  # operator placements place_all could not honour: (guest, target, why)

    # -- queries -----------------------------------------------------------------------------

    def target_of(self, guest: str) -> str | None:
        return self.where.get(guest)

    def guests_on(self, target: str) -> list[str]:
        return [g for g, t in self.where.items() if t == target]

    def _neighbours(self, target: str) -> set[str]:
        return {g for g, t in self.where.items() if t == target} | {g for g, t in self.done.items() if t == target}

    def why_not(self, need: GuestNeed, target: str) -> str | None:
        """Why `need` cannot go to `target` now (None: it can)."""
        t = self.targets.get(target)
        if t is None:
            return f"{target} is not one of the migration targets"
        if not t.reachable:
            return f"{target} is left out ({t.error})"
        if need.targets and target not in need.targets:
            return f"pinned to {', '.join(need.targets)}"
        if target in self.tried.get(need.name, ()):
            return f"migration to {target} failed"
        clash = sorted(self.apart.get(need.name, set()) & (self._neighbours(target) - {need.name}))
        if clash:
            return f"kept apart from {', '.join(clash)} (on {target})"
        room = self.room.get(target, 0) + (need.memory_mib if self.where.get(need.name) == target else 0)
        if need.memory_mib > room:
            return f"{target} has {room} MiB of room, needs {need.memory_mib} MiB"
        return None

    def best(self, need: GuestNeed) -> tuple[str | None, str]:
        """The target with the most room that may take `need`, else (None, why none may)."""
        fits = [t for t in self.order if self.why_not(need, t) is None]
        if fits:
            t = max(fits, key=lambda name: (self.room[name], -self.order.index(name)))
            return t, f"most room: {self.room[t]} MiB before, {self.room[t] - need.memory_mib} MiB after"
        candidates = [t for t in self.order if not need.targets or t in need.targets]
        if not candidates:
            return None, f"pinned to {', '.join(need.targets)}, none of them a migration target"
        reasons = "; ".join(self.why_not(need, t) or "" for t in candidates)
        return None, f"no target can take {need.memory_mib} MiB: {reasons}"

    # -- changes -----------------------------------------------------------------------------

    def _take(self, guest: str, target: str) -> None:
        self.release(guest)
        self.where[guest] = target
        self.room[target] -= self.needs[guest].memory_mib

    def release(self, guest: str) -> None:
        """Give back the room `guest` held (its migration failed, or it goes elsewhere)."""
        t = self.where.pop(guest, None)
        if t is not None:
            self.room[t] += self.needs[guest].memory_mib

    def place_all(self, chosen: Mapping[str, str] | None = None) -> list[Decision]:
        """The operator's choices first (`chosen`: guest -> target, each checked like a move; what cannot be
        honoured is in `refused` and nothing of it is taken), then the rest largest first, each onto the
        target with the most room that may take it."""
        out = []
        self.refused = []
        for guest, target in (chosen or {}).items():
            problem = self.move(guest, target)
            if problem is None:
                out.append(Decision(guest, target, f"placed by the operator ({self.room[target]} MiB left there)",
                                    "operator"))
            else:
                self.refused.append((guest, target, problem))
        for need in sorted(self.needs.values(), key=lambda n: (-n.memory_mib, n.name)):
            if need.name in self.where:
                continue  # the operator's
            target, why = self.best(need)
            if target is not None:
                self._take(need.name, target)
            out.append(Decision(need.name, target or "", why))
        return out

    def failed(self, guest: str, target: str) -> Decision:
        """The migration of `guest` to `target` failed: re-place it on a target it has not tried."""
        self.tried.setdefault(guest, set()).add(target)
        self.release(guest)
        need = self.needs[guest]
        new, why = self.best(need)
        if new is not None:
            self._take(guest, new)
        return Decision(guest, new or "", why)

    def move(self, guest: str, target: str) -> str | None:
        """The operator moves `guest` to `target`; an error (nothing changed) or None."""
        need = self.needs.get(guest)
        if need is None:
            return (f"{guest} does not migrate in this evacuation (not selected, dying, or its xendomains_stop "
                    "has no migrate)")
        if guest in self.done:
            return f"{guest} has already migrated to {self.done[guest]}"
        problem = self.why_not(need, target)
        if problem is not None and not problem.startswith("pinned"):
            return problem
        self._take(guest, target)  # the operator may override a pin, never room, reachability or apart
        return None

    def migrated(self, guest: str, target: str) -> None:
        self.where.pop(guest, None)
        self.done[guest] = target

    def rooms(self) -> list[TargetRoom]:
        out = []
        for name in self.order:
            t = self.targets[name]
            placed = tuple(g for g, where in {**self.done, **self.where}.items() if where == name)
            out.append(TargetRoom(name, t.free_mib, self.reserve_mib, self.room.get(name, 0) if t.reachable else 0,
                                  t.xen_version, t.error, placed))
        return out


def place(targets: Sequence[TargetHost], needs: Sequence[GuestNeed], reserve_mib: int) -> tuple[Ledger, list[Decision]]:
    """A fresh ledger and its first placement."""
    ledger = Ledger(targets, needs, reserve_mib)
    return ledger, ledger.place_all()


def needs_from(guests: Iterable, policies: Mapping | None = None) -> list[GuestNeed]:
    """GuestNeed per guest (Domain-like: .name, .memory_mib), policy targets/apart when given."""
    out = []
    for d in guests:
        p = policies.get(d.name) if policies is not None else None
        out.append(GuestNeed(d.name, int(d.memory_mib), tuple(getattr(p, "targets", ()) or ()),
                             tuple(getattr(p, "apart", ()) or ())))
    return out


__all__ = ["Decision", "GuestNeed", "Ledger", "TargetHost", "TargetRoom", "leave_out_older", "needs_from", "place",
           "release_text"]
