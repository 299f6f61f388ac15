"""Fair sharing of a host's bandwidths: the physics both the simulator and the planner obey.

A host has named resources — ``disk`` (the save directory's disk: saves
write to it, restores read from it) and ``link:HOST`` (one per migration
target) — each with a bandwidth in MB/s.  Transfers using a resource at the
same instant share it fairly (processor sharing: n transfers each get 1/n).
A live migration also re-sends the pages its guest dirties while it runs:
its remaining size grows at the guest's dirty rate until a re-send budget
(`RESEND_FACTOR` × its memory) is spent, after which Xen stops the guest and
copies the rest (stop-and-copy), so a migration that shares the link with
others takes longer *and* moves more bytes.

Why here, in the simulator's package: the `xl` shims run the simulator alone (xdcore/sim
must stand on its own, see tests/sim/test_fast_start.py), and the planner imports this
module as it is — it does no I/O and knows nothing of the simulated host.

Why one pure module: the simulated `xl` processes (separate OS processes
sharing a state file) replay this timeline to know when their own transfer
completes, and the planner replays the very same rules to predict a whole
evacuation.  Both call `advance`: between two instants the state of every
transfer follows from the rates, so nobody has to be awake when another
transfer finishes.  Plain dicts and functions (no dataclasses): every
simulated `xl` imports this, and it must stay cheap.

A transfer is a dict: ``id``, ``res`` (resource name), ``left`` (MB still
to send at the ledger's ``at``), ``dirty`` (MB/s re-dirtied while it runs),
``resend`` (MB of re-send budget left), ``start``, ``done`` (the instant it
completed, or None), plus whatever the caller keeps in it (guest, op, pid).
"""

from __future__ import annotations

EPS = 1e-9
#: a live migration re-sends at most this many times its memory before stop-and-copy
RESEND_FACTOR = 1.0
DISK = "disk"


def link(target: str) -> str:
    """The resource name of the link to a migration target."""
    return f"link:{target}"


def new_transfer(tid: str, res: str, mb: float, start: float, dirty: float = 0.0, **extra) -> dict:
    t = {"id": tid, "res": res, "mb": float(mb), "left": float(mb), "dirty": float(dirty),
         "resend": float(mb) * RESEND_FACTOR if dirty > 0 else 0.0, "start": float(start), "done": None}
    t.update(extra)
    return t


def _step(active: list[dict], rate: float, span: float) -> float:
    """Advance the active transfers of one resource by at most `span` seconds, to the next event.

    Returns the time advanced; transfers whose `left` reaches zero are the caller's to close.
    """
    share = rate / len(active)
    dt = span
    for t in active:
        growing = t["dirty"] > 0 and t["resend"] > EPS
        net = share - (t["dirty"] if growing else 0.0)
        if net > EPS:
            dt = min(dt, t["left"] / net)
        if growing:
            dt = min(dt, t["resend"] / t["dirty"])
    dt = max(dt, 0.0)
    for t in active:
        growing = t["dirty"] > 0 and t["resend"] > EPS
        if growing:
            t["left"] += (t["dirty"] - share) * dt
            t["resend"] -= t["dirty"] * dt
        else:
            t["left"] -= share * dt
    return dt


def advance(transfers: list[dict], rates: dict, since: float, until: float, stop_id: str | None = None) -> float:
    """Play the transfers from `since` to `until` (in place); marks each completed one's `done`.

    A resource without a positive rate is infinitely fast (its transfers end at
    their start).  With `stop_id`, stops as soon as that transfer is done and
    returns that instant (`until` may then be infinity); otherwise returns `until`.
    """
    by_res: dict[str, list[dict]] = {}
    for t in transfers:
        if t["done"] is None:
            by_res.setdefault(t["res"], []).append(t)
    end = until
    for res, active in by_res.items():
        rate = float(rates.get(res) or 0.0)
        now = since
        if rate <= 0:
            for t in active:
                t["left"] = 0.0
                t["done"] = max(since, t["start"])
            continue
        while active and now < until:
            dt = _step(active, rate, until - now)
            now += dt
            finished = [t for t in active if t["left"] <= 1e-7]
            for t in finished:
                t["left"] = 0.0
                t["done"] = now
            active = [t for t in active if t["done"] is None]
            if stop_id is not None and any(t["id"] == stop_id for t in finished):
                end = min(end, now)
                break
            if not finished and dt <= 0:  # nothing can move (cannot happen with rate > 0)
                break
    return end


