"""Boot order: which guests start together, which wait for which, and why.

Start runs in ascending groups — a group begins when the previous one is
ready (each guest's gate: `xendomains_up_wait`) — and stop runs the groups
in reverse.  A guest's group comes from its `xendomains_order`; guests
without one keep today's behaviour (one group after the ordered ones, in
parallel as configured).

Driver domains are placed automatically: a guest that serves a device of
another (its name in the client's `backend=`, or its backend tree in
XenStore, /local/domain/B/backend/CLASS/FRONT) goes into a group just
before its earliest client — so it starts first and stops last without any
order configured.  A dependency cycle is an error that names its members.

Pure: `boot_order` takes names, policies and dependency edges; the XenStore
edges come from `xenstore_backends` (the only function here doing I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .policy import NO_GATE, Gate, GuestPolicy, Policies

Rank = tuple[int, int, int]  # (0 ordered / 1 unordered, order, steps before it for driver domains)


@dataclass(frozen=True)
class Group:
    """Guests that start together; the next group begins when all their gates are open."""

    index: int
    rank: Rank
    guests: tuple[str, ...]
    gates: tuple[tuple[str, Gate], ...] = ()

    @property
    def label(self) -> str:
        cls, order, step = self.rank
        base = f"order {order}" if cls == 0 else "unordered"
        return base + (f", driver domains ({-step} before)" if step else "")

    @property
    def gated(self) -> bool:
        return any(g.kind != "none" for _, g in self.gates)

    def gate_of(self, guest: str) -> Gate:
        return dict(self.gates).get(guest, NO_GATE)


@dataclass(frozen=True)
class BootOrder:
    """The groups in start order, each guest's dependencies and the reasons for its place."""

    groups: tuple[Group, ...]
    depends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # client -> its backends here
    why: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cycles: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.cycles

    @property
    def in_cycle(self) -> frozenset[str]:
        return frozenset(n for c in self.cycles for n in c)

    def group_of(self, guest: str) -> Group | None:
        return next((g for g in self.groups if guest in g.guests), None)

    def stop_groups(self) -> tuple[Group, ...]:
        return tuple(reversed(self.groups))

    @property
    def trivial(self) -> bool:
        """One group, no gate: exactly today's behaviour."""
        return len(self.groups) <= 1 and not any(g.gated for g in self.groups) and not self.cycles

    def cycle_errors(self) -> list[str]:
        return [f"dependency cycle: {' → '.join(c + (c[0],))} (each serves a device of the next; see backend= in their configs)"
                for c in self.cycles]

    def to_dict(self) -> dict:
        return {
            "groups": [{"index": g.index, "label": g.label, "guests": list(g.guests),
                        "gates": {n: str(gt) for n, gt in g.gates}} for g in self.groups],
            "depends": {k: list(v) for k, v in self.depends.items()},
            "why": {k: list(v) for k, v in self.why.items()},
            "cycles": [list(c) for c in self.cycles],
            "notes": list(self.notes),
        }


def _own(p: GuestPolicy) -> Rank:
    return (0, p.order, 0) if p.order is not None else (1, 0, 0)


