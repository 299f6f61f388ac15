"""A simulated xenstored: the xs_wire protocol on a Unix socket, mirroring the simulated host.

Real clients — Debian's xenstore-utils and libxenstore (through
`xdcore.xenstore.Handle`) — connect to it with `XENSTORED_PATH=DIR/xenstored.sock`.
The protocol rules live in the pure `xdcore.xenstore.store.Store`; this module
only moves bytes and keeps the tree in step with the host:

- every ~15 ms it stats the host's JSON state file (st_mtime_ns, st_ino,
  st_size); when that changes it reloads the snapshot and diffs the
  /local/domain, /vm and /libxl trees against what it mirrored last, firing
  watches, `@introduceDomain` for a new guest and `@releaseDomain` for one that
  shut down or went away;
- nodes the guest owns (control/shutdown, control/sysrq) are seeded once when
  the domain appears; what clients write there persists while the domain exists.

Bad input is handled as xenstored does: a payload announced over 4096 bytes
drops that connection; a client that leaves mid-message is simply forgotten;
a client that stops reading is dropped once its backlog grows too large.
Others keep being served throughout.

Run: `xdsim --state DIR xenstored [--socket PATH]` or
`python -m xdcore.sim.xenstored --state DIR`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..xenstore import wire
from ..xenstore.store import Outgoing, Store

SOCKET_NAME = "xenstored.sock"
ADDR_FILE = "xenstored.addr"  # holds the socket path when it is not DIR/xenstored.sock
POLL_SECONDS = 0.015
SAFETY_RELOAD = 1.0  # seconds: also catches a busy guest resumed because its command died
STATE_FILE = "state.json"  # xdcore.sim.host.STATE_FILE, named here to keep the poll import-free
BACKLOG_LIMIT = 8 << 20  # bytes queued for one slow reader before it is dropped


def default_socket(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / SOCKET_NAME


# -- the host mirror (pure diffing) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Mirrored:
    """What was mirrored for one domain: identity, state flags and its owned nodes."""

    uuid: str
    flags: str
    nodes: dict[str, tuple[bytes, tuple[str, ...] | None]]


GUEST_SEEDED = ("control/shutdown", "control/sysrq")
TRANSIENT_MAX = 64  # at most this many short-lived guests are replayed per sync
STUB_DOMID_PATH = "/tool/xenstored/domid"  # present only when xenstored runs in a stub domain


def domain_nodes(dom: Any, extra: dict[str, bytes] | None = None) -> tuple[dict[str, tuple[bytes, tuple[str, ...] | None]], dict[str, bytes]]:
    """The nodes the toolstack owns for one domain, and the guest-writable ones seeded once.

    Values are as libxl writes them (xen-reference §6.1); perms as libxl sets
    them: the home is owned by dom0 and readable by the guest.
    """
    domid = int(dom.domid)
    home = f"/local/domain/{domid}"
    uuid = str(dom.uuid or f"00000000-0000-0000-0000-{domid:012x}")
    vm = f"/vm/{uuid}"
    ro = ("n0", f"r{domid}") if domid else ("n0",)
    owned: dict[str, tuple[bytes, tuple[str, ...] | None]] = {
        home: (b"", ro),
        f"{home}/name": (str(dom.name).encode(), None),
        f"{home}/domid": (str(domid).encode(), None),
        f"{home}/vm": (vm.encode(), None),
        f"{home}/memory/target": (str(int(dom.memory_kib)).encode(), None),
        f"{home}/memory/static-max": (str(int(dom.maxmem_kib)).encode(), None),
        f"{vm}/name": (str(dom.name).encode(), None),
        f"{vm}/uuid": (uuid.encode(), None),
        f"{vm}/start_time": (f"{float(dom.start_time or 0.0):.2f}".encode(), None),
    }
    online = int(getattr(dom, "online_vcpus", dom.vcpus))
    for n in range(int(dom.vcpus)):
        owned[f"{home}/cpu/{n}/availability"] = (b"online" if n < online else b"offline", None)
    if getattr(dom, "domain_type", None):
        owned[f"/libxl/{domid}/type"] = (str(dom.domain_type).encode(), None)
    for path, value in (extra or {}).items():  # backend trees, nodes the guest's agent wrote
        owned[path] = (value, None)
    seeded: dict[str, bytes] = {}
    if domid:
        seeded = {f"{home}/{k}": b"" for k in GUEST_SEEDED}
    return owned, seeded


def _flag(flags: str, index: int, letter: str) -> bool:
    return len(flags) > index and flags[index] == letter


class HostMirror:
    """Keeps a Store's domain trees equal to a host snapshot; returns the frames to send."""

    def __init__(self, store: Store):
        self.store = store
        self.mirrored: dict[int, Mirrored] = {}
        self.stub_domid: int | None = None
        self.next_domid: int | None = None

    def sync(
        self, domains: Sequence[Any], stub_domid: int | None = None, next_domid: int | None = None,
        extra: dict[int, dict[str, bytes]] | None = None,
    ) -> list[Outgoing]:
        """Bring the store in line with `domains`; `next_domid` (the host's next free domid) reveals
        guests that were created and gone again between two syncs, which are then introduced
        and released at once, as a real xenstored would have seen them."""
        out: list[Outgoing] = []
        if stub_domid != self.stub_domid:
            if stub_domid is None:
                out += self.store.remove(STUB_DOMID_PATH)
            else:
                out += self.store.put(STUB_DOMID_PATH, str(stub_domid).encode())
            self.stub_domid = stub_domid
        wanted = {int(d.domid): d for d in domains}
        for domid, old in list(self.mirrored.items()):
            dom = wanted.get(domid)
            if dom is None or str(dom.uuid or old.uuid) != old.uuid:
                out += self._drop(domid, old)
        for domid, dom in sorted(wanted.items()):
            owned, seeded = domain_nodes(dom, (extra or {}).get(domid))
            flags = str(getattr(dom, "flags", "") or "")
            old = self.mirrored.get(domid)
            if old is None:
                for path, (value, perms) in owned.items():
                    out += self.store.put(path, value, perms)
                for path, value in seeded.items():
                    out += self.store.put(path, value)
                if domid:
                    out += self.store.introduce(domid)
            else:
                for path, (value, perms) in owned.items():
                    if old.nodes.get(path) != (value, perms):
                        out += self.store.put(path, value, perms)
                for path in old.nodes.keys() - owned.keys():
                    out += self.store.remove(path)
                if self._stopped(flags) and not self._stopped(old.flags):
                    out += self.store.release(domid)
            uuid = owned[f"/local/domain/{domid}/vm"][0].decode()[len("/vm/") :]
            self.mirrored[domid] = Mirrored(uuid, flags, owned)
        if next_domid is not None:
            if self.next_domid is not None:
                missed = range(self.next_domid, min(next_domid, self.next_domid + TRANSIENT_MAX))
                for domid in missed:
                    if domid and domid not in wanted:
                        out += self._flash(domid)
            self.next_domid = next_domid
        return out

    def _flash(self, domid: int) -> list[Outgoing]:
        """A guest that lived between two looks: its home appears and goes, introduced then released."""
        home = f"/local/domain/{domid}"
        out = self.store.put(f"{home}/domid", str(domid).encode(), None)
        out += self.store.introduce(domid)
        out += self.store.remove(home)
        out += self.store.release(domid)
        return out

    @staticmethod
    def _stopped(flags: str) -> bool:
        return _flag(flags, 3, "s") or _flag(flags, 5, "d")

    def _drop(self, domid: int, old: Mirrored) -> list[Outgoing]:
        out = self.store.remove(f"/local/domain/{domid}")
        out += self.store.remove(f"/vm/{old.uuid}")
        out += self.store.remove(f"/libxl/{domid}")
        if domid:
            out += self.store.release(domid)
        del self.mirrored[domid]
        return out


