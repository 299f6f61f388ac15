"""The xendomains verbs — start, stop, status, restart … — over the pipelines.

`Service` is what both front ends drive: the CLI wraps each verb in
`asyncio.run`, the console awaits the same coroutines on its own loop.  It
owns the lock semantics (SEMANTICS §2), the start pipeline (§3: lock →
restore → autostart), the stop pipeline (§4: select → per-guest stages →
shutdown-all → cleanup) and status (§5).  It reports only through events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import savedir
from .config import Config
from .errors import (CommandFailed, CommandTimedOut, LockError, LockUnusable, PlacementRefused, ToolstackError,
                     UnknownGuest, XendomainsError)
from .events import (
    EventBus,
    GateFinished,
    GateWaiting,
    GroupStarted,
    GuestFinished,
    GuestPlanned,
    GuestSkipped,
    LockHeld,
    LockReleased,
    LockTaken,
    MessageLogged,
    RunFinished,
    RunStarted,
    StageFinished,
    StageStarted,
)
from .lock import RunLock, default_lock_path
from .model import AutoConfig, Domain, HostInfo, SaveImage
from .pipeline.control import RunControl
from .bootorder import BootOrder, boot_order
from .gates import wait_gate
from .policy import Gate, GuestPolicy, Policies, load_policies, policy_configs
from .pipeline.runner import Deadline, Estimator, GuestResult, StopRunner, attach_command_events, current_step
from .pipeline.stages import START_STAGES, STOP_STAGES
from .pipeline.targets import TargetPool, migrate_setup, probe_targets, probe_timeout
from .placement import leave_out_older
from .toolstack.port import Toolstack

_UNKNOWN = object()  # the xenstore stub domid before it was asked

# LSB exit codes
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_PRIV, EXIT_NOT_CONFIGURED = 0, 1, 2, 3, 4, 6


#: RunFinished's summary for a run torn down before its end (the process then exits non-zero too)
INTERRUPTED_SUMMARY = "interrupted before it finished"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunOutcome:
    """What a verb did: its exit code and, per guest, how it ended."""

    verb: str
    exit_code: int
    guests: list[GuestResult] = field(default_factory=list)
    summary: str = ""


@dataclass(frozen=True)
class StatusReport:
    lock_present: bool
    running: tuple[Domain, ...]
    auto: tuple[AutoConfig, ...]
    missing_auto: tuple[str, ...]
    saved: tuple[SaveImage, ...]
    quarantined: tuple[SaveImage, ...]
    exit_code: int
    #: guests left suspended (`---ss-`) by a save that did not finish: NOT running
    suspended: tuple[Domain, ...] = ()
    #: other guests that exist but do not run: paused, shut down, dying
    not_running: tuple[Domain, ...] = ()
    #: saves whose xl is still running (a killed run's xl finishing its work)
    saving: tuple[savedir.SaveEntry, ...] = ()
    #: what the settle step did with partial saves left by a killed run
    settled: tuple[savedir.Settled, ...] = ()

    @property
    def dying(self) -> tuple[Domain, ...]:
        """Zombies: still listed by `xl list`, going away."""
        return tuple(d for d in self.not_running if d.zombie)

    @property
    def state(self) -> str:
        """In systemctl's words: active, degraded or inactive (the LSB exit code says the same: 0, 1, 3)."""
        return {EXIT_OK: "active", EXIT_FAILED: "degraded"}.get(self.exit_code, "inactive")

    @property
    def why(self) -> tuple[str, ...]:
        """What makes the state what it is, in words (empty when active)."""
        def n(count: int, one: str, many: str) -> str:
            return f"{count} {one if count == 1 else many}"

        if self.exit_code == EXIT_NOT_RUNNING:
            return ("no lock file",) if not self.lock_present else ("no guest running",)
        out = []
        if self.missing_auto:
            out.append(n(len(self.missing_auto), "auto guest", "auto guests") + " not running")
        if self.saved:
            out.append(n(len(self.saved), "saved image", "saved images") + " waiting")
        if self.quarantined:
            out.append(n(len(self.quarantined), "image", "images") + " quarantined")
        if self.suspended:
            out.append(n(len(self.suspended), "guest", "guests") + " left suspended")
        return tuple(out)

    def words(self) -> str:
        """`active`, `degraded: 1 image quarantined`, `inactive: no lock file`."""
        return self.state + (": " + ", ".join(self.why) if self.why else "")


