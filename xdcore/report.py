"""The run report: what a start or stop did to each guest, why, and how long it took.

The progress file is the play-by-play and is replaced by the next run; the
report is the verdict, kept as `last-stop.json` / `last-start.json` beside
the progress file.  /run is wiped at boot, and the stop report matters most
after a reboot, so when the progress file lives under /run the report is
also written to /var/lib/xendomains; readers take the newest copy.

A report is written as soon as the run holds its lock (RunStarted: "did
not finish", no exit code) and rewritten as each guest finishes, then a
last time with the verdict.  So a run killed half way (SIGKILL, power loss)
leaves a report that says so and names the guests it had handled; `status`
never takes the run before it for the last one.

`reconcile` compares the last stop's report with the host as it is now —
was the saved guest restored, is its image still waiting or quarantined, did
the auto guest that was shut down start again — for `xendomains status`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .model import NAMELESS
from .fsutil import read_small, write_atomic
from .events import (
    ControlApplied,
    Event,
    GateFinished,
    GroupStarted,
    GuestFinished,
    GuestPlaced,
    GuestPlanned,
    GuestScheduled,
    GuestSkipped,
    MessageLogged,
    RunFinished,
    RunStarted,
    ScheduleDeviated,
    StageDowngraded,
    StageFinished,
    StageStarted,
)
from .model import SaveImage

#: persistent copy of the reports when the progress file is on a tmpfs
STATE_DIR = Path("/var/lib/xendomains")
_VOLATILE = (Path("/run"), Path("/var/run"), Path("/dev/shm"))


@dataclass(frozen=True)
class StageRecord:
    """One stage of one guest (or of the host): outcome done/failed/timeout/skipped/cancelled."""

    stage: str
    outcome: str
    elapsed: float = 0.0
    detail: str = ""
    started: float = -1.0  # seconds after the first per-guest stage of the run began (-1: unknown)


@dataclass(frozen=True)
class GuestRecord:
    """How one guest's pipeline ended: outcome (saved, migrated, restored, failed …), why, how long."""

    guest: str
    outcome: str
    detail: str = ""
    elapsed: float = 0.0
    domid: int = -1
    stages: tuple[StageRecord, ...] = ()
    notes: tuple[str, ...] = ()  # downgrades, operator actions, warnings naming this guest
    planned: dict[str, Any] | None = None  # the scheduler's slot: stage, resource, order, start, finish, reason
    target: str = ""  # the host it migrated to (migrated guests only)
    placed_by: str = ""  # who chose that host: "placement" (by room) or "operator" (--place, control move)