def predict_done(transfers: list[dict], rates: dict, at: float, tid: str) -> float:
    """When transfer `tid` completes if nobody else joins or leaves (ledger state taken at `at`)."""
    copy = [dict(t) for t in transfers]
    mine = next((t for t in copy if t["id"] == tid), None)
    if mine is None:
        return at
    if mine["done"] is not None:
        return mine["done"]
    res = mine["res"]
    same = [t for t in copy if t["res"] == res]
    return advance(same, rates, at, float("inf"), stop_id=tid)


# -- a whole schedule (the planner's side) ---------------------------------------------------------


def simulate(jobs: list[dict], rates: dict, caps: dict, start: float = 0.0, lanes: int | None = None) -> dict:
    """Play a schedule: {job id: (started, finished)}.

    jobs: in the order they are to be started, each a dict with ``id``,
    ``res`` (None: no shared resource), ``mb``, ``fixed`` (seconds of the
    operation that use no shared bandwidth, before its transfer) and
    ``dirty``.  caps: resource -> how many jobs use it at once (missing: 1;
    None: unbounded).  lanes: how many jobs are in flight at once over all
    resources (None: unbounded) — a job takes a lane in list order, then waits
    for a slot of its resource, as the runner's limiters do.
    """
    pending = list(jobs)
    queues: dict[object, list[dict]] = {j.get("res"): [] for j in jobs}
    out: dict[str, tuple[float, float]] = {}
    running: list[dict] = []  # jobs in their fixed part: {"job", "until", "began"}
    transfers: list[dict] = []
    slots = {res: 0 for res in queues}
    in_flight = 0
    now = start
    lane_cap = float("inf") if not lanes else lanes

    def cap(res) -> float:
        c = caps.get(res, 1) if res is not None else None
        return float("inf") if c is None else max(1, int(c))

    def launch() -> None:
        nonlocal in_flight
        while pending and in_flight < lane_cap:
            j = pending.pop(0)
            in_flight += 1
            queues[j.get("res")].append(j)
        for res, q in queues.items():
            while q and slots[res] < cap(res):
                j = q.pop(0)
                slots[res] += 1
                running.append({"job": j, "until": now + float(j.get("fixed", 0.0)), "began": now})

    def finish(j: dict, began: float) -> None:
        nonlocal in_flight
        slots[j.get("res")] -= 1
        in_flight -= 1
        out[j["id"]] = (began, now)

    launch()
    while running or transfers:
        nxt = min([r["until"] for r in running] + [float("inf")])
        if transfers:
            probe = [dict(t) for t in transfers]
            advance(probe, rates, now, nxt)
            done_at = [t["done"] for t in probe if t["done"] is not None]
            if done_at:
                nxt = min(nxt, min(done_at))
        if nxt == float("inf"):
            break
        advance(transfers, rates, now, nxt)
        now = nxt
        for t in [t for t in transfers if t["done"] is not None]:
            transfers.remove(t)
            finish(t["job"], t["began"])
        for r in [r for r in running if r["until"] <= now + EPS]:
            running.remove(r)
            j = r["job"]
            if j.get("res") is None or float(j.get("mb", 0.0)) <= 0:
                finish(j, r["began"])
            else:
                t = new_transfer(j["id"], j["res"], j["mb"], now, j.get("dirty", 0.0))
                t["job"], t["began"] = j, r["began"]
                transfers.append(t)
        launch()
    return out


def makespan(result: dict[str, tuple[float, float]], start: float = 0.0) -> float:
    return max((f for _, f in result.values()), default=start) - start
