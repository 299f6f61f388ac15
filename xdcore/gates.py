"""Readiness gates: waiting until a started guest is ready before the next group starts.

A gate (`xendomains_up_wait`) is one of:

- "ready": the guest says so — its XenStore node
  /local/domain/DOMID/<xendomains_ready_key> (default data/ready) holds a
  value other than "" or "0", written by the guest's agent; or the admin's
  `xendomains_ready_cmd` (an argv run without a shell, each try under a
  timeout, retried every second) exits 0.  Whichever comes first opens it.
  XenStore is watched (xdcore.xenstore.Handle); each watch event and every
  half second the node is read again, so a lost watch degrades to polling.
- a duration: wait that long.

Every gate ends after XENDOMAINS_START_MAXWAIT (0: no limit): the guest is
then "up, not ready".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

from .policy import READY_CMD_TIMEOUT, Gate, GuestPolicy

POLL_SECONDS = 0.5
CMD_RETRY_SECONDS = 1.0
READY_FALSE = (b"", b"0")


@dataclass(frozen=True)
class GateResult:
    outcome: str  # "open" | "timeout"
    how: str  # what opened it / why not
    elapsed: float


def _is_ready(raw: bytes | None) -> bool:
    return raw is not None and raw.strip(b"\0 \n") not in READY_FALSE


async def _xenstore_ready(path: str, xenstore_path: str | None) -> str:
    """Return when the node at `path` says ready; raise LookupError when XenStore cannot be used."""
    from .xenstore import Handle, NotFoundError, PyXenStoreError

    try:
        h = await asyncio.wait_for(asyncio.to_thread(Handle, path=xenstore_path), 5.0)
    except (PyXenStoreError, asyncio.TimeoutError, OSError) as exc:
        raise LookupError(f"XenStore unreachable: {exc}") from None
    token = f"xdcore-gate-{id(h)}"
    try:
        def read() -> bytes | None:
            try:
                return h.read(path)
            except NotFoundError:
                return None

        events = None
        with contextlib.suppress(PyXenStoreError):
            h.watch(path, token)
            events = h.watch_events(liveness=POLL_SECONDS).__aiter__()
        while True:
            try:
                raw = await asyncio.to_thread(read)
            except PyXenStoreError as exc:
                raise LookupError(f"XenStore read of {path} failed: {exc}") from None
            if _is_ready(raw):
                return f"XenStore {path} = {raw.decode(errors='replace').strip(chr(0))!r}"
            if events is not None:
                try:
                    await asyncio.wait_for(events.__anext__(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
                except (PyXenStoreError, StopAsyncIteration):
                    events = None  # watch lost: poll
            else:
                await asyncio.sleep(POLL_SECONDS)
    finally:
        with contextlib.suppress(Exception):
            h.close()


async def _run_once(argv: tuple[str, ...], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE, env=env,
                                                    start_new_session=True)
    except OSError as exc:
        return None, f"cannot run {argv[0]}: {exc.strerror or exc}"
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        if isinstance(exc, asyncio.CancelledError):
            raise
        return -1, f"timed out after {timeout:g}s"
    return proc.returncode, (err or b"").decode(errors="replace").strip()[-200:]


async def _command_ready(argv: tuple[str, ...], name: str, domid: int | None) -> str:
    env = {**os.environ, "XENDOMAINS_GUEST": name, "XENDOMAINS_DOMID": "" if domid is None else str(domid)}
    tries = 0
    while True:
        tries += 1
        rc, why = await _run_once(argv, env, READY_CMD_TIMEOUT)
        if rc is None:
            raise LookupError(why)  # the command cannot run at all: retrying will not help
        if rc == 0:
            return f"{argv[0]} exited 0 (try {tries})"
        await asyncio.sleep(CMD_RETRY_SECONDS)


async def wait_gate(gate: Gate, policy: GuestPolicy, name: str, domid: int | None, timeout: float | None,
                    xenstore_path: str | None = None) -> GateResult:
    """Wait for one guest's gate; never raises for the guest's or the command's failures."""
    t0 = time.monotonic()
    if gate.kind == "none":
        return GateResult("open", "no gate", 0.0)
    if gate.kind == "delay":
        wait = gate.seconds if timeout is None else min(gate.seconds, timeout)
        await asyncio.sleep(wait)
        if wait < gate.seconds:
            return GateResult("timeout", f"waited {wait:g}s of {gate.seconds:g}s (XENDOMAINS_START_MAXWAIT)",
                              time.monotonic() - t0)
        return GateResult("open", f"waited {gate.seconds:g}s", time.monotonic() - t0)
    waiters: list[asyncio.Task] = []
    if domid is not None:
        key = f"/local/domain/{domid}/{policy.ready_key}"
        waiters.append(asyncio.ensure_future(_xenstore_ready(key, xenstore_path)))
    if policy.ready_cmd:
        waiters.append(asyncio.ensure_future(_command_ready(policy.ready_cmd, name, domid)))
    problems: list[str] = []
    deadline = None if timeout is None else t0 + timeout
    try:
        pending = set(waiters)
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            for t in done:
                exc = t.exception()
                if exc is None:
                    return GateResult("open", t.result(), time.monotonic() - t0)
                problems.append(str(exc))
        # nothing left that could open it (XenStore unreachable, the command cannot run): it ends now
    finally:
        for t in waiters:
            t.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    why = "; ".join(problems) or f"not ready after {time.monotonic() - t0:.0f}s"
    return GateResult("timeout", why, time.monotonic() - t0)


__all__ = ["GateResult", "wait_gate"]