# -- the server -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostView:
    """What the mirror needs from one load of the host: domains, the next due transition, a stub domid."""

    domains: tuple[Any, ...]
    next_due: float | None
    stub_domid: int | None
    next_domid: int | None = None
    extra: dict[int, dict[str, bytes]] | None = None  # domid -> more nodes (backend trees, agent writes)


DEVICE_CLASSES = (("disks", "vbd", "vdev"), ("nics", "vif", "devid"))


def _vdev_number(vdev: str, index: int) -> int:
    """xvdX -> the vbd devid libxl uses (202 << 8 | 16·X); otherwise 51712 + 16·index."""
    if len(vdev) == 4 and vdev.startswith("xvd") and "a" <= vdev[3] <= "z":
        return 51712 + 16 * (ord(vdev[3]) - ord("a"))
    return 51712 + 16 * index


def extra_nodes(st: Any, now: float) -> tuple[dict[int, dict[str, bytes]], list[float]]:
    """Nodes beyond a domain's home: the backend trees of devices served by driver domains
    (/local/domain/B/backend/CLASS/FRONT/DEVID/… and the frontend's device/CLASS/DEVID/backend-id),
    and the readiness nodes guest agents write (`xdsim ready`); plus the times pending ones fall due."""
    out: dict[int, dict[str, bytes]] = {}
    dues: list[float] = []
    by_name = {d.name: d for d in st.domains if not d.dying}
    for d in st.domains:
        if d.dying or not d.devices_in_xenstore or not isinstance(d.userdata, dict):
            continue
        for key, cls, idkey in DEVICE_CLASSES:
            for i, dev in enumerate(d.userdata.get(key) or []):
                b = by_name.get(dev.get("backend_domname") or "")
                if b is None or b.domid == d.domid:
                    continue
                devid = dev.get("devid", i) if cls == "vif" else _vdev_number(str(dev.get("vdev", "")), i)
                base = f"/local/domain/{b.domid}/backend/{cls}/{d.domid}/{devid}"
                nodes = out.setdefault(b.domid, {})
                nodes[f"{base}/frontend-id"] = str(d.domid).encode()
                nodes[f"{base}/frontend"] = f"/local/domain/{d.domid}/device/{cls}/{devid}".encode()
                nodes[f"{base}/online"] = b"1"
                front = out.setdefault(d.domid, {})
                front[f"/local/domain/{d.domid}/device/{cls}/{devid}/backend-id"] = str(b.domid).encode()
                front[f"/local/domain/{d.domid}/device/{cls}/{devid}/backend"] = base.encode()
    for name, rule in (getattr(st, "ready", None) or {}).items():
        d = by_name.get(name)
        if d is None or d.ready_at is not None or d.flags[3] == "s":  # not running (yet)
            continue
        due = max(float(d.start_time or 0.0), float(rule.get("set_at", 0.0))) + float(rule.get("after", 0.0))
        if due <= now:
            path = f"/local/domain/{d.domid}/{rule.get('key') or 'data/ready'}"
            out.setdefault(d.domid, {})[path] = str(rule.get("value", "1")).encode()
        else:
            dues.append(due)
    return out, dues