@dataclass(frozen=True)
class RunReport:
    """The verdict of one start or stop run.  exit_code None: the run never finished (killed)."""

    verb: str
    run: str
    started_at: float
    finished_at: float | None
    exit_code: int | None
    summary: str = ""
    pid: int = 0
    toolstack: str = ""
    parallel: int = 1
    config: str = ""
    guests: tuple[GuestRecord, ...] = ()
    host_stages: tuple[StageRecord, ...] = ()
    messages: tuple[str, ...] = ()  # warnings and errors not about one guest
    interventions: tuple[str, ...] = ()  # "skip_stage web01 save (by uid 0 tty /dev/pts/3)", "hangup continue (…)"
    on_hangup: str = ""  # a run a console started: "continue" / "stop" if its terminal goes away

    @property
    def interrupted(self) -> bool:
        return self.exit_code is None

    def guest(self, name: str) -> GuestRecord | None:
        return next((g for g in self.guests if g.guest == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = 1
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunReport":
        def stages(items: Iterable[dict[str, Any]]) -> tuple[StageRecord, ...]:
            return tuple(StageRecord(str(s["stage"]), str(s["outcome"]), float(s.get("elapsed", 0.0)), str(s.get("detail", "")),
                                     float(s.get("started", -1.0)))
                         for s in items)

        guests = tuple(GuestRecord(str(g["guest"]), str(g["outcome"]), str(g.get("detail", "")), float(g.get("elapsed", 0.0)),
                                   int(g.get("domid", -1)), stages(g.get("stages", ())), tuple(g.get("notes", ())),
                                   dict(g["planned"]) if isinstance(g.get("planned"), dict) else None,
                                   str(g.get("target", "")), str(g.get("placed_by", "")))
                       for g in d.get("guests", ()))
        return cls(verb=str(d["verb"]), run=str(d.get("run", "")), started_at=float(d["started_at"]),
                   finished_at=None if d.get("finished_at") is None else float(d["finished_at"]),
                   exit_code=None if d.get("exit_code") is None else int(d["exit_code"]),
                   summary=str(d.get("summary", "")), pid=int(d.get("pid", 0)), toolstack=str(d.get("toolstack", "")),
                   parallel=int(d.get("parallel", 1)), config=str(d.get("config", "")), guests=guests,
                   host_stages=stages(d.get("host_stages", ())), messages=tuple(d.get("messages", ())),
                   interventions=tuple(d.get("interventions", ())), on_hangup=str(d.get("on_hangup", "")))


def report_dirs(cfg: Config) -> list[Path]:
    """Where reports are written: beside the progress file, plus STATE_DIR when that is volatile."""
    primary = cfg.progress.parent
    dirs = [primary]
    if any(primary == v or v in primary.parents for v in _VOLATILE) and primary != STATE_DIR:
        dirs.append(STATE_DIR)
    return dirs


def report_name(verb: str) -> str:
    return f"last-{verb}.json"


def load_report(path: Path) -> RunReport | None:
    """A report file, or None when it is missing or unreadable (a report never breaks status)."""
    try:
        return RunReport.from_dict(json.loads(read_small(Path(path))))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError):  # int(inf)
        return None


def load_last(cfg: Config, verb: str, dirs: Sequence[Path] | None = None) -> RunReport | None:
    """The newest `last-VERB.json` among the report directories."""
    found = [r for d in (dirs or report_dirs(cfg)) if (r := load_report(d / report_name(verb)))]
    return max(found, key=lambda r: r.finished_at or r.started_at, default=None)


class _Guest:
    """Mutable accumulator for one guest while the run goes on."""

    def __init__(self, name: str):
        self.name = name
        self.outcome = "pending"
        self.detail = ""
        self.elapsed = 0.0
        self.domid = -1
        self.stages: list[StageRecord] = []
        self.notes: list[str] = []
        self.planned: dict[str, Any] | None = None
        self.migrating_to = ""
        self.placed_by = ""  # by whom its latest target was chosen (GuestPlaced.by)

    def freeze(self, interrupted: bool) -> GuestRecord:
        outcome = self.outcome
        detail = self.detail
        if outcome == "pending" and interrupted:
            outcome, detail = "interrupted", "the run ended before this guest finished"
        target = self.migrating_to if outcome == "migrated" else ""
        return GuestRecord(self.name, outcome, detail, round(self.elapsed, 3), self.domid, tuple(self.stages), tuple(self.notes),
                           self.planned, target, self.placed_by if target else "")


#: the summary of a report written before its run finished (what it says if the run is killed)
UNFINISHED_SUMMARY = "did not finish: the process ended before writing its verdict (killed, or the host went down)"


class RunReportWriter:
    """Event sink: accumulates one run and writes its report as it goes.

    On RunStarted the report is written at once, unfinished (no exit code),
    and again as each guest finishes (not fsynced: the next write replaces
    it); on RunFinished the verdict (fsynced).  `close()` (call it in a
    finally) writes an interrupted report when the run started but never
    emitted RunFinished.  A run that never started (lock held, not root)
    writes nothing, so it never hides the last real one.
    """

    def __init__(self, dirs: Sequence[Path]):
        self.dirs = [Path(d) for d in dirs]
        self.errors: list[str] = []
        self.written: list[Path] = []
        self._start: RunStarted | None = None
        self._guests: dict[str, _Guest] = {}
        self._host: list[StageRecord] = []
        self._messages: list[str] = []
        self._controls: list[str] = []
        self._done = False
        self._t0: float | None = None  # when the first per-guest stage began (the timeline's zero)

    @classmethod
    def for_config(cls, cfg: Config) -> "RunReportWriter":
        return cls(report_dirs(cfg))

    def _g(self, name: str, domid: int = -1) -> _Guest:
        # every nameless domain ("(null)": zombies, domains being torn down) is a row of its own, by domid
        key = f"{name}\0{domid}" if name == NAMELESS and domid >= 0 else name
        g = self._guests.get(key)
        if g is None:
            g = self._guests[key] = _Guest(name)
        return g

    def __call__(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            self._start = e
            self._write(self.build(None, unfinished=True), final=False)
            return
        if self._start is None or self._done:
            return
        if isinstance(e, GuestPlanned):
            g = self._g(e.guest, e.domid)
            g.domid = e.domid
            if self._t0 is None or e.at < self._t0:
                self._t0 = e.at
        elif isinstance(e, GuestSkipped):
            g = self._g(e.guest)
            if g.outcome == "pending":  # never overwrite how the guest already ended (restored, saved …)
                g.outcome, g.detail, g.domid = "skipped", e.reason, e.domid
            else:
                g.notes.append(f"then passed over: {e.reason}")
        elif isinstance(e, GuestScheduled):
            self._g(e.guest).planned = {"stage": e.stage, "resource": e.resource, "order": e.order,
                                        "start": e.start, "finish": e.finish, "reason": e.reason}
        elif isinstance(e, ScheduleDeviated):
            self._g(e.guest).notes.append(f"off the plan: {e.reason}")
        elif isinstance(e, StageStarted):
            if e.guest and e.stage == "migrate":
                self._g(e.guest).migrating_to = e.detail
        elif isinstance(e, GuestPlaced):
            where = f"to {e.target}" if e.target else "no target"
            g = self._g(e.guest)
            g.notes.append(f"{e.by}: {where} ({e.reason})" if e.reason else f"{e.by}: {where}")
            g.placed_by = e.by if e.target else ""
        elif isinstance(e, StageFinished):
            started = -1.0
            if e.guest:
                if self._t0 is None:
                    self._t0 = e.at - e.elapsed
                started = round(max(0.0, e.at - e.elapsed - self._t0), 3)
            rec = StageRecord(e.stage, e.outcome, round(e.elapsed, 3), e.detail, started)
            if e.guest:
                self._g(e.guest).stages.append(rec)
            else:
                self._host.append(rec)
        elif isinstance(e, StageDowngraded):
            self._g(e.guest).notes.append(f"{e.from_stage} replaced by {e.to_stage}: {e.reason}")
        elif isinstance(e, GroupStarted):
            for n in e.guests:
                self._g(n).notes.append(f"order group {e.index + 1}/{e.of} ({e.label})")
        elif isinstance(e, GateFinished):
            word = "ready" if e.outcome == "open" else "up, not ready"
            self._g(e.guest).notes.append(f"gate: {word} after {e.elapsed:.1f}s" + (f" ({e.detail})" if e.detail else ""))
        elif isinstance(e, GuestFinished):
            g = self._g(e.guest, e.domid)
            g.outcome, g.detail, g.elapsed = e.outcome, e.detail, e.elapsed
            if e.domid >= 0:
                g.domid = e.domid
            self._write(self.build(None, unfinished=True), final=False)
        elif isinstance(e, MessageLogged) and e.level in ("warning", "error"):
            if e.guest and e.guest in self._guests:
                self._g(e.guest).notes.append(f"{e.level}: {e.text}")
            else:
                self._messages.append(f"{e.level}: {e.text}")
        elif isinstance(e, ControlApplied):
            what = " ".join(x for x in (e.guest, e.stage, e.value) if x)
            self._controls.append(f"{e.action} {what}".strip() + (f" (by {e.by})" if e.by else ""))
            if e.guest:
                self._g(e.guest).notes.append(f"operator: {e.action}" + (f" {e.stage}" if e.stage else ""))
        elif isinstance(e, RunFinished):
            self._write(self.build(e))

    def build(self, end: RunFinished | None = None, unfinished: bool = False) -> RunReport:
        """The report: the verdict (`end`), interrupted (no `end`), or `unfinished` (the run goes on)."""
        s = self._start
        assert s is not None
        return RunReport(
            verb=s.verb, run=s.run, started_at=s.at,
            finished_at=end.at if end else (None if unfinished else time.time()),
            exit_code=end.exit_code if end else None,
            summary=end.summary if end else (UNFINISHED_SUMMARY if unfinished else "interrupted"),
            pid=s.pid, toolstack=s.toolstack, parallel=s.parallel, config=s.config,
            guests=tuple(g.freeze(end is None) for g in self._guests.values()),
            host_stages=tuple(self._host), messages=tuple(self._messages), interventions=tuple(self._controls),
            on_hangup=s.on_hangup,
        )

    def _write(self, report: RunReport, final: bool = True) -> None:
        if final:
            self._done = True
        text = report.to_json() + "\n"
        for d in self.dirs:
            path = d / report_name(report.verb)
            try:
                write_atomic(path, text, fsync=final)
                if path not in self.written:
                    self.written.append(path)
            except OSError as exc:
                why = f"cannot write the run report {path}: {exc.strerror or exc}"
                if why not in self.errors:
                    self.errors.append(why)

    def close(self) -> None:
        if self._start is not None and not self._done:
            self._write(self.build(None))


# -- reconciling the last stop with the host now ------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    """One guest of the last stop: what the stop did (`then`), what is true now (`now`), whether that is fine."""

    guest: str
    then: str
    now: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Reconciliation:
    stop: RunReport
    guests: tuple[Reconciled, ...]
    #: the stop has no verdict and its run still holds the lock's flock (else it never finished)
    in_progress: bool = False

    @property
    def unfinished(self) -> bool:
        """The last stop never wrote its verdict and no run holds the lock: it was killed."""
        return self.stop.finished_at is None and self.stop.exit_code is None and not self.in_progress
    #: non-empty when the host shows a stop newer than this report, not run by xendomains (e.g. the classic
    #: script): the evidence, in words; the per-guest comparison would then describe the wrong stop
    stale: str = ""

    @property
    def problems(self) -> tuple[Reconciled, ...]:
        return tuple(r for r in self.guests if not r.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.stop.run,
            "stopped_at": self.stop.finished_at or self.stop.started_at,
            "stop_exit_code": self.stop.exit_code,
            "stop_finished": self.stop.exit_code is not None,
            "stop_in_progress": self.in_progress,
            "stale": self.stale,
            "guests": [] if self.stale else [asdict(r) for r in self.guests],
        }


def newer_stop_evidence(stop: RunReport, start: RunReport | None, running: set[str],
                        images: Iterable[SaveImage]) -> str:
    """Why the host shows a stop newer than `stop` that xendomains did not record ("" when it does not).

    Images in the save directory written after our stop finished were saved
    by someone else's stop; guests that our start (newer than our stop)
    brought up and that are gone now were stopped by someone else.
    """
    end = stop.finished_at or stop.started_at
    newer = sorted({i.guest or i.path.name for i in images if i.mtime > end + 1.0})
    if newer:
        return f"images newer than it in the save directory: {', '.join(newer)}"
    if start is not None and start.started_at > end:
        gone = sorted(g.guest for g in start.guests if g.outcome in ("restored", "created") and g.guest not in running)
        if gone:
            return (f"guests the start of {format_when(start.started_at)} brought up are gone since: {', '.join(gone)}")
    return ""


def reconcile(stop: RunReport, running: Iterable[str], saved: Iterable[SaveImage],
              quarantined: Iterable[SaveImage], auto: Iterable[str], in_progress: bool = False, *,
              dying: Iterable[str] = (), start: RunReport | None = None) -> Reconciliation:
    """Compare the last stop's outcome per guest with the running guests, the save dir and the auto dir now.

    `dying`: zombies `xl list` still shows.  `start`: the last start's report,
    to notice a later stop that xendomains did not run (see newer_stop_evidence).
    """
    running_s, auto_s, dying_s = set(running), set(auto), set(dying)
    saved, quarantined = list(saved), list(quarantined)
    images = {i.guest: i for i in saved if i.guest}
    jailed = {q.guest: q for q in quarantined if q.guest}
    stale = newer_stop_evidence(stop, start, running_s, [*saved, *quarantined])
    out: list[Reconciled] = []
    for g in stop.guests:
        name, then = g.guest, g.outcome
        up = name in running_s
        if name in dying_s:
            out.append(Reconciled(name, then, "dying", then == "zombie", "still listed by xl list, going away"))
            continue
        if then == "saved":
            if up:
                r = Reconciled(name, then, "restored", True)
            elif name in jailed:
                r = Reconciled(name, then, "quarantined", False, f"restore failed; image in {jailed[name].path}")
            elif name in images:
                r = Reconciled(name, then, "image waiting", False, f"not restored yet: {images[name].path}")
            else:
                r = Reconciled(name, then, "lost", False, "neither running nor saved")
        elif then == "migrated":
            r = Reconciled(name, then, "running here" if up else "on the target host", True)
        elif then in ("shutdown", "destroyed", "zombie"):
            if up:
                r = Reconciled(name, then, "started again", True)
            elif name in auto_s:
                r = Reconciled(name, then, "not started", False, "in the auto directory but not running")
            else:
                r = Reconciled(name, then, "off", True, "not in the auto directory")
        elif then == "suspended":
            r = Reconciled(name, then, "running" if up else "suspended or gone", up,
                           "" if up else "left suspended by a save that did not finish; see `xendomains resume`")
        elif then == "failed":
            r = Reconciled(name, then, "running" if up else "not running", False, f"the stop failed: {g.detail}" if g.detail else "the stop failed")
        else:  # skipped, interrupted, pending …
            if up:
                r = Reconciled(name, then, "running", True)
            else:
                r = Reconciled(name, then, "not running", name not in auto_s, g.detail)
        out.append(r)
    return Reconciliation(stop, tuple(out), in_progress, stale)


def format_when(epoch: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    except (ValueError, OverflowError, OSError):  # a report edited or corrupted by hand: never break status
        return "an unknown time"


def print_reconciliation(rec: Reconciliation, write) -> None:
    """The status section: `write` takes one line."""
    s = rec.stop
    when = format_when(s.finished_at or s.started_at)
    if rec.in_progress:
        write(f" A stop is in progress (run {s.run}, pid {s.pid}, since {when}):")
    elif rec.unfinished:
        write(f" THE LAST STOP DID NOT FINISH (run {s.run}, pid {s.pid}, started {when}): it was killed or the host "
              "went down; what it did before:")
    elif rec.stale:
        how = "interrupted" if s.interrupted else f"exit {s.exit_code}"
        write(f" Since the last stop: a stop xendomains did not run came after its last one ({when}, {how}):")
        write(f"   {rec.stale}; see the log of whatever stopped the guests (`xendomains report stop` shows ours)")
        return
    else:
        how = "interrupted" if s.interrupted else f"exit {s.exit_code}"
        write(f" Since the last stop ({when}, {how}):")
    if not rec.guests:
        write("   no guest was stopped")
    for r in rec.guests:
        mark = " " if r.ok else "!"
        write(f"  {mark}{r.guest:<24} {r.then:<10} → {r.now}" + (f"  ({r.detail})" if r.detail else ""))


def format_report(rep: RunReport, write) -> None:
    """`xendomains report`: the report for people."""
    when = format_when(rep.started_at)
    took = f", {rep.finished_at - rep.started_at:.1f}s" if rep.finished_at else ""
    how = ("did not finish" if rep.finished_at is None else "interrupted") if rep.interrupted else f"exit {rep.exit_code}"
    write(f"Last {rep.verb} (run {rep.run}, {when}{took}, {how}): {rep.summary}")
    if rep.on_hangup:
        write("  started from the console; if its terminal went away: "
              + ("continue" if rep.on_hangup == "continue" else "stop at a clean point"))
    for g in rep.guests:
        stages = " ".join(f"{s.stage}:{s.outcome}" + (f"({s.elapsed:.1f}s)" if s.elapsed else "") for s in g.stages)
        to = (f" to {g.target}" + (" (placed by the operator)" if g.placed_by == "operator" else "")) if g.target else ""
        write(f"  {g.guest:<24} {g.outcome + to:<10} {g.elapsed:7.1f}s  {stages}")
        if g.detail:
            write(f"      why: {g.detail}")
        for n in g.notes:
            write(f"      {n}")
    for st in rep.host_stages:
        write(f"  [{st.stage}] {st.outcome}" + (f": {st.detail}" if st.detail else ""))
    for m in rep.messages:
        write(f"  {m}")
    for c in rep.interventions:
        c = str(c)  # a report file is input: whatever it holds prints
        if c.startswith("hangup "):
            rest = c[len("hangup "):]
            then, _, who = rest.partition(" (by ")
            write("  hangup: the console's terminal went away" + (f" ({who.rstrip(')')})" if who else "")
                  + ("; the run continued" if then == "continue" else "; the run stopped at a clean point"))
        else:
            write(f"  operator: {c}")


__all__ = ["GuestRecord", "Reconciled", "Reconciliation", "RunReport", "RunReportWriter", "STATE_DIR", "StageRecord",
           "format_report", "load_last", "load_report", "print_reconciliation", "reconcile", "report_dirs", "report_name"]
