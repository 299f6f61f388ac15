"""The control socket: steering a headless run (the one systemd started at shutdown).

A running `xendomains start|stop` listens on `control.sock` beside its
progress file (`/run/xendomains/control.sock` by default) and offers the
interventions of the console — skip a stage, skip a guest, abort, change
parallelism, toggle a stage, change the migrate target — to `xdtui
--attach` and to `xendomains control …`.

Who may steer: the socket is created 0600 (umask at bind, chmod after) and
every connection's SO_PEERCRED uid must be 0 or the server's own uid; others
get one refusal line and the connection closes.  A console that cannot
connect stays read-only and follows the progress file.

The socket opens when the run emits RunStarted — that is, once it holds the
lock, so a second `xendomains start` that finds the service running never
steals the socket of the run in progress — and closes (file removed) when
the run finishes.

Protocol: one JSON object per line, one JSON reply per line.
  {"op": "status"}                                  → {"ok": true, "verb": …, "running": {guest: stage}, …}
  {"op": "skip_stage", "guest": "web01", "stage"?: "save"}
  {"op": "skip_guest", "guest": "web01"}
  {"op": "abort", "now"?: false}
  {"op": "set_parallel", "value": 4}
  {"op": "set_stage", "stage": "migrate", "enabled": false}
  {"op": "set_migrate_target", "value": "host2 -s ssh" | null}
  {"op": "move_guest", "guest": "web01", "target": "xen03"}   (several migration targets)
  {"op": "hangup"}         the terminal of the console that started the run went away
Any request may carry "tty": "/dev/pts/3" (the client's terminal).  Each
intervention is logged with who sent it: the uid from SO_PEERCRED and that tty.
Errors: {"ok": false, "error": "…"}.

Whatever a client does, the run is not disturbed and nothing is logged as a
traceback: a request is one line of at most MAX_REQUEST bytes, nested at
most MAX_DEPTH deep, read within REQUEST_TIMEOUT seconds; integers must be
in range (parallelism 1 … MAX_PARALLEL); at most MAX_CLIENTS connections at
once.  Anything else gets one error reply and the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MAX_PARALLEL
from .errors import XendomainsError
from .events import Event, RunFinished, RunStarted, StageFinished, StageStarted
from .pipeline.control import RunControl
from .pipeline.stages import STAGES

SOCKET_NAME = "control.sock"
#: sun_path holds 108 bytes including the NUL
MAX_SOCKET_PATH = 107
#: the longest request line (requests are a few dozen bytes; a migrate target a few hundred)
MAX_REQUEST = 16 * 1024
#: the deepest nesting of a request (they are flat objects)
MAX_DEPTH = 4
#: seconds a client has to send each request line (a slow or silent client is dropped)
REQUEST_TIMEOUT = 10.0
#: connections served at once; more are refused
MAX_CLIENTS = 32


class ControlError(XendomainsError):
    """The control socket cannot be reached, or the run refused the request."""


def socket_path(progress: Path) -> Path:
    """The control socket of the run whose progress file is `progress`."""
    return Path(progress).parent / SOCKET_NAME


@dataclass(frozen=True)
class PeerCred:
    """The credentials of the process at the other end of a Unix socket (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, sock: socket.socket) -> "PeerCred":
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return cls(*struct.unpack("3i", raw))


def peer_permitted(peer: PeerCred, own_uid: int) -> bool:
    """Root, or the user running this xendomains, may steer it; nobody else."""
    return peer.uid == 0 or peer.uid == own_uid


