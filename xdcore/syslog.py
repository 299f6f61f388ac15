"""A log sink: one syslog line per meaningful event, naming the guest and the stage.

At boot and shutdown under SysV init nobody reads stdout, so what happened to
each guest must reach the system log: `web01: save done in 3.2s`,
`web01: migrate failed after 1.0s: …`.  Under systemd stdout and stderr
already go to the journal (systemd sets JOURNAL_STREAM), so the sink would
only log everything twice.

When it is on (`syslog_wanted`):
  XENDOMAINS_SYSLOG=yes/no in the environment decides, else
  on when JOURNAL_STREAM is unset and stdout is not a terminal (cron, a
  pipe, a boot without systemd).  The SysV init script that `xendomains
  install --sysv` writes sets XENDOMAINS_SYSLOG=yes unless under systemd,
  because a boot console is a terminal nobody watches.

Ident "xendomains", facility daemon.  Commands (argv, pids) are not logged:
the stage lines say what each guest went through, the progress file keeps
the rest.
"""

from __future__ import annotations

import os
import syslog as _syslog
from collections.abc import Callable, Mapping
from typing import IO

from .events import (
    ControlApplied,
    Event,
    GuestFinished,
    GuestSkipped,
    LockHeld,
    MessageLogged,
    RunFinished,
    RunStarted,
    StageDowngraded,
    StageFinished,
    StageStarted,
)

#: (priority, message) -> None; the default calls syslog.syslog
Writer = Callable[[int, str], None]

_LEVELS = {"info": _syslog.LOG_INFO, "warning": _syslog.LOG_WARNING, "error": _syslog.LOG_ERR}
_FAILED = ("failed", "timeout")


def syslog_wanted(env: Mapping[str, str] = os.environ, stdout: IO[str] | None = None) -> bool:
    """Whether a start/stop run should log to syslog (see the module docstring)."""
    v = env.get("XENDOMAINS_SYSLOG", "").strip().lower()
    if v in ("yes", "true", "1", "on"):
        return True
    if v in ("no", "false", "0", "off"):
        return False
    if env.get("JOURNAL_STREAM"):
        return False
    out = stdout
    try:
        return not (out.isatty() if out is not None else os.isatty(1))
    except (ValueError, OSError):
        return True


def _system_writer() -> Writer:
    _syslog.openlog("xendomains", _syslog.LOG_PID, _syslog.LOG_DAEMON)
    return lambda prio, msg: _syslog.syslog(prio, msg)


def _secs(elapsed: float) -> str:
    return f"{elapsed:.1f}s"


def format_event(e: Event) -> tuple[int, str] | None:
    """The syslog priority and line for an event, or None when it is not worth a line."""
    if isinstance(e, RunStarted):
        return _syslog.LOG_INFO, f"{e.verb} started (pid {e.pid}, toolstack {e.toolstack or '?'}, {e.parallel} at a time)"
    if isinstance(e, RunFinished):
        prio = _syslog.LOG_INFO if e.exit_code == 0 else _syslog.LOG_ERR
        return prio, f"{e.verb} finished with exit code {e.exit_code}: {e.summary or 'nothing to do'}"
    if isinstance(e, StageStarted):
        if not e.guest:
            return None  # host-level phase headings: their StageFinished says it
        extra = f" (watchdog {e.timeout:g}s)" if e.timeout else ""
        return _syslog.LOG_INFO, f"{e.guest}: {e.stage} started{extra}"
    if isinstance(e, StageFinished):
        who = e.guest or "host"
        if e.outcome in _FAILED:
            return _syslog.LOG_WARNING, f"{who}: {e.stage} {e.outcome} after {_secs(e.elapsed)}" + (f": {e.detail}" if e.detail else "")
        if not e.guest and e.stage in ("select", "cleanup", "restore", "create") and e.outcome == "done":
            return _syslog.LOG_INFO, f"host: {e.stage} done" + (f": {e.detail}" if e.detail else "")
        tail = f" in {_secs(e.elapsed)}" if e.elapsed else ""
        return _syslog.LOG_INFO, f"{who}: {e.stage} {e.outcome}{tail}" + (f": {e.detail}" if e.detail and e.outcome != "done" else "")
    if isinstance(e, StageDowngraded):
        return _syslog.LOG_WARNING, f"{e.guest}: {e.from_stage} replaced by {e.to_stage}: {e.reason}"
    if isinstance(e, GuestSkipped):
        return _syslog.LOG_INFO, f"{e.guest}: skipped: {e.reason}"
    if isinstance(e, GuestFinished):
        prio = _syslog.LOG_ERR if e.outcome == "failed" else _syslog.LOG_INFO
        tail = f" in {_secs(e.elapsed)}" if e.elapsed else ""
        return prio, f"{e.guest}: {e.outcome}{tail}" + (f": {e.detail}" if e.detail else "")
    if isinstance(e, MessageLogged):
        return _LEVELS.get(e.level, _syslog.LOG_NOTICE), (f"{e.guest}: " if e.guest else "") + e.text
    if isinstance(e, ControlApplied):
        what = " ".join(x for x in (e.guest, e.stage, e.value) if x)
        return _syslog.LOG_NOTICE, f"operator: {e.action}" + (f" {what}" if what else "") + (f" (by {e.by})" if e.by else "")
    if isinstance(e, LockHeld):
        return _syslog.LOG_INFO, f"already running (lock file {e.path} exists)"
    return None


class SyslogSink:
    """Event sink writing `format_event` lines through `writer` (syslog by default)."""

    def __init__(self, writer: Writer | None = None):
        self._writer = writer
        self.errors = 0

    def __call__(self, e: Event) -> None:
        line = format_event(e)
        if line is None:
            return
        if self._writer is None:
            self._writer = _system_writer()
        try:
            self._writer(*line)
        except OSError:  # no syslog daemon: never let logging break an evacuation
            self.errors += 1


__all__ = ["SyslogSink", "Writer", "format_event", "syslog_wanted"]
