"""One line of text per event, for the console's log pane.

A pure function so the live log and the attached log read the same, and so
it can be tested without a screen.  Chatty successes (a command that exited
0, a stage that started) are left out; everything an operator may need to
act on — failures, skips, downgrades, interventions, messages — is kept.
"""

from __future__ import annotations

import shlex

from xdcore.events import (
    CommandFinished,
    CommandStarted,
    ControlApplied,
    Event,
    GateFinished,
    GateWaiting,
    GroupStarted,
    GuestFinished,
    GuestPlaced,
    GuestPlanned,
    GuestSkipped,
    LockHeld,
    LockReleased,
    LockTaken,
    MessageLogged,
    RunFinished,
    RunStarted,
    StageDowngraded,
    StageFinished,
    StageStarted,
    TargetProbed,
)
from xdcore.pipeline.stages import STAGES

from .formatting import duration

#: level of a line: info / warning / error / success — the log pane colours by it
Line = tuple[str, str]


def _title(stage: str) -> str:
    st = STAGES.get(stage)
    return st.title if st else stage


def xenstored_probe(e: Event) -> bool:
    """Is `e` a command of the probe for a xenstore stub domain (`xenstore-read /tool/xenstored/domid`)?

    Each run asks it once; on a host without a reachable xenstored it fails every time, which says
    nothing new after the first: the log gives it one dim note per console session (`EventLog`).
    """
    return (isinstance(e, (CommandStarted, CommandFinished)) and bool(e.argv)
            and e.argv[0].rsplit("/", 1)[-1] == "xenstore-read" and "/tool/xenstored/domid" in e.argv)


def describe(e: Event) -> Line | None:  # noqa: C901 - a table of cases
    """(level, text) for the log, or None for events the log leaves out."""
    if isinstance(e, RunStarted):
        what = {"stop": "evacuation", "start": "start"}.get(e.verb, e.verb)
        return "info", f"{what} started (pid {e.pid}, {e.toolstack}, {e.parallel} at a time)"
    if isinstance(e, RunFinished):
        lvl = "success" if e.exit_code == 0 else "error"
        return lvl, f"{e.verb} finished: {e.summary or 'nothing to do'} (exit {e.exit_code})"
    if isinstance(e, MessageLogged):
        prefix = f"{e.guest}: " if e.guest and not e.text.startswith(e.guest) else ""
        return ("error" if e.level == "error" else "warning" if e.level == "warning" else "info"), prefix + e.text
    if isinstance(e, (LockTaken, LockReleased, LockHeld)):
        word = {LockTaken: "taken", LockReleased: "released", LockHeld: "held by another run"}[type(e)]
        return "info", f"lock {e.path} {word}"
    if isinstance(e, GuestPlanned):
        return None
    if isinstance(e, TargetProbed):
        if e.error:
            return "warning", f"target {e.target} left out: {e.error}"
        return "info", f"target {e.target}: {e.free_mib} MiB free of {e.total_mib} (Xen {e.xen_version or '?'})"
    if isinstance(e, GuestPlaced):
        where = f"→ {e.target}" if e.target else "no migration target"
        return ("info" if e.target else "warning"), f"{e.guest}: {where}" + (f" ({e.reason})" if e.reason else "")
    if isinstance(e, GuestSkipped):
        return "warning", f"{e.guest}: skipped — {e.reason}"
    if isinstance(e, StageStarted):
        if e.guest:
            return None
        return "info", f"{_title(e.stage)} …" + (f" {e.detail}" if e.detail else "")
    if isinstance(e, StageFinished):
        who = f"{e.guest}: " if e.guest else ""
        if e.outcome == "done" and e.guest:
            return None
        lvl = "error" if e.outcome in ("failed", "timeout") else "warning" if e.outcome in ("skipped", "cancelled") else "info"
        tail = f" — {e.detail}" if e.detail else ""
        return lvl, f"{who}{_title(e.stage)} {e.outcome} {duration(e.elapsed) if e.elapsed else ''}".rstrip() + tail
    if isinstance(e, StageDowngraded):
        return "warning", f"{e.guest}: {_title(e.from_stage)} → {_title(e.to_stage)} ({e.reason})"
    if isinstance(e, GuestFinished):
        lvl = "error" if e.outcome == "failed" else "warning" if e.outcome in ("skipped", "zombie") else "success"
        tail = f" — {e.detail}" if e.detail and e.outcome in ("failed", "skipped", "zombie") else ""
        return lvl, f"{e.guest}: {e.outcome} in {duration(e.elapsed)}{tail}"
    if isinstance(e, CommandStarted):
        wd = f" (watchdog {e.timeout:g}s)" if e.timeout else ""
        return "info", f"$ {shlex.join(e.argv)}{wd}"
    if isinstance(e, CommandFinished):
        if e.returncode == 0 or e.returncode is None:  # killed: the stage's own line says timeout / cancelled
            return None
        why = "killed" if e.returncode is None else f"exit {e.returncode}"
        err = e.stderr.strip().splitlines()[-1] if e.stderr.strip() else ""
        return "error", f"$ {shlex.join(e.argv[:3])} … {why}" + (f": {err}" if err else "")
    if isinstance(e, GroupStarted):
        return "info", f"group {e.index + 1}/{e.of} ({e.label}): {', '.join(e.guests)}"
    if isinstance(e, GateWaiting):
        return "info", f"{e.guest}: waiting until {e.gate}" + (f" (at most {e.timeout:g}s)" if e.timeout else "")
    if isinstance(e, GateFinished):
        if e.outcome == "open":
            return "success", f"{e.guest}: ready after {duration(e.elapsed)}" + (f" — {e.detail}" if e.detail else "")
        return "warning", f"{e.guest}: up, not ready after {duration(e.elapsed)}" + (f" — {e.detail}" if e.detail else "")
    if isinstance(e, ControlApplied):
        words = {
            "enable_stage": f"stage {_title(e.stage)} turned on",
            "disable_stage": f"stage {_title(e.stage)} turned off",
            "skip_stage": f"{e.guest}: skip {_title(e.stage)} requested",
            "skip_guest": f"{e.guest}: skip requested",
            "set_parallel": f"parallelism set to {e.value}",
            "set_migrate_target": f"migration target set to {e.value or 'the configured one'}",
            "abort": "abort requested: running stages finish, nothing new starts",
            "abort_now": "abort now: running commands are killed",
        }
        return "warning", "operator: " + words.get(e.action, f"{e.action} {e.guest} {e.stage} {e.value}".strip())
    return None