def load_host(state_dir: Path) -> HostView:
    """Load the simulated host (xdcore.sim.host) with due transitions applied; never writes it."""
    from . import host

    now = time.time()
    st = host.load(state_dir)
    snap = host.snapshot_of(st, now)
    dues = [t for d in st.domains for t in (d.ready_at, d.gone_at) if t is not None]
    extra, more = extra_nodes(st, now)
    dues += more
    stub = next((d.domid for d in st.domains if getattr(d, "xs_domain", False)), None)
    next_domid = getattr(st, "next_domid", None)
    return HostView(tuple(snap.domains), min(dues) if dues else None, stub, next_domid, extra)


class Xenstored:
    """The asyncio server: connections in, frames out, the host mirrored by a poll task."""

    def __init__(self, state_dir: str | os.PathLike[str], socket_path: str | os.PathLike[str] | None = None):
        self.state_dir = Path(state_dir)
        self.socket_path = Path(socket_path) if socket_path else default_socket(self.state_dir)
        self.store = Store()
        self.mirror = HostMirror(self.store)
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._loaded_at = float("-inf")
        self._next_due: float | None = None

    # frames out

    def send(self, frames: list[Outgoing]) -> None:
        for cid, data in frames:
            writer = self.writers.get(cid)
            if writer is None or writer.is_closing():
                continue
            writer.write(data)
            if writer.transport.get_write_buffer_size() > BACKLOG_LIMIT:
                self._drop(cid, "backlog over limit (client not reading)")

    def _drop(self, cid: int, why: str) -> None:
        writer = self.writers.pop(cid, None)
        self.store.disconnect(cid)
        if writer is not None:
            writer.transport.abort()
        if why:
            print(f"xenstored: dropped connection {cid}: {why}", file=sys.stderr)

    # connections

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid = self.store.connect()
        self.writers[cid] = writer
        framer = wire.Framer()
        why = ""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except wire.Oversize as exc:
                    why = str(exc)
                    break
                for msg in messages:
                    if cid not in self.writers:
                        return
                    self.send(self.store.handle(cid, msg))
                if cid in self.writers:
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(cid, why)

    # the host

    def poll_host(self) -> None:
        """Reload the host when its file changed, a timed transition fell due, or once a second."""
        try:
            st = os.stat(self.state_dir / STATE_FILE)
        except OSError:
            stamp = None
        else:
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        now = time.monotonic()
        due = self._next_due is not None and time.time() >= self._next_due
        if stamp == self._stamp and not due and now - self._loaded_at < SAFETY_RELOAD:
            return
        try:
            view = load_host(self.state_dir)
        except Exception as exc:  # a foreign or broken file: keep the last view, retry later
            if stamp != self._stamp:
                print(f"xenstored: cannot read host state: {exc}", file=sys.stderr)
            self._stamp, self._loaded_at = stamp, now
            return
        self._stamp, self._loaded_at, self._next_due = stamp, now, view.next_due
        self.send(self.mirror.sync(view.domains, view.stub_domid, view.next_domid, view.extra))

    async def _poll_forever(self) -> None:
        while True:
            self.poll_host()
            await asyncio.sleep(POLL_SECONDS)

    async def run(self, ready: asyncio.Event | None = None) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_socket(self.socket_path)
        self.poll_host()
        addr = self.state_dir / ADDR_FILE
        if self.socket_path != default_socket(self.state_dir):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            addr.write_text(str(self.socket_path) + "\n")  # before listening: whoever connects can find it
        server = await asyncio.start_unix_server(self.client, path=str(self.socket_path))
        poller = asyncio.ensure_future(self._poll_forever())
        try:
            async with server:
                if ready is not None:
                    ready.set()
                await server.serve_forever()
        finally:
            poller.cancel()
            for cid in list(self.writers):
                self._drop(cid, "")
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            if self.socket_path != default_socket(self.state_dir):
                with contextlib.suppress(OSError):
                    addr.unlink()


def _clear_stale_socket(path: Path) -> None:
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listening: a leftover
    else:
        raise SystemExit(f"xenstored: {path}: another xenstored is already serving this socket")
    finally:
        probe.close()


async def serve(
    state_dir: str | os.PathLike[str],
    socket_path: str | os.PathLike[str] | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled; `ready` is set once the socket accepts connections."""
    await Xenstored(state_dir, socket_path).run(ready)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xdsim xenstored", description="Serve a simulated xenstored.")
    parser.add_argument("--state", required=True, help="state directory of the simulated host")
    parser.add_argument("--socket", help=f"Unix socket path (default: DIR/{SOCKET_NAME})")
    parser.add_argument("--foreground", action="store_true", default=True, help="stay in the foreground (default)")
    args = parser.parse_args(argv)

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        ready = asyncio.Event()
        server = asyncio.ensure_future(serve(args.state, args.socket, ready))
        await asyncio.wait([server, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print(f"xenstored: serving {args.socket or default_socket(args.state)}", file=sys.stderr, flush=True)
        try:
            await server
        except asyncio.CancelledError:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    try:
        asyncio.run(_main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
