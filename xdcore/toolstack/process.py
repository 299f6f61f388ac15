"""Spawning toolstack commands: asyncio subprocesses with a process-tree watchdog.

`run()` is the single place where xdcore starts an external command.  A
command that outlives its timeout, or whose awaiting task is cancelled, is
killed together with every process it spawned (xl forks helpers such as
libxl-save-helper and ssh for migrate), found with psutil — the classic
script's `ps | grep` approach kills the wrong process or none.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psutil

from ..errors import CommandCancelled, CommandFailed, CommandTimedOut, ToolstackMissing
from .port import CommandObserver


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def which(cmd: str) -> str | None:
    return shutil.which(cmd)


def kill_tree(pid: int, grace: float = 1.0) -> None:
    """Kill a process and all its descendants (SIGKILL); a vanished process is fine.

    The root is our own child: asyncio reaps it (waiting on it here would steal
    its exit status from asyncio's child watcher).  Descendants are waited for
    briefly so that nothing of the tree outlives the watchdog.
    """
    try:
        root = psutil.Process(pid)
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in [root, *descendants]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    if descendants:
        psutil.wait_procs(descendants, timeout=grace)


async def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    check: bool = True,
    observers: Iterable[CommandObserver] = (),
    env: dict[str, str] | None = None,
) -> Completed:
    """Run argv; raise CommandFailed / CommandTimedOut / CommandCancelled / ToolstackMissing."""
    argv = tuple(argv)
    observers = tuple(observers)
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a killed tree never takes us along
            env=env,
        )
    except FileNotFoundError as exc:
        raise ToolstackMissing(f"{argv[0]}: command not found on PATH") from exc
    except PermissionError as exc:
        raise ToolstackMissing(f"{argv[0]}: not executable: {exc}") from exc
    for obs in observers:
        obs("start", argv, proc.pid, float(timeout or 0), "")
    comm = asyncio.ensure_future(proc.communicate())
    try:
        if timeout and timeout > 0:
            out, err = await asyncio.wait_for(asyncio.shield(comm), timeout)
        else:
            out, err = await asyncio.shield(comm)
    except asyncio.TimeoutError:
        kill_tree(proc.pid)
        out, err = await comm
        stderr = err.decode(errors="replace")
        for obs in observers:
            obs("end", argv, None, time.monotonic() - started, stderr)
        raise CommandTimedOut(argv, float(timeout or 0), stderr) from None
    except asyncio.CancelledError:
        kill_tree(proc.pid)
        try:
            out, err = await asyncio.wait_for(comm, 5)
        except Exception:
            err = b""
        for obs in observers:
            obs("end", argv, None, time.monotonic() - started, err.decode(errors="replace"))
        raise
    elapsed = time.monotonic() - started
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
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


__all__ = ["Completed", "run", "kill_tree", "which", "CommandCancelled"]