class ControlServer:
    """Event sink + asyncio Unix server dispatching requests onto a run's RunControl.

    Subscribe it to the run's bus; it opens on RunStarted and closes on
    RunFinished.  Always `await aclose()` in a finally (removes the socket).
    """

    def __init__(self, path: Path, control: RunControl, *, own_uid: int | None = None,
                 permitted: Callable[[PeerCred, int], bool] = peer_permitted):
        self.path = Path(path)
        self.control = control
        self.own_uid = os.geteuid() if own_uid is None else own_uid
        self.permitted = permitted
        self.error: str | None = None
        self.verb = ""
        self.pid = os.getpid()
        self.running: dict[str, str] = {}
        self._sock: socket.socket | None = None
        self._server: asyncio.base_events.Server | None = None
        self._serving: asyncio.Task[Any] | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------

    def __call__(self, e: Event) -> None:
        if isinstance(e, RunStarted):
            self.verb = e.verb
            self.open()
        elif isinstance(e, StageStarted) and e.guest:
            self.running[e.guest] = e.stage
        elif isinstance(e, StageFinished) and e.guest:
            if self.running.get(e.guest) == e.stage:
                del self.running[e.guest]
        elif isinstance(e, RunFinished):
            self.close_listener()

    def open(self) -> bool:
        """Bind and listen now (synchronously; the loop starts accepting at once)."""
        if self._sock is not None or self.error:
            return self._sock is not None
        p = str(self.path)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.error = "the control socket needs a running event loop; this run cannot be steered"
            return False
        if len(os.fsencode(p)) > MAX_SOCKET_PATH:
            self.error = f"control socket path {p} is longer than {MAX_SOCKET_PATH} bytes; this run cannot be steered"
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if self.path.is_socket() or self.path.is_symlink():
                    self.path.unlink()  # stale: we hold the run lock, no live run owns it
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(p)
            finally:
                os.umask(old)
            os.chmod(p, 0o600)
            sock.listen(8)
            sock.setblocking(False)
        except OSError as exc:
            self.error = f"cannot open the control socket {p}: {exc.strerror or exc}"
            return False
        self._sock = sock
        self._serving = loop.create_task(self._serve(sock))
        return True

    async def _serve(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_REQUEST)

    def close_listener(self) -> None:
        """Stop accepting and remove the socket file (clients connected finish their request)."""
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                if self.path.is_socket():
                    self.path.unlink()
        self._sock = None

    async def aclose(self) -> None:
        self.close_listener()
        if self._serving is not None:
            with contextlib.suppress(BaseException):
                await self._serving
        if self._server is not None:
            self._server.close()
        for t in list(self._clients):
            t.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)

    @property
    def listening(self) -> bool:
        return self._sock is not None

    # -- connections ------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._clients.add(task)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass  # the client went away: nothing to answer
        except asyncio.CancelledError:
            pass  # the run is closing the socket (aclose): end quietly, never a traceback at exit
        except Exception as exc:  # noqa: BLE001 - no client behaviour may disturb the run it steers
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reply(writer, {"ok": False, "error": f"internal error: {type(exc).__name__}"}), 1.0)
        finally:
            if task:
                self._clients.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            peer = PeerCred.of(sock)
        except (OSError, AttributeError, struct.error):
            peer = PeerCred(0, -1, -1)
        if not self.permitted(peer, self.own_uid):
            try:  # read the request first: closing on unread data would reset the client before it reads why
                await asyncio.wait_for(reader.readline(), 1.0)
            except (asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError, OSError):
                pass
            await self._reply(writer, {"ok": False, "error": f"permission denied: uid {peer.uid} may not steer this run"})
            return
        if len(self._clients) > MAX_CLIENTS:
            await self._reply(writer, {"ok": False, "error": f"too many connections (at most {MAX_CLIENTS})"})
            return
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            except asyncio.TimeoutError:
                await self._reply(writer, {"ok": False, "error": f"no complete request within {REQUEST_TIMEOUT:g}s"})
                return
            except (asyncio.LimitOverrunError, ValueError):
                await self._reply(writer, {"ok": False, "error": f"request too long (at most {MAX_REQUEST} bytes)"})
                return
            if not line:
                return
            if not line.strip():
                continue
            await self._reply(writer, self.handle_line(line, peer))
            if not line.endswith(b"\n"):  # the client half-closed after its last request
                return

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write((json.dumps(obj, ensure_ascii=False) + "\n").encode())
        await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)  # a client that never reads is dropped

    # -- requests ------------------------------------------------------------------------------

    def handle_line(self, line: bytes, peer: PeerCred | None = None) -> dict[str, Any]:
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": f"request too long (at most {MAX_REQUEST} bytes)"}
        if _depth(line) > MAX_DEPTH:
            return {"ok": False, "error": f"request nested deeper than {MAX_DEPTH}"}
        try:
            req = json.loads(line)
        except UnicodeDecodeError:
            return {"ok": False, "error": "request is not UTF-8"}
        except (ValueError, RecursionError):
            return {"ok": False, "error": "not a JSON object"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "not a JSON object"}
        try:
            return self.handle(req, sender(peer, req.get("tty")))
        except _Bad as bad:
            return {"ok": False, "error": str(bad)}

    def status(self) -> dict[str, Any]:
        c = self.control
        return {
            "ok": True, "verb": self.verb, "pid": self.pid, "parallel": c.parallel,
            "disabled_stages": sorted(c.disabled_stages), "skipped_guests": sorted(c.skipped_guests),
            "aborted": c.aborted, "abort_now": c.abort_now, "running": dict(self.running),
            "migrate_target": " ".join(c.migrate_target) if c.migrate_target else None,
            "targets": c.pool.status() if c.pool is not None else None,
        }

    def handle(self, req: dict[str, Any], by: str = "") -> dict[str, Any]:
        op = req.get("op")
        c = self.control
        if op == "status":
            return self.status()
        if op == "hangup":
            c.hangup(by=by)
            return {"ok": True, "on_hangup": c.on_hangup or "continue"}
        if op == "skip_stage":
            guest = _str(req, "guest")
            stage = req.get("stage") or None
            if stage is not None:
                _stage_name(stage)
            if not c.skip_stage(guest, stage, by=by):
                raise _Bad(f"{guest} is running no stage now; name the stage to skip")
            return {"ok": True, "guest": guest, "stage": stage or c.running_stage(guest) or ""}
        if op == "skip_guest":
            guest = _str(req, "guest")
            c.skip_guest(guest, by=by)
            return {"ok": True, "guest": guest}
        if op == "abort":
            now = req.get("now", False)
            if not isinstance(now, bool):
                raise _Bad("'now' must be true or false")
            c.abort(now=now, by=by)
            return {"ok": True, "now": now}
        if op == "set_parallel":
            v = req.get("value")
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_PARALLEL:
                raise _Bad(f"'value' must be an integer from 1 to {MAX_PARALLEL}")
            c.set_parallel(v, by=by)
            return {"ok": True, "parallel": c.parallel}
        if op == "set_stage":
            stage = _stage_name(_str(req, "stage"))
            enabled = req.get("enabled")
            if not isinstance(enabled, bool):
                raise _Bad("'enabled' must be true or false")
            if STAGES[stage].required and not enabled:
                raise _Bad(f"stage {stage} is required and cannot be turned off")
            c.set_stage(stage, enabled, by=by)
            return {"ok": True, "stage": stage, "enabled": enabled}
        if op == "set_migrate_target":
            v = req.get("value")
            if v is None or v == "":
                c.set_migrate_target(None, by=by)
                return {"ok": True, "migrate_target": None}
            if not isinstance(v, str):
                raise _Bad("'value' must be a string of shell words or null")
            try:
                words = tuple(shlex.split(v))
            except ValueError:
                raise _Bad("'value' has unbalanced quotes") from None
            c.set_migrate_target(words or None, by=by)
            return {"ok": True, "migrate_target": " ".join(words) or None}
        if op == "move_guest":
            guest, target = _str(req, "guest"), _str(req, "target")
            problem = c.move_guest(guest, target, by=by)
            if problem:
                raise _Bad(problem)
            return {"ok": True, "guest": guest, "target": target}
        raise _Bad(f"unknown op {op!r}")


