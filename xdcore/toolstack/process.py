"""Spawning toolstack commands: own session, output to files, a watchdog that kills the whole group.

`run()` is the single place where xdcore starts an external command.  Three
rules make `xl` finish what it started whatever happens to us:

- **Its own session** (`start_new_session`): a signal to our process group
  (Ctrl-C, `kill -TERM -PGID`) never reaches `xl`; a SIGKILL of xendomains
  leaves `xl save` to complete (image written, domain destroyed) or fail
  (domain resumed) as `xl_saverestore.c` does when it lives to the end.
- **Output to files, never pipes.**  stdout and stderr go to anonymous
  in-memory files (memfd; an unlinked temporary file where memfd is
  missing) that are read back when the command ends.  Real `xl save` writes
  progress lines to stderr all along and dies of SIGPIPE at the first write
  after its reader is gone — with the domain left *suspended*.  A file has
  no reader to lose, and nobody ever waits on a pipe an orphan holds.
- **The watchdog kills everything the command started**: its process group,
  every process of its session (found in /proc) and every descendant found
  with psutil before the kill (a double-forked helper that left the session).
  A command whose awaiting task is cancelled is killed the same way.

`kill_all()` kills every command still running (a second SIGTERM to a run).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psutil

from ..errors import CommandCancelled, CommandFailed, CommandTimedOut, ToolstackMissing
from .port import CommandObserver

#: the commands running now: pid (= its process group and session id) -> argv
_live: dict[int, tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def which(cmd: str) -> str | None:
    return shutil.which(cmd)


def running_commands() -> dict[int, tuple[str, ...]]:
    """pid -> argv of the commands this process has running now."""
    return dict(_live)


# -- output files --------------------------------------------------------------------


def _scratch_fd(tag: str) -> int:
    """An anonymous file for one stream of one command (never on a filesystem that can fill)."""
    try:
        return os.memfd_create(f"xendomains-{tag}", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        pass
    for d in (None, "/dev/shm", "/run", "/var/tmp"):
        try:
            fh = tempfile.TemporaryFile(dir=d)
        except OSError:
            continue
        fd = os.dup(fh.fileno())
        fh.close()
        os.set_inheritable(fd, False)
        return fd
    raise ToolstackMissing("cannot create a scratch file for a command's output (memfd and every temp dir failed)")


def _read_fd(fd: int, limit: int = 64 * 1024 * 1024) -> str:
    chunks: list[bytes] = []
    pos = 0
    while pos < limit:
        b = os.pread(fd, 1 << 20, pos)
        if not b:
            break
        chunks.append(b)
        pos += len(b)
    return b"".join(chunks).decode(errors="replace")


# -- killing -------------------------------------------------------------------------


def _session_members(sid: int) -> list[int]:
    """Pids whose session id is `sid` (from /proc: psutil has no session id)."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            if int(fields[3]) == sid:  # state ppid pgrp session …
                out.append(int(n))
        except (IndexError, ValueError):
            continue
    return out


def kill_tree(pid: int, grace: float = 1.0) -> None:
    """SIGKILL a command's process group, its whole session and every descendant; a vanished one is fine.

    The root is our own child: asyncio reaps it (waiting on it here would steal
    its exit status from asyncio's child watcher).  Others are waited for
    briefly so that nothing of the tree outlives the watchdog.
    """
    victims: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(pid)
        for p in root.children(recursive=True):  # collected before the kill: double-forked ones too
            victims[p.pid] = p
    except psutil.NoSuchProcess:
        root = None
    for member in _session_members(pid):
        if member not in victims and member != pid:
            try:
                victims[member] = psutil.Process(member)
            except psutil.NoSuchProcess:
                pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if root is not None:
        try:
            root.kill()
        except psutil.NoSuchProcess:
            pass
    for p in victims.values():
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    if victims:
        psutil.wait_procs(list(victims.values()), timeout=grace)


def kill_all() -> list[tuple[str, ...]]:
    """Kill every command this process has running (process group, session, descendants); their argv."""
    killed = []
    for pid, argv in list(_live.items()):
        kill_tree(pid)
        killed.append(argv)
    return killed


# -- running -------------------------------------------------------------------------


async def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    check: bool = True,
    observers: Iterable[CommandObserver] = (),
    env: dict[str, str] | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> Completed:
    """Run argv; raise CommandFailed / CommandTimedOut / CommandCancelled / ToolstackMissing.

    `on_spawn(pid)` is called once the command runs (the save journal records
    xl's pid with it).  Its output is read back from its files when it ends.
    """
    argv = tuple(argv)
    observers = tuple(observers)
    started = time.monotonic()
    out_fd = _scratch_fd("out")
    err_fd = _scratch_fd("err")
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out_fd,
                stderr=err_fd,
                start_new_session=True,  # its own session: our signals and our death never take it along
                env=env,
            )
        except FileNotFoundError as exc:
            raise ToolstackMissing(f"{argv[0]}: command not found on PATH") from exc
        except PermissionError as exc:
            raise ToolstackMissing(f"{argv[0]}: not executable: {exc}") from exc
        _live[proc.pid] = argv
        try:
            for obs in observers:
                obs("start", argv, proc.pid, float(timeout or 0), "")
            if on_spawn is not None:
                on_spawn(proc.pid)
            waiter = asyncio.ensure_future(proc.wait())
            try:
                if timeout and timeout > 0:
                    await asyncio.wait_for(asyncio.shield(waiter), timeout)
                else:
                    await asyncio.shield(waiter)
            except asyncio.TimeoutError:
                kill_tree(proc.pid)
                await waiter  # the root is dead: no pipe, nothing else to wait for
                stderr = _read_fd(err_fd)
                for obs in observers:
                    obs("end", argv, None, time.monotonic() - started, stderr)
                raise CommandTimedOut(argv, float(timeout or 0), stderr) from None
            except asyncio.CancelledError:
                kill_tree(proc.pid)
                try:
                    await asyncio.wait_for(waiter, 5)
                except BaseException:
                    pass
                for obs in observers:
                    obs("end", argv, None, time.monotonic() - started, _read_fd(err_fd))
                raise
        finally:
            _live.pop(proc.pid, None)
        elapsed = time.monotonic() - started
        stdout, stderr = _read_fd(out_fd), _read_fd(err_fd)
    finally:
        os.close(out_fd)
        os.close(err_fd)
    rc = proc.returncode if proc.returncode is not None else -1
    for obs in observers:
        obs("end", argv, rc, elapsed, stderr)
    if check and rc != 0:
        raise CommandFailed(argv, rc, stderr)
    return Completed(argv, rc, stdout, stderr, elapsed)


def env_without(*keys: str) -> dict[str, str]:
    env = dict(os.environ)
    for k in keys:
        env.pop(k, None)
    return env


__all__ = ["Completed", "run", "kill_tree", "kill_all", "running_commands", "which", "CommandCancelled"]