class Service:
    """The xendomains service for one config and one toolstack."""

    def __init__(self, cfg: Config, toolstack: Toolstack, bus: EventBus | None = None,
                 control: RunControl | None = None, estimate: Estimator | None = None):
        self.cfg = cfg
        self.ts = toolstack
        self.bus = bus or EventBus()
        self.control = control or RunControl(cfg.parallel, emit=self.bus.emit)
        self.estimate = estimate
        self.lock_path = default_lock_path(cfg.lockfile)
        self._xs_domid: int | None | object = _UNKNOWN
        #: the signal that interrupted this run ("SIGTERM"), if any
        self.interrupted_by: str | None = None

    # -- helpers ------------------------------------------------------------------------------

    def _info(self, text: str, guest: str = "") -> None:
        self.bus.emit(MessageLogged(level="info", text=text, guest=guest))

    def _warn(self, text: str, guest: str = "") -> None:
        self.bus.emit(MessageLogged(level="warning", text=text, guest=guest))

    def _error(self, text: str, guest: str = "") -> None:
        self.bus.emit(MessageLogged(level="error", text=text, guest=guest))

    async def guests(self) -> list[Domain]:
        """Domains other than Domain-0 and the xenstore stub domain.

        The stub's domid is asked once per Service (it does not change while
        xenstored runs), not once per listing.
        """
        if self._xs_domid is _UNKNOWN:
            domains, self._xs_domid = await asyncio.gather(self.ts.list_domains(), self.ts.xenstore_domid())
        else:
            domains = await self.ts.list_domains()
        return [d for d in domains if not d.is_dom0 and d.domid != self._xs_domid]

    def bound_queries(self, maxwait: float | None) -> None:
        """`xl list`/`info`/dry-run run under the verb's watchdog too (at least 5 s, at most the adapter's 60 s)."""
        cur = getattr(self.ts, "query_timeout", None)
        if cur is not None and maxwait:
            self.ts.query_timeout = min(cur, max(5.0, float(maxwait)))  # type: ignore[attr-defined]

    async def settle_saves(self, wait: float = 0.0, act: bool = True) -> list[savedir.Settled]:
        """Decide the fate of saves a killed run left (the journal and partial files), from facts.

        Waits up to `wait` seconds for an `xl save` that outlived its run to
        finish; `act=False` (status while another run holds the lock) only
        reports what is in progress.
        """
        sd = self.cfg.save_dir
        if sd is None or (not savedir.entries(sd) and not savedir.partial_files(sd)):
            return []
        if not act:
            return [savedir.Settled(e.guest, "in-progress", e.partial, f"xl (pid {e.xl_pid}) is saving {e.guest} to {e.partial}")
                    for e in savedir.in_progress(sd)]
        until = time.monotonic() + wait
        told: set[int] = set()
        while wait > 0 and time.monotonic() < until and not self.control.aborted:
            busy = savedir.in_progress(sd)
            if not busy:
                break
            for e in busy:
                if (e.xl_pid or 0) not in told:
                    told.add(e.xl_pid or 0)
                    self._info(f"waiting for xl (pid {e.xl_pid}) to finish saving {e.guest} (started by a run that ended)", guest=e.guest)
            await asyncio.sleep(0.1)
        try:
            domains: list[Domain] | None = await self.ts.list_domains()
        except ToolstackError as exc:
            self._warn(f"cannot list the domains to settle interrupted saves ({exc}): they are quarantined, never deleted")
            domains = None
        results = savedir.settle(sd, domains)
        for r in results:
            if r.action == "removed" or r.action == "cleared":
                self._warn(r.detail, guest=r.guest)
            elif r.action == "promoted":
                self._warn(r.detail + " (restored like any image)", guest=r.guest)
            elif r.action == "in-progress":
                self._warn(r.detail + "; left alone", guest=r.guest)
            else:
                self._error(r.detail, guest=r.guest)
        return results

    def auto_paths(self) -> list[Path]:
        d = self.cfg.auto_dir
        if d is None:
            return []
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as exc:
            self._error(f"cannot read the auto directory {d}: {exc.strerror}")
            return []
        out = []
        for e in entries:
            if e.name.startswith(".") or e.name.endswith(("~", ".bak", ".dpkg-old", ".dpkg-dist", ".rpmsave", ".rpmnew")):
                continue
            try:
                if e.is_file(follow_symlinks=True):
                    out.append(Path(e.path))
                elif e.is_symlink():
                    self._warn(f"auto entry {e.path} is a dangling symlink; ignored")
            except OSError:
                continue
        return out

    async def check_names(self, only: Sequence[str] | None, guests: Sequence[Domain] | None = None) -> None:
        """Raise UnknownGuest when a guest named on the command line is not on this host (dom0 is not a guest).
        `guests`: this host's guests when the caller listed them already."""
        if not only:
            return
        if guests is None:
            guests = await self.guests()
        known = [d.name for d in guests if not d.nameless]  # "(null)" names no guest to compare with
        unknown = [n for n in dict.fromkeys(only) if n not in set(known)]
        if unknown:
            raise UnknownGuest(unknown, known)

    async def auto_configs(self) -> list[AutoConfig]:
        paths = self.auto_paths()
        return await self.ts.config_names(paths) if paths else []

    async def policies(self, names: Sequence[str] = (), autos: Sequence[AutoConfig] | None = None) -> Policies:
        """Each guest's policy (xdcore.policy), read once: from its config in the auto directory when it
        has one, then XENDOMAINS_POLICY_DIR/GUEST.  `names`: guests to include even without a config."""
        auto_paths = self.auto_paths() if autos is None else []

        def read() -> Policies:
            if autos is None:  # stop: names read in-process (only of files that could hold policy), no `xl create -n`
                found = list(policy_configs(auto_paths).items())
            else:
                found = [(a.name, a.path) for a in autos]
            paths: dict[str, Path | None] = {}
            for name, path in found:
                if name:
                    paths.setdefault(name, path)
            for n in names:
                paths.setdefault(n, None)
            return load_policies(paths, self.cfg.policy_dir)

        return await asyncio.to_thread(read)

    async def stop_order(self, selected: Sequence[Domain], warn: bool = True) -> tuple[Policies, BootOrder]:
        """The policies of the guests to stop (problems warned about, defaults used: stop never refuses)
        and their groups, with driver domains from the configs' backend= and XenStore's backend tree."""
        from .bootorder import xenstore_backends
        from .xenstore.watcher import xenstore_reachable

        names = [d.name for d in selected]
        pols = await self.policies(names)
        for n in names:
            p = pols[n]
            if warn:
                for w in p.warnings:
                    self._warn(w, guest=n)
                for prob in p.problems:
                    self._warn(f"{prob}; {n} is stopped with the default policy", guest=n)
        pols = pols.with_defaults_for_problems()
        domid_names = {d.domid: d.name for d in selected}
        edges: list[tuple[str, str]] = []
        if xenstore_reachable():
            try:
                edges = await asyncio.wait_for(asyncio.to_thread(xenstore_backends, domid_names), 10.0)
            except asyncio.TimeoutError:
                edges = []
        return pols, boot_order(names, pols, edges, domid_names=domid_names)

    async def start_order(self, restores: Sequence[SaveImage], creates: Sequence[AutoConfig],
                          autos: Sequence[AutoConfig], running: Sequence[Domain],
                          pols: Policies | None = None) -> tuple[Policies, BootOrder]:
        """The policies of the guests to start and their groups (driver domains before their clients)."""
        if pols is None:
            pols = await self.policies([im.guest or im.path.name for im in restores], autos=autos)
        order = boot_order([im.guest or im.path.name for im in restores] + [a.name or a.path.name for a in creates],
                           pols, domid_names={d.domid: d.name for d in running}, running=(d.name for d in running))
        return pols, order

    def _lock_failed(self, exc: Exception) -> int:
        """Report a lock that could not be taken; the LSB exit code (4: not permitted, else 1)."""
        if isinstance(exc, PermissionError):
            self._error(f"cannot create the lock file {self.lock_path}: {exc.strerror} (are you root?)")
            return EXIT_PRIV
        if isinstance(exc, LockError):
            self._error(str(exc))
        else:
            self._error(f"lock file {self.lock_path}: {exc.strerror or exc}" if isinstance(exc, OSError)
                        else f"lock file {self.lock_path}: {exc}")
        return EXIT_FAILED

    @staticmethod
    def _lock_unusable(exc: Exception) -> bool:
        """The lock path cannot hold a lock (as opposed to: a run holds it, or we may not)."""
        return isinstance(exc, LockUnusable) or (isinstance(exc, OSError) and not isinstance(exc, PermissionError))

    def _begin(self, verb: str, stages: Sequence[str], lock: RunLock, locked: bool) -> None:
        """RunStarted (the run holds its lock now), then what the lock had to say."""
        self.bus.emit(RunStarted(verb=verb, pid=os.getpid(), toolstack=self.ts.name, parallel=self.control.parallel,
                                 config=str(self.cfg.path or ""), stages=tuple(stages),
                                 on_hangup=self.control.on_hangup))
        for note in lock.notes:
            self._warn(note)
        if locked:
            self.bus.emit(LockTaken(path=str(self.lock_path)))

    def _release(self, lock: RunLock, remove: bool) -> None:
        """Give the lock back: removed (service stopped) or marked started."""
        if not remove:
            lock.mark_started()
        lock.release(remove=remove)
        if remove:
            self.bus.emit(LockReleased(path=str(self.lock_path)))

    # -- signals ------------------------------------------------------------------------------------

    def interrupt(self, signame: str) -> None:
        """A signal arrived (SIGTERM, SIGINT, SIGHUP).

        The first: no new stage starts, running commands finish within their
        watchdog.  The second: the running commands are killed (process group,
        session, descendants).  Either way the run ends normally: report, true
        state of every guest, non-zero exit, lock released.
        """
        from .toolstack import process

        if self.interrupted_by is None:
            self.interrupted_by = signame
            self._error(f"interrupted by {signame}: no new stage starts; running commands finish within their watchdog "
                        f"(a second signal kills them)")
            self.control.abort(now=False, reason=f"interrupted by {signame}")
        else:
            self._error(f"{signame} again: killing the running commands")
            self.control.abort(now=True, reason=f"interrupted by {self.interrupted_by}")
            for argv in process.kill_all():
                self._warn(f"killed: {' '.join(argv)}")

    async def _after_interrupt(self, outcome: RunOutcome) -> None:
        """Say what is true of every guest of an interrupted run, and make the exit non-zero."""
        try:
            domains: dict[str, Domain] | None = {d.name: d for d in await self.guests()}
        except ToolstackError:
            domains = None
        images = {im.guest: im for im in savedir.scan(self.cfg.save_dir) if im.guest}
        saving = {e.guest: e for e in savedir.in_progress(self.cfg.save_dir)}
        for r in outcome.guests:
            d = domains.get(r.guest) if domains is not None else None
            im = images.get(r.guest)
            if domains is None:
                now = "unknown (the domains could not be listed)"
            elif r.guest in saving:
                now = f"being saved by xl (pid {saving[r.guest].xl_pid}), which finishes on its own; the next verb settles it"
            elif d is not None and d.suspended:
                now = f"SUSPENDED ({d.state.flags if d.state else ''}), not running; see `xendomains resume {r.guest}`"
            elif d is not None:
                now = f"{d.state.words if d.state else 'present'} (domid {d.domid})"
            elif im is not None:
                now = f"not running; image {'in the quarantine ' if im.quarantined else ''}{im.path}"
            else:
                now = "not on this host (migrated, shut down or never started)"
            self._warn(f"{r.guest} now: {now}", guest=r.guest)
        outcome.exit_code = max(outcome.exit_code, EXIT_FAILED)
        outcome.summary = f"interrupted by {self.interrupted_by}; {outcome.summary}" if outcome.summary else f"interrupted by {self.interrupted_by}"

    def _end(self, outcome: RunOutcome) -> RunOutcome:
        self.bus.emit(RunFinished(verb=outcome.verb, exit_code=outcome.exit_code, summary=outcome.summary))
        return outcome

    # -- several migration targets ------------------------------------------------------------------

    def migrated_away(self) -> dict[str, str]:
        """Guests the last stop migrated to one of several targets: guest -> target.

        With XENDOMAINS_MIGRATE_TARGETS a host is one of a fleet whose guests move
        between its members; creating such a guest from the auto directory at the
        next start would run it twice (on its new host and here), so start skips
        it.  The classic single XENDOMAINS_MIGRATE keeps its classic start.
        """
        if not self.cfg.migrate_targets:
            return {}
        from .report import load_last

        stop = load_last(self.cfg, "stop")
        if stop is None:
            return {}
        return {g.guest: g.target for g in stop.guests if g.outcome == "migrated" and g.target}

    async def check_placements(self, only: Sequence[str] | None, ask_targets: bool = True,
                               guests: Sequence[Domain] | None = None) -> None:
        """PlacementRefused when the operator's placements (`--place GUEST=TARGET`) name what is not there:
        no several targets, a target not among them, a guest not on this host or not in this stop; with
        `ask_targets`, also what the targets' answers refuse (left out, no room, kept apart).  Checked before
        the lock and any stage: a refused placement stops nothing and writes no report (the stop asks the
        targets again once it holds the lock, and refuses then too if they changed their answer)."""
        chosen = self.control.placements
        if not chosen:
            return
        setup = migrate_setup(self.cfg, self.ts)
        if setup is None:
            raise PlacementRefused(["--place needs several migration targets (XENDOMAINS_MIGRATE_TARGETS or --targets)"])
        if not self.control.stage_enabled("migrate"):
            raise PlacementRefused(["--place: the migrate stage is turned off for this run"])
        if guests is None:
            guests = await self.guests()
        known = {d.name for d in guests}
        problems = []
        for guest, target in chosen.items():
            what = f"--place {guest}={target}"
            if guest not in known:
                problems.append(f"{what}: no guest {guest} on this host")
            elif only and guest not in only:
                problems.append(f"{what}: {guest} is not among the guests of this stop ({', '.join(only)})")
            if target not in setup.hosts:
                problems.append(f"{what}: {target} is not one of the migration targets ({' '.join(setup.hosts)})")
        if problems:
            raise PlacementRefused(problems)
        if ask_targets:
            selected, _ = await self.select_for_stop(guests, set(only) if only else None)
            pols, _ = await self.stop_order(selected, warn=False)
            problems = self.placement_problems(await self.target_pool(selected, announce=False, policies=pols))
            if problems:
                raise PlacementRefused(problems)

    @staticmethod
    def placement_problems(pool: TargetPool | None) -> list[str]:
        """The operator's placements the targets' answers refuse (no room, left out, kept apart …)."""
        return [f"--place {g}={t}: {why}" for g, t, why in (pool.refused if pool is not None else [])]

    async def _own_xen(self) -> HostInfo | str:
        """This host's `xl info` (its Xen version, to compare the targets' with), or why it is not known."""
        try:
            info = await self.ts.host_info()
        except ToolstackError as exc:
            return f"cannot read this host's Xen version ({exc}): the targets' Xen versions are not checked"
        if info.xen_release is None:
            return "this host's `xl info` states no Xen version: the targets' Xen versions are not checked"
        return info

    async def target_pool(self, selected: Sequence[Domain], *, announce: bool = True,
                          policies: Policies | None = None) -> TargetPool | None:
        """Ask every migration target for its room and place the selected guests (None: one target or none).

        With `announce` (a run) the probes are observed and the notes warned about; a plan stays quiet.
        The run's runner announces each answer and placement (TargetPool.announce) once its schedule
        has set each target's cap.
        """
        setup = migrate_setup(self.cfg, self.ts)
        if setup is None or not self.control.stage_enabled("migrate"):
            return None
        observers = self.ts.observers if announce else ()
        targets, source = await asyncio.gather(
            probe_targets(setup, self.ts.name, probe_timeout(self.cfg), observers, self.ts.peer_argv), self._own_xen())
        if isinstance(source, HostInfo):  # a target on an older Xen is left out: no migration to an older hypervisor
            targets = leave_out_older(targets, source.xen_version, source.xen_release)
        if policies is None:  # xendomains_targets / xendomains_apart from each guest's config
            policies = await self.policies([d.name for d in selected])
        policies = policies.with_defaults_for_problems()
        movable = [d for d in selected if not d.zombie and policies[d.name].allows("migrate")]
        from .placement import needs_from

        pool = TargetPool(setup, targets, needs_from(movable, policies), self.cfg.target_reserve_mib,
                          self.cfg.parallel_migrate)
        pool.place_all(self.control.placements)
        if isinstance(source, str):
            pool.notes.append(source)
        if announce:
            for n in pool.notes:
                self._warn(n)
        return pool

    # -- stop -------------------------------------------------------------------------------------

    async def select_for_stop(self, guests: Sequence[Domain], only: set[str] | None = None) -> tuple[list[Domain], list[tuple[Domain, str]]]:
        """Select stage: (selected, [(skipped, why)])."""
        skipped: list[tuple[Domain, str]] = []
        names: set[str] | None = None
        if self.cfg.auto_only:
            autos = await self.auto_configs()
            names = {a.name for a in autos if a.name}
            for a in autos:
                if a.error:
                    self._warn(f"cannot read the guest name of {a.path}: {a.error}")
            if not names:
                self._warn(f"XENDOMAINS_AUTO_ONLY=true and the auto directory {self.cfg.auto_dir} has no guest configs: no guest selected")
        selected = []
        for d in guests:
            if only is not None and d.name not in only:
                continue
            if names is not None and d.name not in names:
                skipped.append((d, "not in the auto directory (XENDOMAINS_AUTO_ONLY)"))
                continue
            selected.append(d)
        return selected, skipped

    async def stop(self, only: Sequence[str] | None = None, *, take_lock: bool = True,
                   lock_wait: float = 600.0) -> RunOutcome:
        """The evacuation.  Never refuses for config problems (a host going down must evacuate).

        A full stop always removes the lock file at the end, also after errors.
        A stop of named guests only (`xendomains stop web01`, the console's
        "migrate these now") leaves a started service started.
        """
        lock = RunLock(self.lock_path)
        detach = attach_command_events(self.ts, self.bus)
        outcome = RunOutcome("stop", EXIT_OK)
        acquired = False
        keep_started = False
        started_before = False  # the lock existed (the service was started) before this stop
        lockless = ""
        try:
            try:
                # a typo stops nothing: checked before the lock and any stage (one `xl list` for both checks)
                listed = await self.guests() if only else None
                await self.check_names(only, listed)
                await self.check_placements(only, guests=listed)
            except (UnknownGuest, PlacementRefused) as exc:
                self._error(str(exc))
                outcome.exit_code, outcome.summary = EXIT_USAGE, "nothing stopped"
                return outcome
            if take_lock:
                started_before = lock.exists()
                keep_started = bool(only) and started_before
                try:
                    lock.acquire_for_stop(wait=lock_wait)
                    acquired = True
                except (LockError, OSError) as exc:
                    if not self._lock_unusable(exc):
                        outcome.exit_code = self._lock_failed(exc)
                        return outcome
                    # a host going down must still evacuate: without the lock, and said so
                    lockless = str(exc) if isinstance(exc, LockError) else f"lock file {self.lock_path}: {exc.strerror or exc}"
            self._begin("stop", [s.name for s in STOP_STAGES], lock, acquired)
            if lockless:
                self._warn(f"{lockless}; evacuating without the lock (another stop could run at the same time; "
                           "start will refuse until it is fixed)")
            if self.cfg.unreadable:
                self._error(f"{self.cfg.unreadable}: stopping with the documented defaults; exit 1 so that it is fixed")
            for p in self.cfg.problems:
                self._warn(f"{p}; using the default")
            try:
                outcome = await self._stop_body(set(only) if only else None, lock_usable=not lockless)
            except PlacementRefused as exc:  # the targets' answers refuse the operator's placements: nothing stopped
                self._error(str(exc))
                outcome.exit_code, outcome.summary = EXIT_USAGE, "nothing stopped"
                keep_started = keep_started or started_before  # a started service stays started
                return outcome
            if self.interrupted_by:
                await self._after_interrupt(outcome)
            if self.cfg.unreadable:
                outcome.exit_code = max(outcome.exit_code, EXIT_FAILED)
            return outcome
        except ToolstackError as exc:
            self._error(str(exc))
            outcome.exit_code = EXIT_FAILED
            return outcome
        except BaseException:  # cancelled (SIGINT), or a bug: the report and the exit code say the same
            outcome.exit_code = max(outcome.exit_code, EXIT_FAILED)
            outcome.summary = INTERRUPTED_SUMMARY
            raise
        finally:
            detach()
            if acquired:  # never touch a lock this run did not take
                self._release(lock, remove=not keep_started)
            self._end(outcome)

    async def _stop_body(self, only: set[str] | None, lock_usable: bool = True) -> RunOutcome:
        cfg = self.cfg
        deadline = Deadline(cfg.stop_deadline)
        outcome = RunOutcome("stop", EXIT_OK)
        self.bound_queries(cfg.stop_maxwait)
        self.bus.emit(StageStarted(stage="select"))
        wait = float(cfg.stop_maxwait or 60)
        rem = deadline.remaining()
        await self.settle_saves(wait=min(wait, rem / 2) if rem is not None else wait)
        guests = await self.guests()
        selected, skipped = await self.select_for_stop(guests, only)
        for d, why in skipped:
            self.bus.emit(GuestSkipped(guest=d.name, domid=d.domid, reason=why))
        going = sum(1 for d in selected if d.zombie)  # dying or nameless: reported, never given a command
        self.bus.emit(StageFinished(stage="select", outcome="done",
                                    detail=f"{len(selected) - going} selected, {len(skipped)} skipped"
                                           + (f", {going} dying (left alone)" if going else "")))
        no_room = frozenset()
        if cfg.save_dir is not None and self.control.stage_enabled("save"):
            from .plan import guests_without_room  # local: plan imports service

            no_room = guests_without_room(cfg, selected, self.control)
            for n in sorted(no_room):
                self._warn(f"no room in {cfg.save_dir} to save {n}: it will be shut down instead", guest=n)
        pols, order = await self.stop_order(selected)
        if only is not None:  # a named driver domain going down under guests that keep running
            chosen = {d.name for d in selected}
            others = [d for d in guests if d.name not in chosen and not d.zombie]
            if others and selected:
                _, whole = await self.stop_order(list(selected) + others, warn=False)
                for client, backends in whole.depends.items():
                    for b in backends:
                        if b in chosen and client not in chosen:
                            self._warn(f"{b} serves devices of {client}, which keeps running: they go away with {b}",
                                       guest=b)
        for n in order.notes:
            self._info(n)
        for err in order.cycle_errors():
            self._warn(f"{err}; those guests are stopped together")
        pool = await self.target_pool(selected, policies=pols)
        refused = self.placement_problems(pool)
        if refused:
            pool.announce(self.bus.emit)  # what the targets answered (no schedule made: no caps)
            raise PlacementRefused(refused)
        self.control.pool = pool
        runner = StopRunner(cfg, self.ts, self.bus, self.control, estimate=self.estimate, deadline=deadline, no_room=no_room,
                            policies=pols, order=order, pool=pool)
        results = await runner.run(selected, runner.make_schedule(selected))
        outcome.guests = results
        # shutdown-all: only when guests other than zombies remain
        if only is not None:  # a stop of named guests never sweeps the rest of the host
            self.bus.emit(StageFinished(stage="shutdown_all", outcome="skipped", detail="only named guests were stopped"))
        elif cfg.shutdown_all and self.control.stage_enabled("shutdown_all") and not self.control.aborted:
            remaining = await self.guests()
            off = [d for d in remaining if d.powered_off]
            if off:  # powered off, nobody destroyed them: `shutdown --all --wait` would wait on them for ever
                maxwait = float(cfg.stop_maxwait) or None
                await asyncio.gather(*(runner.destroy_remains(d, maxwait) for d in off))
                remaining = await self.guests()
            alive = [d for d in remaining if d.live]
            if alive:
                opts, notes = self.ts.translate_shutdown_options(cfg.shutdown_all, "XENDOMAINS_SHUTDOWN_ALL")
                for n in notes:
                    self._info(n)
                maxwait = float(cfg.stop_maxwait) or None
                rem = deadline.remaining()
                if rem is not None:
                    maxwait = max(1.0, min(maxwait or rem, rem))
                self.bus.emit(StageStarted(stage="shutdown_all", timeout=maxwait or 0.0, detail=" ".join(opts)))
                t0 = time.monotonic()
                token = current_step.set(("", "shutdown_all"))
                try:
                    await self.ts.shutdown_all(opts, timeout=maxwait)
                    self.bus.emit(StageFinished(stage="shutdown_all", outcome="done", elapsed=time.monotonic() - t0,
                                                detail=", ".join(d.name for d in alive)))
                except ToolstackError as exc:
                    outcome_word = "timeout" if isinstance(exc, CommandTimedOut) else "failed"
                    self.bus.emit(StageFinished(stage="shutdown_all", outcome=outcome_word, elapsed=time.monotonic() - t0, detail=str(exc)))
                    try:
                        left = [d.name for d in await self.guests() if d.live]
                    except ToolstackError:
                        left = [d.name for d in alive]
                    self._error(f"shutdown of all remaining guests {'timed out' if outcome_word == 'timeout' else 'failed'}: {exc}; "
                                f"still running: {', '.join(left) or 'none'}")
                    outcome.exit_code = EXIT_FAILED
                finally:
                    current_step.reset(token)
            else:
                why = ("only zombies remain" if all(d.zombie for d in remaining) else "no running guest remains") if remaining else "no guest remains"
                self.bus.emit(StageFinished(stage="shutdown_all", outcome="skipped", detail=why))
        failed = [r for r in results if not r.ok]
        if failed:
            outcome.exit_code = EXIT_FAILED
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        outcome.summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no guest selected"
        self.bus.emit(StageStarted(stage="cleanup"))
        self.bus.emit(StageFinished(stage="cleanup", outcome="done",
                                    detail=f"{'keep' if only else 'remove'} {self.lock_path}" if lock_usable
                                    else f"{self.lock_path} left alone (it cannot hold a lock)"))
        return outcome

    # -- resume: the way out for a guest a dead save left suspended ---------------------------------

    async def resume(self, name: str, recreate: bool = False) -> RunOutcome:
        """Bring back a guest left suspended (`---ss-`) by a save that did not finish.

        Default (keeps the guest's memory): save it again — real xl 4.17 saves a
        suspended domain after libxl's 60 s wait for a suspend acknowledgement it
        can no longer get — then restore that image.  `recreate=True`, by the
        admin's explicit choice only: `destroy` it and `create` it afresh from
        its auto config (its memory state is lost).  The quarantined partial
        image is never touched.
        """
        lock = RunLock(self.lock_path)
        outcome = RunOutcome("resume", EXIT_OK)
        existed = lock.exists()
        try:
            lock.acquire_for_stop(wait=60)
        except (LockError, OSError) as exc:
            outcome.exit_code = self._lock_failed(exc)
            return outcome
        detach = attach_command_events(self.ts, self.bus)
        self._begin("resume", ("resume",), lock, True)
        res = GuestResult(name, -1)
        t0 = time.monotonic()
        try:
            d = next((g for g in await self.guests() if g.name == name), None)
            if d is None or not d.suspended:
                what = "no such guest" if d is None else f"{d.state.words if d.state else 'present'}, not suspended"
                raise XendomainsError(f"{name}: {what}; resume is only for a guest a dead save left suspended")
            res.domid = d.domid
            if recreate:
                auto = next((a for a in await self.auto_configs() if a.name == name), None)
                if auto is None:
                    raise XendomainsError(f"{name}: no config in the auto directory {self.cfg.auto_dir} to create it from")
                await self._step("destroy", name, d.domid, self.ts.destroy(d.domid, timeout=60))
                await self._step("create", name, d.domid,
                                 self.ts.create(auto.path, timeout=float(self.cfg.start_maxwait) or None))
                res.outcome, res.detail = "created", f"destroyed (memory state lost) and created from {auto.path}"
            else:
                if self.cfg.save_dir is None:
                    raise XendomainsError(f"{name}: XENDOMAINS_SAVE is empty: nowhere to save it again (use --recreate)")
                wait = max(120.0, float(self.cfg.stop_maxwait or 0))  # libxl waits 60 s for the suspend ack first
                runner = StopRunner(self.cfg, self.ts, self.bus, self.control)
                image = Path(await self._step("save", name, d.domid, runner._save(d, wait)))
                await self._step("restore", name, d.domid,
                                 self.ts.restore(image, timeout=max(120.0, float(self.cfg.start_maxwait or 0))))
                os.unlink(image)
                res.outcome, res.detail = "restored", "saved again and restored: running on from where it was"
        except (XendomainsError, OSError) as exc:
            res.outcome, res.detail = "failed", str(exc)
            self._error(f"resume of {name} failed: {exc}", guest=name)
            outcome.exit_code = EXIT_FAILED
        finally:
            res.elapsed = time.monotonic() - t0
            self.bus.emit(GuestFinished(guest=name, domid=res.domid, outcome=res.outcome, elapsed=res.elapsed, detail=res.detail))
            outcome.guests = [res]
            outcome.summary = f"{name}: {res.outcome}"
            detach()
            self._release(lock, remove=not existed)
            self._end(outcome)
        return outcome

    async def _step(self, stage: str, guest: str, domid: int, work):
        self.bus.emit(StageStarted(stage=stage, guest=guest, domid=domid))
        t0 = time.monotonic()
        token = current_step.set((guest, stage))
        try:
            result = await work
        except BaseException as exc:
            self.bus.emit(StageFinished(stage=stage, guest=guest, domid=domid, outcome="failed", elapsed=time.monotonic() - t0, detail=str(exc)))
            raise
        finally:
            current_step.reset(token)
        self.bus.emit(StageFinished(stage=stage, guest=guest, domid=domid, outcome="done", elapsed=time.monotonic() - t0))
        return result

    # -- start ---------------------------------------------------------------------------------------

    async def start(self) -> RunOutcome:
        lock = RunLock(self.lock_path)
        outcome = RunOutcome("start", EXIT_OK)
        try:
            state = lock.acquire_for_start()
        except (LockError, OSError) as exc:
            return RunOutcome("start", self._lock_failed(exc))
        if state == "running":
            self.bus.emit(LockHeld(path=str(self.lock_path)))
            self._info("xendomains already running (lockfile exists)")
            return RunOutcome("start", EXIT_OK, summary="already running")
        detach = attach_command_events(self.ts, self.bus)
        remove_lock = True
        try:
            self._begin("start", [s.name for s in START_STAGES], lock, True)
            outcome = await self._start_body()
            if self.interrupted_by:
                await self._after_interrupt(outcome)
            guests = await self.guests()
            remove_lock = not any(d.live for d in guests)
            if remove_lock:
                self._info("no guest is running: lock file removed")
            elif self.interrupted_by:  # not "started": the next start finishes the job instead of doing nothing
                remove_lock = True
                self._warn(f"start interrupted by {self.interrupted_by}: lock file removed so that the next start "
                           "restores and creates what this one did not")
            return outcome
        except ToolstackError as exc:
            self._error(str(exc))
            outcome.exit_code = EXIT_FAILED
            return outcome
        except BaseException:  # cancelled (SIGINT), or a bug: the report and the exit code say the same
            outcome.exit_code = max(outcome.exit_code, EXIT_FAILED)
            outcome.summary = INTERRUPTED_SUMMARY
            raise
        finally:
            detach()
            self._release(lock, remove=remove_lock)
            self._end(outcome)

    async def _start_body(self) -> RunOutcome:
        cfg = self.cfg
        outcome = RunOutcome("start", EXIT_OK)
        results: list[GuestResult] = []
        self.bound_queries(cfg.start_maxwait)
        await self.settle_saves(wait=float(cfg.start_maxwait or 60))
        # names of every image in the save dir at the beginning (restored or not) and the quarantine
        images = savedir.scan(cfg.save_dir)
        blocked_names = {im.guest for im in images if im.guest and im.valid}
        quarantined = [im for im in images if im.quarantined]
        for im in quarantined:
            self._warn(f"{im.guest}: image {im.path} is quarantined (a restore of it failed, or the save that wrote it did not "
                       "finish); not autostarted until an administrator restores or removes it", guest=im.guest or "")
        # what to restore
        do_restore = cfg.restore and cfg.save_dir is not None and self.control.stage_enabled("restore")
        restores: list[SaveImage] = []
        if do_restore:
            to_restore = [im for im in images if not im.quarantined]
            for im in to_restore:
                if not im.valid:
                    self._warn(f"{im.path} has no save-image header; not restored, left alone")
                elif im.kind.value != self.ts.name:
                    self._warn(f"{im.path} is an {im.kind.value} image but the toolstack is {self.ts.name}; left alone")
            restores = [im for im in to_restore if im.valid and im.kind.value == self.ts.name]
        listed: list[Domain] | None = None
        if restores:  # an image an `xl restore` of a killed run is still reading, or has brought back already
            await self._wait_for_readers([im.path for im in restores], float(cfg.start_maxwait or 60))
            listed = await self.guests()
            restores, pre = self._not_restored_yet(restores, _by_name(listed))
            results += pre
        # what to create
        do_create = cfg.auto_dir is not None and self.control.stage_enabled("create")
        autos = await self.auto_configs() if do_create else []
        running = (listed if listed is not None else await self.guests()) if (autos or restores) else []
        creates, results_c = self._autostart_todo(autos, blocked_names, _by_name(running),
                                                  {im.guest for im in restores if im.guest}) if autos else ([], [])
        results += results_c
        # each guest's policy, read once; a guest whose policy has problems is refused (SEMANTICS: start refuses that guest only)
        pols = await self.policies([im.guest or im.path.name for im in restores], autos=autos)
        restores = [im for im in restores if self._policy_ok(pols[im.guest or im.path.name], results)]
        creates = [a for a in creates if self._policy_ok(pols[a.name or a.path.name], results)]
        pols, order = await self.start_order(restores, creates, autos, running, pols)
        for n in order.notes:
            self._warn(n)
        if order.trivial:
            if do_restore:
                self.bus.emit(StageStarted(stage="restore", detail=str(cfg.save_dir)))
                for im in restores:
                    self.bus.emit(GuestPlanned(guest=im.guest or im.path.name, stages=("restore",), reason=str(im.path),
                                               memory_mib=savedir.image_memory_mib(im)))
                disk = self._restore_limiter(restores)
                results += await asyncio.gather(*(self._restore_one(im, disk) for im in restores))
                self.bus.emit(StageFinished(stage="restore", outcome="done", detail=f"{len(restores)} image(s)"))
            if autos:
                results += await self._create_all(creates)
        else:
            results += await self._start_groups(order, pols, restores, creates)
        outcome.guests = results
        if any(not r.ok for r in results):
            outcome.exit_code = EXIT_FAILED
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        outcome.summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to start"
        return outcome

    def _policy_ok(self, pol: GuestPolicy, results: list[GuestResult]) -> bool:
        """False (and the guest reported failed) when its policy has problems: start refuses it."""
        for w in pol.warnings:
            self._warn(w, guest=pol.guest)
        if pol.ok:
            return True
        for p in pol.problems:
            self._error(f"{p}", guest=pol.guest)
        detail = f"policy: {pol.problems[0]}" + (f" (and {len(pol.problems) - 1} more)" if len(pol.problems) > 1 else "")
        self._error(f"{pol.guest} not started: its xendomains_* policy has errors; fix them and run start again", guest=pol.guest)
        results.append(GuestResult(pol.guest, -1, "failed", detail))
        self.bus.emit(GuestFinished(guest=pol.guest, outcome="failed", detail=detail))
        return False

    async def _start_groups(self, order: BootOrder, pols: Policies, restores: list[SaveImage],
                            creates: list[AutoConfig]) -> list[GuestResult]:
        """Start group by group; each group begins when the previous one's gates are open (or have timed out)."""
        results: list[GuestResult] = []
        for err in order.cycle_errors():
            self._error(err)
        for n in sorted(order.in_cycle):
            detail = "in a dependency cycle: not started (see `xendomains plan start`)"
            results.append(GuestResult(n, -1, "failed", detail))
            self.bus.emit(GuestFinished(guest=n, outcome="failed", detail=detail))
        groups = [g for g in order.groups if any(n not in order.in_cycle for n in g.guests)]
        for im in restores:
            self.bus.emit(GuestPlanned(guest=im.guest or im.path.name, stages=("restore",), reason=str(im.path),
                                       memory_mib=savedir.image_memory_mib(im)))
        for a in creates:
            self.bus.emit(GuestPlanned(guest=a.name or a.path.name, stages=("create",), reason=str(a.path)))
        maxwait = float(self.cfg.start_maxwait) or None
        held: str = ""  # why later groups are not started
        for gi, group in enumerate(groups):
            members = [n for n in group.guests if n not in order.in_cycle]
            if held:
                for n in members:
                    results.append(GuestResult(n, -1, "skipped", held))
                    self.bus.emit(GuestSkipped(guest=n, reason=held))
                    self.bus.emit(GuestFinished(guest=n, outcome="skipped", detail=held))
                continue
            self.bus.emit(GroupStarted(verb="start", index=gi, of=len(groups), label=group.label, guests=tuple(members)))
            mine_r = [im for im in restores if (im.guest or im.path.name) in members]
            mine_c = [a for a in creates if (a.name or a.path.name) in members]
            got: list[GuestResult] = []
            if mine_r:
                self.bus.emit(StageStarted(stage="restore", detail=str(self.cfg.save_dir)))
                disk = self._restore_limiter(mine_r)
                got += await asyncio.gather(*(self._restore_one(im, disk) for im in mine_r))
                self.bus.emit(StageFinished(stage="restore", outcome="done", detail=f"{len(mine_r)} image(s)"))
            if mine_c:
                got += await self._create_all(mine_c)
            results += got
            if gi == len(groups) - 1 or self.control.aborted:
                continue
            up = [r for r in got if r.ok and group.gate_of(r.guest).kind != "none"]
            if not up:
                continue
            domids = {d.name: d.domid for d in await self.guests()}
            gated = await asyncio.gather(*(self._gate(r.guest, group.gate_of(r.guest), pols[r.guest],
                                                      domids.get(r.guest), maxwait) for r in up))
            stuck = [n for n, opened in zip((r.guest for r in up), gated) if not opened and pols[n].ready_fail == "wait"]
            if stuck:
                held = (f"not started: {', '.join(stuck)} (group {gi + 1}) never became ready and "
                        f"xendomains_ready_fail = \"wait\"")
                self._error(held)
        return results

    async def _gate(self, name: str, gate: Gate, pol: GuestPolicy, domid: int | None, maxwait: float | None) -> bool:
        """Wait for one guest's gate; True when it opened."""
        detail = ""
        if gate.kind == "ready":
            detail = f"/local/domain/{domid}/{pol.ready_key}" if domid is not None else "guest not found in the domain list"
            if pol.ready_cmd:
                detail += " or " + " ".join(pol.ready_cmd)
        self.bus.emit(GateWaiting(guest=name, gate=str(gate), domid=-1 if domid is None else domid,
                                  timeout=maxwait or 0.0, detail=detail))
        res = await wait_gate(gate, pol, name, domid, maxwait)
        self.bus.emit(GateFinished(guest=name, outcome=res.outcome, elapsed=res.elapsed, detail=res.how))
        if res.outcome != "open":
            then = "later groups are held" if pol.ready_fail == "wait" else "the next group starts anyway"
            self._warn(f"{name} is up, not ready: {res.how}; {then}", guest=name)
        return res.outcome == "open"

    def _restore_limiter(self, todo: Sequence[SaveImage]) -> "Limiter | None":
        """With XENDOMAINS_PARALLEL=auto, restores share the disk: as many at once as still end sooner."""
        model_of = getattr(self.estimate, "model", None)
        if self.control.parallel or model_of is None or len(todo) < 2:
            return None
        from .pipeline.control import Limiter
        from .pipeline.schedule import restore_schedule

        sched = restore_schedule(model_of(reading=True), [(im.guest or im.path.name, im.size / 2**20) for im in todo])
        return Limiter(sched.caps.get("disk"))

    async def _restore_one(self, im: SaveImage, disk: "Limiter | None" = None) -> GuestResult:
        name = im.guest or im.path.name
        res = GuestResult(name, -1)
        async with self.control.limiter, (disk or contextlib.nullcontext()):
            if self.control.aborted or self.control.guest_skipped(name):
                res.outcome, res.detail = "skipped", "skipped by operator"
                self.bus.emit(GuestSkipped(guest=name, reason=res.detail))
                return res
            self.bus.emit(StageStarted(stage="restore", guest=name, detail=str(im.path)))
            t0 = time.monotonic()
            token = current_step.set((name, "restore"))
            try:
                try:
                    await self.ts.restore(im.path, timeout=float(self.cfg.start_maxwait) or None)
                except CommandFailed as exc:
                    # killed (watchdog, a signal): the image is quarantined only if the guest did not come up
                    killed = isinstance(exc, CommandTimedOut) or exc.returncode is None or exc.returncode < 0
                    if killed and await self._came_up(name):
                        self._warn(f"xl restore of {name} was killed ({exc.title}) but the guest is running: "
                                   "taken as restored", guest=name)
                    else:
                        raise exc
            except ToolstackError as exc:
                res.elapsed = time.monotonic() - t0
                signalled = (isinstance(exc, CommandFailed) and not isinstance(exc, CommandTimedOut)
                             and (exc.returncode is None or exc.returncode < 0))
                if signalled and self.interrupted_by:
                    # xl was killed with this interrupted run (not a restore that failed): nothing says the
                    # image is bad, so it stays for the next start
                    where = f"image left at {im.path} for the next start (xl was killed, the image not tried to the end)"
                else:
                    try:
                        dest = savedir.quarantine(im.path, self.cfg.save_dir)  # type: ignore[arg-type]
                        where = f"image moved to {dest}"
                    except OSError as qexc:
                        where = f"image left at {im.path} (cannot quarantine: {qexc.strerror})"
                res.outcome, res.detail = "failed", f"restore failed: {exc}; {where}"
                self.bus.emit(StageFinished(stage="restore", guest=name, outcome="failed", elapsed=res.elapsed, detail=str(exc)))
                self._error(f"An error occurred while restoring domain {name}: {exc}; {where}", guest=name)
            else:
                res.elapsed = time.monotonic() - t0
                try:
                    os.unlink(im.path)
                except OSError as exc:
                    self._error(f"restored {name} but cannot remove {im.path}: {exc.strerror}", guest=name)
                res.outcome = "restored"
                self.bus.emit(StageFinished(stage="restore", guest=name, outcome="done", elapsed=res.elapsed, detail=str(im.path)))
            finally:
                current_step.reset(token)
        self.bus.emit(GuestFinished(guest=name, outcome=res.outcome, elapsed=res.elapsed, detail=res.detail))
        return res

    async def _wait_for_readers(self, paths: list[Path], wait: float) -> None:
        """Wait (bounded) while any process names one of `paths` on its command line (an orphaned xl restore)."""
        until = time.monotonic() + wait
        told = False
        while time.monotonic() < until and not self.control.aborted:
            busy = [p for p in paths if savedir._writer_of(p) is not None]
            if not busy:
                return
            if not told:
                told = True
                self._info("waiting for xl restore of " + ", ".join(str(p) for p in busy) + " (started by a run that ended)")
            await asyncio.sleep(0.1)

    def _not_restored_yet(self, restores: list[SaveImage], present: dict[str, Domain]) -> tuple[list[SaveImage], list[GuestResult]]:
        """Images whose guest exists already are never restored over it.

        The same UUID and live: an `xl restore` that outlived its run brought it
        back — the image is done with, removed as after any restore.  Otherwise
        the image is left in place and said so.
        """
        todo: list[SaveImage] = []
        results: list[GuestResult] = []
        for im in restores:
            name = im.guest or im.path.name
            d = present.get(name)
            if d is None:
                todo.append(im)
                continue
            if d.live and d.uuid and d.uuid == savedir.image_uuid(im.path):
                try:
                    os.unlink(im.path)
                except OSError as exc:
                    self._error(f"{name} runs but cannot remove its image {im.path}: {exc.strerror}", guest=name)
                res = GuestResult(name, d.domid, "restored", f"restored by an xl restore that outlived its run (domid {d.domid})")
                self._warn(f"{name}: {res.detail}; image {im.path} removed", guest=name)
            else:
                why = (f"domain {d.domid} named {name} exists ({d.state.words if d.state else 'present'}): "
                       f"image {im.path} left in place, not restored over it")
                res = GuestResult(name, d.domid, "suspended" if d.suspended else "failed", why)
                self._error(f"{name}: {why}", guest=name)
            self.bus.emit(GuestFinished(guest=name, domid=d.domid, outcome=res.outcome, detail=res.detail))
            results.append(res)
        return todo, results

    async def _came_up(self, name: str) -> bool:
        try:
            return any(d.name == name and d.live and not d.paused for d in await self.guests())
        except ToolstackError:
            return False

    def _autostart_todo(self, autos: list[AutoConfig], blocked: set[str], present: dict[str, Domain],
                        restoring: set[str] = frozenset()) -> tuple[list[AutoConfig], list[GuestResult]]:  # type: ignore[assignment]
        """The auto configs to create (each guest once), and the results of unreadable or unstartable ones.

        `restoring`: guests this run restores from their images (passed over without an event).

        `present`: the domains by name.  Only a live one is "already running"; a
        suspended, shut-down or dying one is said so (and never created over).
        """
        running_names = {n for n, d in present.items() if d.live}
        away = self.migrated_away()
        todo: list[AutoConfig] = []
        results: list[GuestResult] = []
        seen: set[str] = set()
        for a in autos:
            if a.name is None:
                self._error(f"cannot read the guest name of {a.path}: {a.error}")
                results.append(GuestResult(a.path.name, -1, "failed", f"unreadable config: {a.error}"))
                self.bus.emit(GuestFinished(guest=a.path.name, outcome="failed", detail=f"unreadable config: {a.error}"))
                continue
            if a.name in running_names:
                d = present[a.name]
                self.bus.emit(GuestSkipped(guest=a.name, reason="already running" if d.running else f"exists, {d.state.words if d.state else 'paused'} (not running)"))
            elif a.name in present:  # suspended, shut down or dying: never "already running"
                d = present[a.name]
                words = d.state.words if d.state else "not running"
                if d.suspended:
                    why = (f"SUSPENDED ({d.state.flags if d.state else ''}), not running: a save did not finish; "
                           f"not created over it; see `xendomains resume {a.name}`")
                else:
                    why = f"{words} ({d.state.flags if d.state else ''}), not running: cannot be created while domain {d.domid} exists"
                self._error(f"{a.name}: {why}", guest=a.name)
                outcome_word = "suspended" if d.suspended else "failed"
                results.append(GuestResult(a.name, d.domid, outcome_word, why))
                self.bus.emit(GuestFinished(guest=a.name, domid=d.domid, outcome=outcome_word, detail=why))
            elif a.name in restoring:
                continue  # this run restores it from its image: its outcome is "restored", never a second "skipped"
            elif a.name in blocked:
                self.bus.emit(GuestSkipped(guest=a.name, reason="has a saved image that is not restored (waiting or quarantined)"))
            elif a.name in away:
                self.bus.emit(GuestSkipped(guest=a.name, reason=f"migrated to {away[a.name]} by the last stop: it runs there"))
            elif a.name in seen:
                self._warn(f"{a.path}: guest {a.name} appears twice in the auto directory; created once")
                self.bus.emit(GuestSkipped(guest=a.name, reason=f"duplicate config {a.path}"))
            else:
                seen.add(a.name)
                todo.append(a)
        return todo, results

    async def _create_all(self, todo: list[AutoConfig]) -> list[GuestResult]:
        """The create stage for `todo` (its StageStarted/GuestPlanned/StageFinished), spaced by CREATE_USLEEP."""
        self.bus.emit(StageStarted(stage="create", detail=str(self.cfg.auto_dir)))
        for a in todo:
            self.bus.emit(GuestPlanned(guest=a.name or a.path.name, stages=("create",), reason=str(a.path)))
        spacer = _Spacer(self.cfg.create_usleep_us / 1e6, sequential=self.control.parallel == 1)
        results = list(await asyncio.gather(*(self._create_one(a, spacer, i == len(todo) - 1) for i, a in enumerate(todo))))
        self.bus.emit(StageFinished(stage="create", outcome="done", detail=f"{len(todo)} created or tried"))
        return results

    async def _create_one(self, a: AutoConfig, spacer: "_Spacer", last: bool) -> GuestResult:
        name = a.name or a.path.name
        res = GuestResult(name, -1)
        async with self.control.limiter:
            if self.control.aborted or self.control.guest_skipped(name):
                res.outcome, res.detail = "skipped", "skipped by operator"
                self.bus.emit(GuestSkipped(guest=name, reason=res.detail))
                return res
            await spacer.before()
            self.bus.emit(StageStarted(stage="create", guest=name, detail=str(a.path)))
            t0 = time.monotonic()
            token = current_step.set((name, "create"))
            try:
                await self.ts.create(a.path, timeout=float(self.cfg.start_maxwait) or None)
            except ToolstackError as exc:
                res.outcome, res.detail = "failed", str(exc)
                self.bus.emit(StageFinished(stage="create", guest=name, outcome="failed", elapsed=time.monotonic() - t0, detail=str(exc)))
                self._error(f"An error occurred while creating domain {name} from {a.path}: {exc}", guest=name)
            else:
                res.outcome = "created"
                self.bus.emit(StageFinished(stage="create", guest=name, outcome="done", elapsed=time.monotonic() - t0, detail=str(a.path)))
                if not last:
                    await spacer.after()
            finally:
                current_step.reset(token)
                res.elapsed = time.monotonic() - t0
        self.bus.emit(GuestFinished(guest=name, outcome=res.outcome, elapsed=res.elapsed, detail=res.detail))
        return res

    # -- status ------------------------------------------------------------------------------------------

    async def status(self) -> StatusReport:
        lock_present = os.path.lexists(self.lock_path)
        self.bound_queries(self.cfg.stop_maxwait)
        # settle what a killed run left — unless a run holds the lock (its saves are its own business)
        settled = await self.settle_saves(wait=0.0, act=not RunLock(self.lock_path).held_by_other())
        guests, autos = await asyncio.gather(self.guests(), self.auto_configs())
        running = tuple(d for d in guests if d.live)
        suspended = tuple(d for d in guests if d.suspended)
        not_running = tuple(d for d in guests if not d.live and not d.suspended)
        names = {d.name for d in running}
        missing = tuple(a.name or str(a.path) for a in autos if a.name not in names)
        images = savedir.scan(self.cfg.save_dir)
        saved = tuple(i for i in images if not i.quarantined)
        quarantined = tuple(i for i in images if i.quarantined)
        saving = tuple(savedir.in_progress(self.cfg.save_dir))
        if not lock_present or not running:
            code = EXIT_NOT_RUNNING
        elif missing or saved or quarantined or suspended:
            code = EXIT_FAILED
        else:
            code = EXIT_OK
        return StatusReport(lock_present, running, tuple(autos), missing, saved, quarantined, code,
                            suspended, not_running, saving, tuple(s for s in settled if s.action != "in-progress"))


def _by_name(domains: Sequence[Domain]) -> dict[str, Domain]:
    """The domains that hold their name, by name.  A nameless one (`xl list` showed "(null)": XenStore lost its
    name while libxl tears it down) is left out whatever `xl list -l` still calls it: libxl finds names in
    XenStore, so a create or restore of that name goes ahead, and nothing is "already running"."""
    return {d.name: d for d in domains if not d.nameless}


class _Spacer:
    """XENDOMAINS_CREATE_USLEEP: the minimum spacing between two creates.

    Sequentially (PARALLEL=1) this is the classic pause after each create; in
    parallel it spaces the starts of creates by the same interval.
    """

    def __init__(self, seconds: float, sequential: bool):
        self.seconds = seconds
        self.sequential = sequential
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def before(self) -> None:
        if self.sequential or self.seconds <= 0:
            return
        async with self._lock:
            delay = self._next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = time.monotonic() + self.seconds

    async def after(self) -> None:
        if self.sequential and self.seconds > 0:
            await asyncio.sleep(self.seconds)