class _Bad(Exception):
    pass


def _depth(line: bytes) -> int:
    """The deepest nesting of `[`/`{` in a JSON text, strings skipped (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for b in line:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


_TTY_MAX = 64


def sender(peer: PeerCred | None, tty: object) -> str:
    """Who sent a request, for the log: "uid 1000 tty /dev/pts/3" (a tty that is not a short printable string is left out)."""
    parts = [f"uid {peer.uid}"] if peer is not None and peer.uid >= 0 else []
    if isinstance(tty, str) and 0 < len(tty) <= _TTY_MAX and tty.isprintable() and not tty.isspace():
        parts.append(f"tty {tty}")
    return " ".join(parts)


def _str(req: dict[str, Any], key: str) -> str:
    v = req.get(key)
    if not isinstance(v, str) or not v:
        raise _Bad(f"{key!r} must be a non-empty string")
    return v


def _stage_name(name: Any) -> str:
    if not isinstance(name, str) or name not in STAGES:
        raise _Bad(f"unknown stage {name!r} (one of {', '.join(STAGES)})")
    return name


# -- the client ---------------------------------------------------------------------------------


class ControlClient:
    """Talks to a run's control socket.  Sync methods for scripts; `call` for an event loop.

    Every method returns the reply dict and raises ControlError when the
    socket cannot be reached or the run refuses (`ok: false`).
    """

    def __init__(self, path: Path, timeout: float = 5.0, tty: str | None = None):
        self.path = Path(path)
        self.timeout = timeout
        self.tty = tty  # sent with every request, so the run logs which terminal asked

    def _with_tty(self, req: dict[str, Any]) -> dict[str, Any]:
        return {**req, "tty": self.tty} if self.tty and "tty" not in req else req

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        req = self._with_tty(req)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(str(self.path))
                s.sendall((json.dumps(req) + "\n").encode())
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise ControlError(f"cannot reach the run's control socket {self.path}: {exc.strerror or exc}") from exc
        return _check(buf, self.path)

    async def call(self, req: dict[str, Any]) -> dict[str, Any]:
        req = self._with_tty(req)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), self.timeout)
            try:
                writer.write((json.dumps(req) + "\n").encode())
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), self.timeout)
            finally:
                writer.close()
        except (OSError, asyncio.TimeoutError) as exc:
            raise ControlError(f"cannot reach the run's control socket {self.path}: {getattr(exc, 'strerror', None) or exc or 'timed out'}") from exc
        return _check(line, self.path)

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})

    def skip_stage(self, guest: str, stage: str | None = None) -> dict[str, Any]:
        return self.request({"op": "skip_stage", "guest": guest, **({"stage": stage} if stage else {})})

    def skip_guest(self, guest: str) -> dict[str, Any]:
        return self.request({"op": "skip_guest", "guest": guest})

    def abort(self, now: bool = False) -> dict[str, Any]:
        return self.request({"op": "abort", "now": now})

    def set_parallel(self, n: int) -> dict[str, Any]:
        return self.request({"op": "set_parallel", "value": n})

    def set_stage(self, stage: str, enabled: bool) -> dict[str, Any]:
        return self.request({"op": "set_stage", "stage": stage, "enabled": enabled})

    def set_migrate_target(self, value: str | None) -> dict[str, Any]:
        return self.request({"op": "set_migrate_target", "value": value})

    def move_guest(self, guest: str, target: str) -> dict[str, Any]:
        return self.request({"op": "move_guest", "guest": guest, "target": target})

    def hangup(self) -> dict[str, Any]:
        return self.request({"op": "hangup"})


def own_tty() -> str | None:
    """This process's terminal (for the `tty` field of requests), or None."""
    for fd in (0, 1, 2):
        try:
            return os.ttyname(fd)
        except OSError:
            continue
    return None


def _check(raw: bytes, path: Path) -> dict[str, Any]:
    if not raw.strip():
        raise ControlError(f"the run behind {path} closed the connection without answering")
    try:
        reply = json.loads(raw)
    except ValueError:
        raise ControlError(f"the run behind {path} answered something that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the run behind {path} answered something that is not a JSON object")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "refused"))
    return reply


def can_control(path: Path, timeout: float = 2.0) -> bool:
    """True when a run listens on `path` and accepts us (the console then offers its interventions)."""
    if not Path(path).is_socket():
        return False
    try:
        ControlClient(path, timeout).status()
        return True
    except ControlError:
        return False


__all__ = ["ControlClient", "ControlError", "ControlServer", "PeerCred", "SOCKET_NAME", "can_control",
           "own_tty", "peer_permitted", "sender", "socket_path"]
