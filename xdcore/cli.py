"""`xendomains`: a drop-in for /etc/init.d/xendomains with LSB exit codes.

    xendomains [--config FILE] [--json] [--parallel N] [--targets HOSTS] [--deadline S] VERB [GUEST …]

Verbs: start stop restart reload force-reload condrestart try-restart status
plan [stop|start] report [stop|start] control ACTION install help.  Each verb
is one `asyncio.run` of the same Service coroutines the console awaits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING
from pathlib import Path

from . import __version__
from .config import MAX_PARALLEL, Config, load_config
from .errors import ConfigMissing, ConfigUnreadable, PlacementRefused, ToolstackMissing, UnknownGuest, XendomainsError
from .events import EventBus
from .output import HumanPrinter, JsonWriter, PipeSafeStdout, ProgressFile, shown_name
from .service import (
    EXIT_FAILED,
    EXIT_NOT_CONFIGURED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_PRIV,
    EXIT_USAGE,
    Service,
    StatusReport,
    new_run_id,
)

if TYPE_CHECKING:
    from .plan import ThroughputRecorder
    from .run_options import RunOptions

VERBS = ("resume", "start", "stop", "restart", "reload", "force-reload", "condrestart", "try-restart", "status", "plan", "help",
         "report", "control", "install")
#: verbs with options of their own, parsed after the verb
SUBCOMMANDS = ("install", "control", "resume")
USAGE = "Usage: xendomains [--config FILE] [--json] [--parallel N] [--targets HOSTS] [--deadline S] {start|stop|restart|reload|force-reload|condrestart|try-restart|status|plan [stop|start]|report [stop|start]|control ACTION|resume GUEST [--recreate]|install|help} [GUEST ...]"
EXIT_NOT_INSTALLED = 5

HELP = f"""{USAGE}

Start Xen guests at boot and evacuate them at shutdown.

  start         restore saved guests, then create those in the auto directory
  stop          evacuate: SysRq, migrate, save or shut down every guest
  restart       stop, then start (reload, force-reload: the same)
  condrestart   restart only when the service is started (try-restart: the same)
  status        running guests; exit 0 all up, 1 auto guest missing or images left, 3 not started
  plan [stop|start]  what each guest will go through, why, when, over which resource; nothing is done
                (--timeline: draw it as bars on a time axis, grouped by disk and links)
  report [stop|start]  what the last stop (or start) did to each guest, why, how long
                (--timeline: its planned and actual bars side by side)
  control ACTION  steer the running start/stop: status, abort [--now], skip-guest GUEST,
                skip-stage GUEST [STAGE], set-parallel N, disable-stage STAGE,
                enable-stage STAGE, migrate-target "HOST [OPTIONS]" (empty: back to the config),
                move GUEST TARGET (several migration targets: before its migration begins)
  resume GUEST [--recreate]
                bring back a guest a dead save left SUSPENDED: save it again and restore it
                (keeps its memory); --recreate: destroy it and create it from its auto config
  install [--systemd|--sysv] [--prefix DIR] [--force] [--guests N] [--exe PATH]
                write the systemd unit or the SysV init script (timeouts from the config)
  help          this text

Options:
  --config FILE   config file (default: $XENDOMAINS_CONFIG, /etc/sysconfig/xendomains, /etc/default/xendomains)
  --json          one JSON object per event on stdout instead of progress lines
  --parallel N    guests handled at once, or auto (overrides XENDOMAINS_PARALLEL)
  --targets HOSTS migration targets placed by room, "xen02 xen03" (overrides XENDOMAINS_MIGRATE_TARGETS)
  --deadline S    budget in seconds for the whole stop (overrides XENDOMAINS_STOP_DEADLINE)
  --version       print the version