def boot_order(guests: Sequence[str], policies: Policies | Mapping[str, GuestPolicy],
               edges: Iterable[tuple[str, str]] = (), domid_names: Mapping[int, str] | None = None,
               running: Iterable[str] = ()) -> BootOrder:
    """Group `guests` (in their listing order) by order and dependencies.

    `edges`: extra (backend, client) pairs (from XenStore).  `domid_names`
    resolves a numeric `backend=` to a name.  `running`: guests already up
    (a backend among them needs no ordering at start).
    """
    names = list(dict.fromkeys(guests))
    here = set(names)
    pol = {n: (policies[n] if n in policies else GuestPolicy(n)) for n in names}  # type: ignore[operator]
    domid_names = domid_names or {}
    running = set(running)
    backends: dict[str, list[str]] = {n: [] for n in names}
    notes: list[str] = []
    via: dict[tuple[str, str], str] = {}
    for n in names:
        for b in pol[n].backends:
            name = domid_names.get(int(b), b) if b.isdigit() else b
            if name == n:
                continue
            if name in here:
                if name not in backends[n]:
                    backends[n].append(name)
                via.setdefault((name, n), "backend= in " + (pol[n].sources[0] if pol[n].sources else "its config"))
            elif name not in running:
                notes.append(f"{n}: its backend domain {name} is neither running nor started by xendomains")
    for b, c in edges:
        if b in here and c in here and b != c and b not in backends[c]:
            backends[c].append(b)
            via.setdefault((b, c), "XenStore backend tree")
    clients: dict[str, list[str]] = {n: [] for n in names}
    for c, bs in backends.items():
        for b in bs:
            clients[b].append(c)

    # rank(b) = min(own(b), just before rank(c) for each client c): DFS over backend -> client edges
    rank: dict[str, Rank] = {}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[tuple[str, ...]] = []

    def visit(n: str) -> Rank:
        if state.get(n) == 2:
            return rank[n]
        state[n] = 1
        stack.append(n)
        r = _own(pol[n])
        for c in clients[n]:
            if state.get(c) == 1:  # c is an ancestor: n serves c, which (through the stack) serves n
                cyc = tuple(stack[stack.index(c):])
                if not any(set(cyc) == set(x) for x in cycles):
                    cycles.append(cyc)
                continue
            cr = visit(c)
            r = min(r, (cr[0], cr[1], cr[2] - 1))
        stack.pop()
        state[n] = 2
        rank[n] = r
        return r

    for n in names:
        visit(n)
    in_cycle = {n for c in cycles for n in c}
    if in_cycle:  # a cycle has no valid order: its members go together, at the earliest rank among them
        r = min(rank[n] for n in in_cycle)
        for n in in_cycle:
            rank[n] = r
    why: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        p = pol[n]
        if p.order is not None:
            w = p.where.get("order")
            why[n].append(f"xendomains_order = {p.order}" + (f" ({w})" if w else ""))
        else:
            why[n].append("no xendomains_order: with the unordered guests, after the ordered ones")
        if clients[n]:
            why[n].append("serves " + ", ".join(f"{c} ({via.get((n, c), '')})" for c in clients[n])
                          + ": starts before them, stops after them")
        if backends[n]:
            why[n].append("uses " + ", ".join(backends[n]) + " as backend: starts after, stops before")
        if n in in_cycle:
            why[n].append("in a dependency cycle: no valid order")
    ranks = sorted(set(rank.values()))
    groups = []
    for i, r in enumerate(ranks):
        members = tuple(n for n in names if rank[n] == r)
        groups.append(Group(i, r, members, tuple((m, pol[m].up_wait) for m in members)))
    return BootOrder(tuple(groups), {c: tuple(b) for c, b in backends.items() if b},
                     {n: tuple(w) for n, w in why.items()}, tuple(cycles), tuple(notes))


def xenstore_backends(domid_names: Mapping[int, str], xenstore_path: str | None = None) -> list[tuple[str, str]]:
    """(backend, client) guest names from XenStore's backend tree, /local/domain/B/backend/CLASS/FRONT.

    Blocking (a few round trips): call through asyncio.to_thread.  Empty when
    XenStore is unreachable — the configs' `backend=` still order the guests.
    """
    from .xenstore import Handle, PyXenStoreError

    out: list[tuple[str, str]] = []
    try:
        with Handle(path=xenstore_path) as h:
            for b_id, b_name in domid_names.items():
                if b_id == 0:
                    continue
                base = f"/local/domain/{b_id}/backend"
                try:
                    classes = h.entries(base)
                except PyXenStoreError:
                    continue
                for cls in classes:
                    try:
                        fronts = h.entries(f"{base}/{cls}")
                    except PyXenStoreError:
                        continue
                    for f in fronts:
                        client = domid_names.get(int(f)) if f.isdigit() else None
                        if client and client != b_name and (b_name, client) not in out:
                            out.append((b_name, client))
    except (PyXenStoreError, OSError):
        return []
    return out


__all__ = ["BootOrder", "Group", "boot_order", "xenstore_backends"]