Options of start and stop (the console passes its choices this way):
  --stage STAGE           stop: only this stage (migrate, save or shutdown) for the named guests
  --disable-stage STAGE   turn a stage off for this run (repeatable)
  --leave-out GUEST       leave a guest out of this run (repeatable)
  --migrate-target "HOST [OPTIONS]"  override XENDOMAINS_MIGRATE for this run
  --place GUEST=TARGET    several migration targets: send GUEST to TARGET, placed before the rest
                          (repeatable; also for plan); refused, nothing stopped, when TARGET is not
                          a target, unreachable, on an older Xen, or has no room for GUEST
  --on-hangup continue|stop  a run started from the console: what to do if its terminal goes away

stop takes optional guest names: only those guests are evacuated.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xendomains", add_help=False, usage=USAGE)
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.add_argument("--parallel", type=_parallel_arg)
    p.add_argument("--targets")
    p.add_argument("--deadline")
    p.add_argument("--stage")
    p.add_argument("--disable-stage", action="append", default=[])
    p.add_argument("--leave-out", action="append", default=[])
    p.add_argument("--migrate-target")
    p.add_argument("--on-hangup")
    p.add_argument("--place", action="append", default=[])
    p.add_argument("--version", action="store_true")
    p.add_argument("--timeline", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("verb", nargs="?")
    p.add_argument("args", nargs="*")
    return p


class _UsageError(Exception):
    pass


def _parallel_arg(text: str) -> int:
    """--parallel N, or auto (0: no overall cap, the per-resource caps decide)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 1:  # 0 means auto only when spelled so
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1 or auto, got {text!r}")
    return n


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = _parser()
    p.error = lambda msg: (_ for _ in ()).throw(_UsageError(msg))  # type: ignore[method-assign]
    return p.parse_args(list(argv))


#: "refusing to …": what each verb does, in words
_VERB_PHRASE = {"status": "report the status", "plan": "make a plan", "report": "show a report",
                "condrestart": "restart", "try-restart": "restart", "force-reload": "reload"}


def _err(msg: str) -> None:
    sys.stderr.write(f"xendomains: {msg}\n")
    sys.stderr.flush()


def print_status(rep: StatusReport, out=None, reconciliation=None) -> None:
    out = out or sys.stdout
    w = lambda s="": out.write(s + "\n")  # noqa: E731
    w("Checking for xendomains: " + ("started" if rep.lock_present else "not started (no lock file)"))
    if rep.running:
        w(" running: " + " ".join(f"{shown_name(d.name)}({d.domid})" for d in rep.running))
    else:
        w(" running: no guest")
    for d in rep.suspended:
        w(f" SUSPENDED: {d.name}({d.domid}) [{d.state.flags if d.state else ''}]: NOT running — a save did not finish; "
          f"its state is only in memory. Way out: `xendomains resume {d.name}`")
    for d in rep.not_running:
        w(f" NOT RUNNING: {d.name}({d.domid}) [{d.state.flags if d.state else ''}] {d.state.words if d.state else ''}")
    for e in rep.saving:
        w(f" SAVING: {e.guest}: xl (pid {e.xl_pid}) is still writing {e.partial}")
    for st in rep.settled:
        w(f" SETTLED: {st.guest}: {st.detail}")
    if rep.missing_auto:
        w(" MISS AUTO: " + " ".join(rep.missing_auto))
    if rep.saved:
        w(" MISS SAVED: " + " ".join(str(i.path) for i in rep.saved))
    for q in rep.quarantined:
        w(f" QUARANTINED: {q.guest}: {q.path} (a restore of it failed, or the save that wrote it did not finish; restore or remove it by hand)")
    if reconciliation is not None:
        from .report import print_reconciliation

        print_reconciliation(reconciliation, w)
    w(f"  [{rep.words()}]")
    out.flush()


def status_json(rep: StatusReport, reconciliation=None) -> str:
    return json.dumps({
        "event": "status",
        "exit_code": rep.exit_code,
        "state": rep.state,
        "why": list(rep.why),
        "lock_present": rep.lock_present,
        "dying": [{"name": d.name, "domid": d.domid} for d in rep.dying],
        "running": [{"name": d.name, "domid": d.domid, "state": d.state.flags if d.state else None} for d in rep.running],
        "suspended": [{"name": d.name, "domid": d.domid, "state": d.state.flags if d.state else None} for d in rep.suspended],
        "not_running": [{"name": d.name, "domid": d.domid, "state": d.state.flags if d.state else None} for d in rep.not_running],
        "saving": [{"guest": e.guest, "xl_pid": e.xl_pid, "partial": str(e.partial)} for e in rep.saving],
        "settled": [{"guest": s.guest, "action": s.action, "path": str(s.path) if s.path else None, "detail": s.detail}
                    for s in rep.settled],
        "missing_auto": list(rep.missing_auto),
        "saved": [str(i.path) for i in rep.saved],
        "quarantined": [{"guest": q.guest, "path": str(q.path)} for q in rep.quarantined],
        "reconcile": reconciliation.to_dict() if reconciliation is not None else None,
    })


def reconcile_status(cfg: Config, rep: StatusReport):
    """The last stop's report against the host now (None when there is no report)."""
    from .report import load_last, reconcile

    stop = load_last(cfg, "stop")
    if stop is None:
        return None
    return reconcile(stop, (d.name for d in rep.running), rep.saved, rep.quarantined,
                     (a.name for a in rep.auto if a.name), in_progress=_stop_in_progress(cfg, stop),
                     dying=(d.name for d in rep.dying), start=load_last(cfg, "start"))


def _stop_in_progress(cfg: Config, stop) -> bool:
    """The report has no verdict and its run still holds the lock (the flock is the judge, the text says whose)."""
    from .lock import RunLock, default_lock_path, read_info

    if stop.exit_code is not None or stop.finished_at is not None:
        return False
    lock = RunLock(default_lock_path(cfg.lockfile))
    info = read_info(lock.path)
    return lock.held_by_other() and info is not None and info.state == "stopping" and info.pid == stop.pid


def make_service(cfg: Config, bus: EventBus) -> tuple[Service, "ThroughputRecorder"]:
    """The Service for this host, estimating from the throughputs that its recorder learns and stores."""
    from .plan import ThroughputRecorder, estimator, process_started
    from .toolstack.detect import choose_toolstack

    ts = choose_toolstack(cfg.toolstack)
    recorder = ThroughputRecorder(cfg)
    est = estimator(cfg, recorder.t, toolstack=ts)
    recorder.prior = est.prior  # the fixed parts no run has fitted yet are the host's own
    recorder.started_at = process_started()  # starting up is part of the run a plan estimates
    return Service(cfg, ts, bus, estimate=est), recorder


async def _run_verb(verb: str, args: list[str], cfg: Config, as_json: bool, timeline: bool = False,
                    opts: "RunOptions | None" = None, interrupted: list[str] | None = None) -> int:
    """Run one verb; the signal that interrupted its run, if any, is appended to `interrupted`."""
    from .plan import start_plan, stop_plan

    if verb == "report":
        return _print_report(cfg, args, as_json, timeline)
    bus = EventBus(run=new_run_id())
    bus.subscribe(JsonWriter() if as_json else HumanPrinter())
    svc, recorder = make_service(cfg, bus)
    if verb == "status":
        rep = await svc.status()
        rec = reconcile_status(cfg, rep)
        if as_json:
            print(status_json(rep, rec))
        else:
            print_status(rep, reconciliation=rec)
        return rep.exit_code
    if verb == "plan":
        which = args[0] if args else "stop"
        if which not in ("stop", "start"):
            raise _UsageError(f"plan takes stop or start, not {which!r}")
        if opts is not None:
            opts.apply(svc.control)  # --place: the plan shows the operator's placements
        plan = await (stop_plan(svc, args[1:] or None) if which == "stop" else start_plan(svc))
        if as_json:
            print(json.dumps(plan.to_dict()))
        else:
            print_plan(plan)
            if timeline:
                from .timeline import draw, plan_bars

                print()
                for line in draw(plan_bars(plan)):
                    print(line)
        for e in plan.errors:
            _err(f"error: {e}")
        return EXIT_FAILED if plan.errors else EXIT_OK
    if opts is not None:
        opts.apply(svc.control)
    from .control_socket import ControlServer, socket_path
    from .report import RunReportWriter
    from .syslog import SyslogSink, syslog_wanted

    progress = ProgressFile(cfg.progress)
    bus.subscribe(progress)
    bus.subscribe(recorder)
    report = RunReportWriter.for_config(cfg)
    bus.subscribe(report)
    if syslog_wanted():
        bus.subscribe(SyslogSink())
    control = ControlServer(socket_path(cfg.progress), svc.control)  # opens once the run holds the lock
    bus.subscribe(control)
    import signal

    loop = asyncio.get_running_loop()
    caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for sig in caught:  # first: no new stage; second: kill the running commands; the report is written either way
        loop.add_signal_handler(sig, svc.interrupt, signal.Signals(sig).name)
    try:
        if verb == "start":
            code = (await svc.start()).exit_code
        elif verb == "resume":
            code = (await svc.resume(args[0], recreate="--recreate" in args[1:])).exit_code
        elif verb == "stop":
            code = (await svc.stop(args or None)).exit_code
        else:
            raise _UsageError(verb)
    finally:  # each witness closes whatever the others do; none of them changes the run's outcome
        for sig in caught:
            loop.remove_signal_handler(sig)
        if svc.interrupted_by and interrupted is not None:
            interrupted.append(svc.interrupted_by)
        progress.close()
        try:
            report.close()
        except Exception as exc:  # write_atomic reports OSError; anything else must not hide the outcome either
            report.errors.append(f"cannot write the run report: {exc}")
        await control.aclose()
    for problem in (*recorder.warnings, progress.error, control.error, recorder.error, *report.errors):
        if problem:
            _err(f"warning: {problem}")
    return code


def _print_report(cfg: Config, args: list[str], as_json: bool, timeline: bool = False) -> int:
    from .report import format_report, load_last

    which = args[0] if args else "stop"
    if which not in ("stop", "start") or len(args) > 1:
        raise _UsageError("report takes stop or start")
    rep = load_last(cfg, which)
    if rep is None:
        _err(f"no report of a {which} run yet")
        return EXIT_NOT_RUNNING
    if as_json:
        print(json.dumps(rep.to_dict()))
    else:
        format_report(rep, lambda line: print(line))
        if timeline:
            from .timeline import draw, report_bars

            print()
            for line in draw(report_bars(rep)):
                print(line)
    return EXIT_OK


def print_plan(plan, out=None) -> None:
    out = out or sys.stdout
    w = lambda s="": out.write(s + "\n")  # noqa: E731
    w(f"Plan for {plan.verb} ({_guests(len(plan.guests))}, {plan.parallel} at a time,"
      f" about {_duration(plan.estimate_s)} {plan.estimate_source}):")
    # the reasons every guest shares (the config) once; per guest only what differs
    staged = [g for g in plan.guests if not g.untouched]
    common = set.intersection(*(set(g.reasons) for g in staged)) if staged else set()
    for r in sorted(common, key=lambda r: next((i for g in plan.guests for i, x in enumerate(g.reasons) if x == r), 0)):
        w(f"  why: {r}")
    for res, c in plan.caps:
        w(f"  {res}: {c} at a time")
    groups = (plan.order or {}).get("groups") or []
    if groups:
        w(f"  order: {len(groups)} groups, one after the other" + (" (reverse boot order)" if plan.verb == "stop" else ""))
        for grp in groups:
            w(f"    {grp['index'] + 1}. {grp['label']}: {' '.join(grp['guests'])}")
            for guest, gate in grp.get("gates", {}).items():
                if gate != "none":
                    w(f"         gate: {guest} {'ready' if gate == 'ready' else gate}")
    last = None
    for g in plan.guests:
        if groups and g.group != last:
            last = g.group
            if 0 <= g.group < len(groups):
                w(f"  group {g.group + 1} ({groups[g.group]['label']}):")
        stages = " → ".join(g.stages) if g.stages else "nothing"
        to = (f"  to {g.target}" + (" (placed by the operator)" if g.placed_by == "operator" else "")) if g.target else ""
        if g.planned:
            waits = f"waits on {g.resource}" if g.resource else "no shared resource"
            w(f"  {g.guest:<24} {stages:<32} {g.planned:<8} {waits:<22} {g.start_s:6.1f}s → {g.finish_s:6.1f}s"
              + to + (f"  ({g.note})" if g.note else ""))
            if g.why_planned:
                w(f"      {g.why_planned}")
        else:
            w(f"  {g.guest:<24} {stages:<36} ~{g.estimate_s:.0f}s{to}" + (f"  ({g.note})" if g.note else ""))
        if g.policy:
            w(f"      policy: {g.policy}")
        for r in g.reasons:
            if r not in common:
                w(f"      {r}")
    for name, why in plan.skipped:
        w(f"  {name:<24} skipped: {why}")
    if plan.save_dir_free is not None:
        w(f"  save directory: {plan.save_needed / 2**20:.0f} MiB needed, {plan.save_dir_free / 2**20:.0f} MiB free")
    if plan.no_room:
        w("  no room to save (shut down instead): " + " ".join(plan.no_room))
    for t in plan.targets:
        if t.error:
            w(f"  target {t.name}: left out ({t.error})")
        else:
            at_once = f", {t.at_once} migration{'s' if t.at_once != 1 else ''} at a time" if t.at_once else ""
            w(f"  target {t.name}: {t.free_mib} MiB free, {t.reserve_mib} reserved, {t.room_left_mib} MiB left"
              f" (Xen {t.xen_version or '?'}){at_once}: {' '.join(t.guests) or 'no guest'}")
    for n in plan.notes:
        w(f"  note: {n}")
    for e in plan.errors:
        w(f"  ERROR: {e}")
    if plan.estimate_basis:
        w("  estimate: " + ", ".join(plan.estimate_basis))
    out.flush()

def _overrides(ns: argparse.Namespace) -> dict | str:
    """--targets and --deadline as Config fields, or the usage error (read like their config keys)."""
    from .config import KEYS

    out: dict = {}
    for opt, key in (("targets", "XENDOMAINS_MIGRATE_TARGETS"), ("deadline", "XENDOMAINS_STOP_DEADLINE")):
        value = getattr(ns, opt)
        if value is None:
            continue
        field, conv = KEYS[key]
        try:
            out[field] = conv(value)
        except Exception as exc:  # config._Bad: the expectation
            return f"--{opt}: expected {exc.args[0] if exc.args else 'a valid value'}, got {value!r}"
    return out


_VALUE_OPTIONS = ("--config", "--parallel", "--targets", "--deadline", "--stage", "--disable-stage", "--leave-out", "--migrate-target",
                  "--on-hangup", "--place")



def _guests(n: int) -> str:
    return f"{n} guest" if n == 1 else f"{n} guests"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"

def _split_subcommand(argv: list[str]) -> tuple[list[str], list[str]]:
    """(global options + verb, the verb's own options) for verbs in SUBCOMMANDS; else (argv, [])."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUE_OPTIONS:
            i += 2
            continue
        if not a.startswith("-"):
            return (argv[: i + 1], argv[i + 1 :]) if a in SUBCOMMANDS else (argv, [])
        i += 1
    return argv, []


def _install_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xendomains install", add_help=False)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--systemd", dest="kind", action="store_const", const="systemd")
    kind.add_argument("--sysv", dest="kind", action="store_const", const="sysv")
    p.add_argument("--prefix", default="/")
    p.add_argument("--force", action="store_true")
    p.add_argument("--guests", type=int)
    p.add_argument("--exe")
    p.error = lambda msg: (_ for _ in ()).throw(_UsageError(f"install: {msg}"))  # type: ignore[method-assign]
    return p


def _install(ns: argparse.Namespace, sub: list[str]) -> int:
    from .config import Config as _Config
    from .install import UnsafeInstallPath, default_kind, find_executable, install, next_steps

    opts = _install_parser().parse_args(sub)
    if opts.guests is not None and opts.guests < 1:
        raise _UsageError("install: --guests must be at least 1")
    try:
        cfg = load_config(ns.config)
    except ConfigMissing as exc:
        if ns.config:
            _err(str(exc))
            return EXIT_NOT_CONFIGURED
        cfg = _Config()  # no config yet: the defaults, and the service will search at run time
    if cfg.problems:
        for p in cfg.problems:
            _err(str(p))
        _err("refusing to install with a malformed config (the timeouts are computed from it)")
        return EXIT_NOT_CONFIGURED
    if ns.parallel is not None:
        cfg = cfg.with_overrides(parallel=0 if ns.parallel == 0 else min(MAX_PARALLEL, max(1, ns.parallel)))
    prefix = Path(opts.prefix)
    kind = opts.kind or default_kind(prefix)
    if not opts.kind and prefix != Path("/"):  # packaging into a tree: say which was chosen and why
        marker = prefix / "run/systemd/system"
        print(f"note: {marker} does not exist: writing the SysV init script (--systemd writes the unit instead)"
              if kind == "sysv" else f"note: {marker} exists: writing the systemd unit (--sysv writes the init script instead)")
    config = Path(ns.config).absolute() if ns.config else None
    exe = [os.path.abspath(opts.exe)] if opts.exe else find_executable()  # absolute: a venv install boots too
    try:
        results = install(kind, cfg, prefix=Path(opts.prefix), config=config, exe=exe, guests=opts.guests, force=opts.force)
    except UnsafeInstallPath as exc:
        _err(f"install: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        _err(f"cannot install: {exc.filename or ''}: {exc.strerror or exc}")
        return EXIT_PRIV if isinstance(exc, PermissionError) else EXIT_FAILED
    for r in results:
        if r.ok:
            print(f"{r.path}: {r.action}" + (f" ({r.detail})" if r.detail else ""))
        else:
            _err(r.detail)
    if all(r.ok for r in results):
        print(f"  the service runs {' '.join(exe)}" + (f" --config {config}" if config else "")
              + ("" if os.path.isabs(exe[0]) else " (not an absolute path: give --exe)"))
        where = "" if prefix == Path("/") else f" (on the system that boots from {prefix})"
        print(f"next{where}:" if any(r.action != "unchanged" for r in results) else f"if not done yet{where}:")
        for step in next_steps(kind, prefix):
            print(f"  {step}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


_CONTROL_USAGE = ("control takes: status | abort [--now] | skip-guest GUEST | skip-stage GUEST [STAGE] | set-parallel N"
                  " | disable-stage STAGE | enable-stage STAGE | migrate-target [\"HOST [OPTIONS]\"] | move GUEST TARGET")


def _control(cfg: Config, sub: list[str], as_json: bool) -> int:
    from .control_socket import ControlClient, ControlError, own_tty, socket_path

    if not sub:
        raise _UsageError(_CONTROL_USAGE)
    action, rest = sub[0], sub[1:]
    c = ControlClient(socket_path(cfg.progress), tty=own_tty())
    calls = {
        ("status", 0): lambda: c.status(),
        ("abort", 0): lambda: c.abort(False),
        ("skip-guest", 1): lambda: c.skip_guest(rest[0]),
        ("skip-stage", 1): lambda: c.skip_stage(rest[0]),
        ("skip-stage", 2): lambda: c.skip_stage(rest[0], rest[1]),
        ("disable-stage", 1): lambda: c.set_stage(rest[0], False),
        ("enable-stage", 1): lambda: c.set_stage(rest[0], True),
        ("migrate-target", 0): lambda: c.set_migrate_target(None),
        ("migrate-target", 1): lambda: c.set_migrate_target(rest[0]),
        ("move", 2): lambda: c.move_guest(rest[0], rest[1]),
    }
    if action == "abort" and rest == ["--now"]:
        call = lambda: c.abort(True)  # noqa: E731
    elif action == "set-parallel" and len(rest) == 1:
        if not re.fullmatch(r"[0-9]{1,5}", rest[0]) or not 1 <= int(rest[0]) <= MAX_PARALLEL:
            raise _UsageError(f"set-parallel takes an integer from 1 to {MAX_PARALLEL}, not {rest[0][:20]!r}")
        call = lambda: c.set_parallel(int(rest[0]))  # noqa: E731
    elif (action, len(rest)) in calls:
        call = calls[(action, len(rest))]
    else:
        raise _UsageError(_CONTROL_USAGE)
    try:
        reply = call()
    except ControlError as exc:
        _err(str(exc))
        return EXIT_FAILED
    if as_json or action == "status":
        print(json.dumps(reply))
    else:
        print("ok")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a reader that goes away (`status | head -1`) ends the output quietly."""
    stdout = sys.stdout
    sys.stdout = PipeSafeStdout(stdout)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout = stdout


def _main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    argv, sub = _split_subcommand(argv)
    try:
        ns = _parse(argv)
        if ns.verb == "install" and not (ns.help or ns.version):
            return _install(ns, sub)
    except _UsageError as exc:
        _err(str(exc))
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    if ns.version:
        print(f"xendomains {__version__}")
        return EXIT_OK
    if ns.help or ns.verb == "help":
        print(HELP, end="")
        return EXIT_OK
    verb = ns.verb
    if verb not in VERBS:
        if verb:
            _err(f"unknown verb {verb!r}")
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    if verb in ("start", "status", "restart", "reload", "force-reload", "condrestart", "try-restart", "control") and ns.args:
        _err(f"{verb} takes no guest names")
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE

    try:
        cfg = load_config(ns.config)
    except ConfigMissing as exc:
        unreadable = isinstance(exc, ConfigUnreadable)
        if verb == "stop" and unreadable:
            # a host going down must still evacuate: the documented defaults, loudly, and exit 1 at the end
            _err(f"WARNING: {exc}")
            _err("WARNING: stopping with the documented defaults (every guest is evacuated); the exit code will be 1")
            cfg = Config(unreadable=str(exc))
        elif verb == "stop":
            _err(f"{exc}; nothing to stop")
            return EXIT_OK
        elif verb == "control" and not ns.config:
            cfg = Config()  # the default progress directory is all it needs to find a run
        else:
            _err(str(exc))
            if unreadable:
                _err(f"refusing to {_VERB_PHRASE.get(verb, verb)} without a readable config"
                     " (stop would evacuate with the documented defaults)")
            return EXIT_NOT_CONFIGURED
    for w in cfg.warnings:
        _err(f"warning: {w}")
    if ns.parallel is not None:
        if not (ns.parallel == 0 or 1 <= ns.parallel <= MAX_PARALLEL):
            _err(f"--parallel must be from 1 to {MAX_PARALLEL}, or auto")
            return EXIT_USAGE
        cfg = cfg.with_overrides(parallel=ns.parallel)
    overrides = _overrides(ns)
    if isinstance(overrides, str):
        _err(overrides)
        return EXIT_USAGE
    cfg = cfg.with_overrides(**overrides)
    if cfg.problems and verb not in ("stop", "control", "report"):
        for p in cfg.problems:
            _err(str(p))
        _err(f"refusing to {_VERB_PHRASE.get(verb, verb)} with a malformed config (fix it; stop would use the defaults)")
        return EXIT_NOT_CONFIGURED

    opts = None
    run_opts_given = bool(ns.stage or ns.disable_stage or ns.leave_out or ns.migrate_target is not None or ns.on_hangup)
    if run_opts_given and verb not in ("start", "stop"):
        _err(f"--stage, --disable-stage, --leave-out, --migrate-target and --on-hangup are options of start and stop, not {verb}")
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    if ns.place and not (verb == "stop" or (verb == "plan" and ns.args[:1] in ([], ["stop"]))):
        _err(f"--place chooses where guests migrate: an option of stop and plan stop, not {' '.join([verb, *ns.args[:1]])}")
        sys.stderr.write(USAGE + "\n")
        return EXIT_USAGE
    if verb in ("start", "stop", "plan") and (run_opts_given or ns.place):
        from .run_options import RunOptions, RunOptionsError

        try:
            opts = RunOptions.from_args(stage=ns.stage, disabled=ns.disable_stage, leave_out=ns.leave_out,
                                        migrate_target=ns.migrate_target, on_hangup=ns.on_hangup, place=ns.place)
            opts.check_guests("stop" if verb == "plan" else verb, ns.args[1:] if verb == "plan" else ns.args)
        except RunOptionsError as exc:
            _err(str(exc))
            sys.stderr.write(USAGE + "\n")
            return EXIT_USAGE
        cfg = opts.config(cfg)

    interrupted: list[str] = []  # the signal that interrupted a run (restart then starts nothing)

    def run(v: str, args: list[str]) -> int:
        try:
            return asyncio.run(_run_verb(v, args, cfg, ns.json, ns.timeline, opts, interrupted))
        except ToolstackMissing as exc:
            _err(str(exc))
            # LSB: 5 "program is not installed"; status reports 3 ("not running")
            return EXIT_NOT_RUNNING if v == "status" else EXIT_NOT_INSTALLED
        except (_UsageError, UnknownGuest, PlacementRefused) as exc:
            _err(str(exc))
            return EXIT_USAGE
        except XendomainsError as exc:
            _err(str(exc))
            return EXIT_FAILED
        except KeyboardInterrupt:
            _err("interrupted")
            interrupted.append("SIGINT")
            return EXIT_FAILED

    if verb == "control":
        try:
            return _control(cfg, sub, ns.json)
        except _UsageError as exc:
            _err(str(exc))
            return EXIT_USAGE
    if verb == "resume":
        if len(sub) not in (1, 2) or sub[0].startswith("-") or sub[1:] not in ([], ["--recreate"]):
            _err("resume takes one guest name and optionally --recreate")
            sys.stderr.write(USAGE + "\n")
            return EXIT_USAGE
        return run(verb, sub)
    if verb in ("start", "stop", "status", "plan", "report"):
        return run(verb, ns.args)
    if verb in ("condrestart", "try-restart"):
        from .lock import default_lock_path

        if not os.path.lexists(default_lock_path(cfg.lockfile)):
            print("xendomains is not started: nothing to restart")
            return EXIT_OK
    # restart / reload / force-reload / condrestart / try-restart
    rc_stop = run("stop", [])
    if interrupted:  # an interrupted stop is not a stop: starting now would undo what it was stopped for
        _err(f"{verb}: the stop was interrupted by {interrupted[0]} (exit {rc_stop}); start was not run")
        return rc_stop if rc_stop != EXIT_OK else EXIT_FAILED
    rc_start = run("start", [])
    return rc_start if rc_start != EXIT_OK else rc_stop


if __name__ == "__main__":
    sys.exit(main())
