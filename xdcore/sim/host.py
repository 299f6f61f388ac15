"""The simulated Xen host: its state, kept in one JSON file in a state directory.

Why a file and a lock: the service under test runs many `xl` processes at
once (parallel stop), exactly as on a real host, so every command loads the
state under an exclusive `fcntl.flock` on ``DIR/state.lock``, changes it and
writes it back atomically (temporary file + ``os.replace``) so that lock-free
readers never see half a file.  Nobody sleeps while holding the lock:
latencies, hangs and waits happen between two short transactions.

Why timestamps: a domain carries the times of its coming transitions
(``ready_at`` when a create finishes building, ``gone_at`` when a shutdown
completes), and every load applies the transitions that are due.  So
`xl shutdown` without `-w` returns after the guest's acknowledgement and the
guest disappears later on its own, whoever looks next.  A command that dies
in the middle of an operation (SIGKILL by a watchdog) is noticed the same
way: a domain marked busy by a process that no longer exists is resumed.

API for other parts of the simulator (the simulated xenstored included):

``state_path(state_dir) -> Path``
    The JSON file.  It is replaced (new inode, new ``st_mtime_ns``) on every
    change and only then, so a poller can watch ``os.stat``.
``load_snapshot(state_dir) -> HostSnapshot``
    Read-only view with due transitions applied in memory (never writes).
    ``.domains`` is a tuple of `DomainView` (domid, name, uuid, memory_kib
    (target), maxmem_kib, current_kib, vcpus, online_vcpus, cpu_time,
    flags (6 chars as `xl list` shows), start_time (epoch), domain_type,
    config_path, dying, shutdown_reason); ``.total_memory_mib``,
    ``.free_memory_mib``; ``.targets`` (migrated guests by target host).
``transaction(state_dir)``
    Context manager yielding the mutable `HostState` under the lock; writes
    it back (only if it changed) on normal exit.
"""

from __future__ import annotations

import fcntl
import os
import time

from . import physics
from . import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from .views import HostSnapshot

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
FORMAT_VERSION = 1

DEFAULT_LATENCY = {
    "create": 1.0,
    "restore": 1.0,
    "save": 0.5,
    "migrate": 1.0,
    "shutdown": 2.0,
    "ack": 0.2,
    "ack_timeout": 60.0,
    "destroy": 0.2,
    "sysrq": 0.0,
    "list": 0.0,
}
DEFAULT_RATE = {"save": 1024.0, "migrate": 512.0, "restore": 2048.0}
FAST_LATENCY = {
    "create": 0.01,
    "restore": 0.01,
    "save": 0.01,
    "migrate": 0.01,
    "shutdown": 0.05,
    "ack": 0.0,
    "ack_timeout": 1.0,
    "destroy": 0.0,
    "sysrq": 0.0,
    "list": 0.0,
}
FAST_RATE = {"save": 0.0, "migrate": 0.0, "restore": 0.0}  # 0 = memory does not slow it down

FAULT_KINDS = ("fail", "hang", "ignore", "zombie", "enospc", "delay")
OPS = ("create", "restore", "save", "migrate", "shutdown", "destroy", "sysrq", "list")

DEFAULT_INFO = {
    "host": "vm",
    "release": "6.18.44-fc-v857",
    "version": "#1 SMP PREEMPT_DYNAMIC @0",
    "machine": "x86_64",
    "nr_cpus": "4",
    "max_cpu_id": "3",
    "nr_nodes": "1",
    "cores_per_socket": "2",
    "threads_per_core": "2",
    "cpu_mhz": "2999.999",
    "hw_caps": ":".join(["00000000"] * 8),
    "virt_caps": "pv hvm hap shadow",
    "total_memory": "",
    "free_memory": "",
    "sharing_freed_memory": "0",
    "sharing_used_memory": "0",
    "outstanding_claims": "0",
    "free_cpus": "0",
    "xen_major": "4",
    "xen_minor": "17",
    "xen_extra": ".7-fake",
    "xen_version": "4.17.7-fake",
    "xen_caps": "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
    "xen_scheduler": "credit2",
    "xen_pagesize": "4096",
    "platform_params": "virt_start=0xffff800000000000",
    "xen_changeset": "",
    "xen_commandline": "placeholder dom0_mem=2048M,max:2048M",
    "cc_compiler": "gcc (Debian 12.2.0-14) 12.2.0",
    "cc_compile_by": "pkg-xen-devel",
    "cc_compile_domain": "lists.alioth.debian.org",
    "cc_compile_date": "Tue Nov  4 16:52:00 UTC 2025",
    "build_id": "",
    "xend_config_format": "4",
}

REASON_LETTERS = "-rscwS"


def _repr(obj) -> str:
    return f"{type(obj).__name__}({', '.join(f'{n}={getattr(obj, n)!r}' for n in obj.__slots__)})"


class SimDomain:
    """One domain of the simulated hypervisor (mutable, lives only inside a transaction).

    A plain class with __slots__ rather than a dataclass: every simulated xl process
    builds these, and importing dataclasses (inspect, enum, …) would cost it ~7 ms.
    """

    __slots__ = (
        "domid", "name", "uuid", "domain_type", "memory_kib", "maxmem_kib", "current_kib", "vcpus",
        "online_vcpus", "cpu_time", "cpu_time_at", "cpu_rate", "flags", "start_time", "config_path",
        "userdata", "devices_in_xenstore", "xs_domain", "ready_at", "ready_flags", "gone_at", "gone_as", "busy",
        "monitor",
    )

    def __init__(self, domid: int, name: str, uuid: str, domain_type: str = "pv", memory_kib: int = 0,
                 maxmem_kib: int = 0, current_kib: int = 0, vcpus: int = 1, online_vcpus: int = 1,
                 cpu_time: float = 0.0, cpu_time_at: float = 0.0, cpu_rate: float = 0.0, flags: str = "-b----",
                 start_time: float = 0.0, config_path: str | None = None, userdata: dict | None = None,
                 devices_in_xenstore: bool = True, xs_domain: bool = False, ready_at: float | None = None,
                 ready_flags: str = "-b----", gone_at: float | None = None, gone_as: str = "destroy",
                 busy: dict | None = None, monitor: bool = True):
        self.domid = domid
        self.name = name
        self.uuid = uuid
        self.domain_type = domain_type
        self.memory_kib = memory_kib  # balloon target (memory/target)
        self.maxmem_kib = maxmem_kib  # memory/static-max
        self.current_kib = current_kib  # tot_pages * 4: what `xl list` shows
        self.vcpus = vcpus  # max
        self.online_vcpus = online_vcpus
        self.cpu_time = cpu_time  # seconds, at cpu_time_at
        self.cpu_time_at = cpu_time_at
        self.cpu_rate = cpu_rate  # CPU seconds gained per second while not paused/dying
        self.flags = flags
        self.start_time = start_time
        self.config_path = config_path
        self.userdata = userdata  # stored libxl JSON; None: left out of `xl list -l`
        self.devices_in_xenstore = devices_in_xenstore
        self.xs_domain = xs_domain  # a xenstore stub domain (never_stop)
        self.ready_at = ready_at  # paused while being built until then
        self.ready_flags = ready_flags
        self.gone_at = gone_at  # shutdown completes then
        self.gone_as = gone_as  # "destroy" (vanish) or "zombie" (stay dying)
        self.busy = busy  # {"op", "pid", "prev_flags", "prev_name"} during save/migrate/…
        # the `xl create` (or restore) that watches the domain for its whole life and applies on_poweroff
        # (destroy).  Real xl's exits when a save suspends the guest (seen on Xen 4.17): a guest a failed
        # save resumed has none, and its later shutdown leaves it listed shut down (`---s--`) for good.
        self.monitor = monitor

    def to_dict(self) -> dict:
        return {
            "domid": self.domid, "name": self.name, "uuid": self.uuid, "domain_type": self.domain_type,
            "memory_kib": self.memory_kib, "maxmem_kib": self.maxmem_kib, "current_kib": self.current_kib,
            "vcpus": self.vcpus, "online_vcpus": self.online_vcpus, "cpu_time": self.cpu_time,
            "cpu_time_at": self.cpu_time_at, "cpu_rate": self.cpu_rate, "flags": self.flags,
            "start_time": self.start_time, "config_path": self.config_path, "userdata": self.userdata,
            "devices_in_xenstore": self.devices_in_xenstore, "xs_domain": self.xs_domain,
            "ready_at": self.ready_at, "ready_flags": self.ready_flags, "gone_at": self.gone_at,
            "gone_as": self.gone_as, "busy": self.busy, "monitor": self.monitor,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SimDomain:
        try:
            return cls(**data)  # what encode() wrote: exactly the fields
        except TypeError:  # a state file from another version: unknown fields are dropped
            return cls(**{k: v for k, v in data.items() if k in _SIMDOMAIN_FIELDS})

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # mutable
    __repr__ = _repr

    @property
    def dying(self) -> bool:
        return self.flags[5] == "d"

    @property
    def shutdown_code(self) -> int | None:
        if self.flags[3] != "s":
            return None
        idx = REASON_LETTERS.find(self.flags[4])
        return idx if idx >= 0 else 255

    def cpu_time_now(self, now: float) -> float:
        if self.flags[2] == "p" or self.dying or self.busy:
            return self.cpu_time
        return self.cpu_time + self.cpu_rate * max(0.0, now - self.cpu_time_at)


_SIMDOMAIN_FIELDS = frozenset(SimDomain.__slots__)


class Fault:
    """An injected fault: `kind` happens to `op` on `guest` (name, domid or "*")."""

    __slots__ = ("op", "guest", "kind", "seconds")

    def __init__(self, op: str, guest: str, kind: str, seconds: float = 0.0):
        self.op = op
        self.guest = guest  # name, domid, or "*"
        self.kind = kind
        self.seconds = seconds

    def to_dict(self) -> dict:
        return {"op": self.op, "guest": self.guest, "kind": self.kind, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict) -> Fault:
        return cls(**{k: v for k, v in data.items() if k in cls.__slots__})

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None
    __repr__ = _repr

    def matches(self, op: str, name: str, domid: int | None) -> bool:
        return self.op in (op, "*") and self.guest in ("*", name, str(domid))


class HostState:
    """Everything in state.json."""

    __slots__ = ("version", "next_domid", "total_memory_mib", "reserved_mib", "info", "domains", "latency",
                 "rate", "faults", "targets", "history", "resources", "dirty", "transfers", "ledger_at",
                 "transfer_log", "ready", "pool")

    def __init__(self, version: int = FORMAT_VERSION, next_domid: int = 1, total_memory_mib: int = 16384,
                 reserved_mib: int = 0, info: dict | None = None, domains: list[SimDomain] | None = None,
                 latency: dict | None = None, rate: dict | None = None, faults: list[Fault] | None = None,
                 targets: dict | None = None, history: list | None = None, resources: dict | None = None,
                 dirty: dict | None = None, transfers: list | None = None, ledger_at: float = 0.0,
                 transfer_log: list | None = None, ready: dict | None = None, pool: str | None = None):
        self.version = version
        self.next_domid = next_domid
        self.total_memory_mib = total_memory_mib
        self.reserved_mib = reserved_mib  # memory Xen itself holds: free = total - reserved - domains
        self.info = {} if info is None else info  # overrides of `xl info` lines
        self.domains = [] if domains is None else domains
        self.latency = dict(DEFAULT_LATENCY) if latency is None else latency
        self.rate = dict(DEFAULT_RATE) if rate is None else rate
        self.faults = [] if faults is None else faults
        self.targets = {} if targets is None else targets  # host -> [received guest records]
        self.history = [] if history is None else history  # [{"t", "argv", "rc"}] of state-changing commands
        # the resource ledger (physics.py): bandwidths (MB/s) by resource ("disk", "link:HOST"), dirty
        # rates (MB/s) by guest name, the transfers in flight as of `ledger_at`, and the finished ones
        self.resources = {} if resources is None else resources
        self.dirty = {} if dirty is None else dirty
        self.transfers = [] if transfers is None else transfers
        self.ledger_at = ledger_at
        self.transfer_log = [] if transfer_log is None else transfer_log
        # guest agents that announce readiness (`xdsim ready GUEST after S`): name -> {"after", "set_at",
        # "key", "value"}; the simulated xenstored writes /local/domain/DOMID/KEY = VALUE at
        # max(the guest's start, set_at) + after
        self.ready = {} if ready is None else ready
        self.pool = pool  # path of the pool registry (sim/pool.py) this host belongs to, if any

    def to_dict(self) -> dict:
        return {
            "version": self.version, "next_domid": self.next_domid, "total_memory_mib": self.total_memory_mib,
            "reserved_mib": self.reserved_mib, "info": self.info,
            "domains": [d.to_dict() for d in self.domains], "latency": self.latency, "rate": self.rate,
            "faults": [f.to_dict() for f in self.faults], "targets": self.targets, "history": self.history,
            "resources": self.resources, "dirty": self.dirty, "transfers": self.transfers,
            "ledger_at": self.ledger_at, "transfer_log": self.transfer_log, "ready": self.ready,
            "pool": self.pool,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> HostState:
        st = cls(**{k: v for k, v in raw.items() if k in _HOSTSTATE_SCALARS})
        st.domains = [SimDomain.from_dict(d) for d in raw.get("domains", [])]
        st.faults = [Fault.from_dict(f) for f in raw.get("faults", [])]
        st.latency = {**DEFAULT_LATENCY, **raw.get("latency", {})}
        st.rate = {**DEFAULT_RATE, **raw.get("rate", {})}
        return st

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None
    __repr__ = _repr

    # -- queries -----------------------------------------------------------------

    def by_id(self, domid: int) -> SimDomain | None:
        return next((d for d in self.domains if d.domid == domid), None)

    def by_name(self, name: str) -> SimDomain | None:
        return next((d for d in self.domains if d.name == name), None)

    def lat(self, op: str) -> float:
        return float(self.latency.get(op, DEFAULT_LATENCY.get(op, 0.0)))

    def resource_for(self, op: str, target: str = "") -> str | None:
        """The shared resource an operation uses on this host, if its bandwidth is set (else None:
        the operation takes `transfer_time`, whatever else runs)."""
        res = physics.link(target) if op == "migrate" else physics.DISK
        return res if float(self.resources.get(res) or 0.0) > 0 else None

    def transfer_time(self, op: str, memory_kib: int) -> float:
        rate = float(self.rate.get(op, 0.0) or 0.0)
        return self.lat(op) + (memory_kib / 1024.0 / rate if rate > 0 else 0.0)

    def fault(self, op: str, name: str, domid: int | None = None) -> Fault | None:
        return next((f for f in self.faults if f.matches(op, name, domid)), None)

    def delay(self, op: str, name: str, domid: int | None = None) -> float:
        f = self.fault(op, name, domid)
        return f.seconds if f and f.kind == "delay" else 0.0

    def free_memory_mib(self) -> int:
        used = sum(d.current_kib for d in self.domains) // 1024
        return max(0, self.total_memory_mib - self.reserved_mib - used)

    # -- changes -----------------------------------------------------------------

    def new_domid(self) -> int:
        domid = max(self.next_domid, 1)
        self.next_domid = domid + 1
        return domid

    def remove(self, dom: SimDomain) -> None:
        self.domains = [d for d in self.domains if d is not dom]

    def add(self, dom: SimDomain) -> SimDomain:
        self.domains.append(dom)
        self.domains.sort(key=lambda d: d.domid)
        self.next_domid = max(self.next_domid, dom.domid + 1)
        return dom


_HOSTSTATE_SCALARS = frozenset(HostState.__slots__) - {"domains", "faults"}


def make_dom0(now: float | None = None) -> SimDomain:
    from .domconfig import dom0_userdata

    now = time.time() if now is None else now
    return SimDomain(
        domid=0, name="Domain-0", uuid="00000000-0000-0000-0000-000000000000", domain_type="pv",
        memory_kib=2048 * 1024, maxmem_kib=2048 * 1024, current_kib=2048 * 1024, vcpus=4, online_vcpus=4,
        cpu_time=0.0, cpu_time_at=now, cpu_rate=0.3, flags="r-----", start_time=now,
        userdata=dom0_userdata(2048 * 1024),
    )


def new_uuid() -> str:
    """A random (version 4) UUID as str(uuid.uuid4()) prints it; the uuid module costs ~2 ms to import."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- (de)serialisation ------------------------------------------------------------


def decode(text: str) -> HostState:
    return HostState.from_dict(fastjson.loads(text))


def encode(st: HostState) -> str:
    # Every simulated xl process encodes the state a few times, so this is on the benchmarks' hot
    # path: compact separators, which let json use its C encoder (indent= forces the pure-Python one).
    # Read it with `xdsim list` or `python -m json.tool state.json`.
    return fastjson.dumps_compact(st.to_dict()) + "\n"


# -- transitions --------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an unreaped child killed by SIGKILL still answers kill(0)
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")
    except OSError:
        return True


def abort_busy(st: HostState, dom: SimDomain, died: bool = False) -> None:
    """Undo a half-done operation whose command ended: the guest resumes (or a half-built one goes).

    `died`: the command was killed (a signal, SIGPIPE) rather than failing on
    its own.  A save killed after the suspend point resumes nothing — real xl
    dies with the domain left suspended (`---ss-`), as seen on Xen 4.17.
    """
    busy = dom.busy or {}
    dom.busy = None
    if died and busy.get("op") == "save":
        if busy.get("prev_name"):
            dom.name = busy["prev_name"]
        dom.flags = "---ss-"
        return
    if busy.get("op") in ("create", "restore", "migrate-receive"):
        st.remove(dom)
        return
    if busy.get("prev_flags"):
        dom.flags = busy["prev_flags"]
    if busy.get("prev_name"):
        dom.name = busy["prev_name"]


TRANSFER_LOG_LIMIT = 500


def advance_ledger(st: HostState, now: float) -> None:
    """Play the transfers in flight up to `now`; drop those whose xl died (the survivors speed up)."""
    if not st.transfers:
        st.ledger_at = max(st.ledger_at, now)
        return
    if now > st.ledger_at:
        physics.advance(st.transfers, st.resources, st.ledger_at, now)
        st.ledger_at = now  # (a reader's clock a little behind the ledger's leaves it where it is)
    alive = [t for t in st.transfers if _pid_alive(int(t.get("pid", 0)))]
    if len(alive) != len(st.transfers):
        st.transfers = alive


def finish_transfer(st: HostState, tid: str) -> dict | None:
    """Take a completed transfer out of the ledger into the log; None if it is not done (or gone)."""
    rec = next((t for t in st.transfers if t["id"] == tid), None)
    if rec is None or rec["done"] is None:
        return rec
    st.transfers = [t for t in st.transfers if t is not rec]
    st.transfer_log.append({"guest": rec.get("guest", ""), "op": rec.get("op", ""), "res": rec["res"],
                            "mb": rec["mb"], "start": rec["start"], "end": rec["done"],
                            "dirty": rec["dirty"], "pid": rec.get("pid", 0)})
    del st.transfer_log[:-TRANSFER_LOG_LIMIT]
    return rec


def apply_transitions(st: HostState, now: float) -> bool:
    """Apply what is due at `now`; True if anything changed."""
    changed = False
    if st.transfers:
        advance_ledger(st, now)
        changed = True
    for dom in list(st.domains):
        if dom.busy and not _pid_alive(int(dom.busy.get("pid", 0))):
            if dom.busy.get("argv"):  # killed (the watchdog's SIGKILL): it never recorded itself
                st.history.append({"t": dom.busy.get("t"), "end": round(now, 3), "argv": dom.busy["argv"],
                                   "rc": None, "killed": True})
            abort_busy(st, dom, died=True)
            changed = True
            if dom not in st.domains:
                continue
        if dom.ready_at is not None and now >= dom.ready_at:
            dom.ready_at = None
            dom.flags = dom.ready_flags
            dom.cpu_time_at = now
            changed = True
        if dom.gone_at is not None and now >= dom.gone_at:
            dom.gone_at = None
            changed = True
            if dom.gone_as == "zombie":
                dom.cpu_time = dom.cpu_time_now(now)
                make_zombie(dom)
            elif not dom.monitor:  # powered off, and no toolstack process left to destroy it
                dom.cpu_time = dom.cpu_time_now(now)
                dom.cpu_time_at = now
                dom.flags = POWERED_OFF_FLAGS
            else:
                st.remove(dom)
    return changed


ZOMBIE_FLAGS = "--p--d"
#: a guest that powered off and that nobody destroyed (no monitor): shut down, reason poweroff
POWERED_OFF_FLAGS = "---s--"
#: what `xl list` prints for a domain whose name XenStore no longer holds (a dying one)
NAMELESS = "(null)"


def make_zombie(dom: SimDomain) -> None:
    """Dying, held by something outside the toolstack (a mapped page): as real Xen 4.17 lists it,
    `(null)  ID  0  VCPUS  --p--d` (tests/fixtures/xen/real-4.17/xl_list_zombie) — paused, no memory
    of its own left, its vCPUs still counted, and no name or stored config (libxl removed its XenStore
    entries and its userdata before the destroy hypercall).  The state keeps its name for the tests."""
    dom.flags = ZOMBIE_FLAGS
    dom.current_kib = 0


def xl_name(dom: SimDomain) -> str:
    """The name `xl` shows: "(null)" once the domain is dying (its XenStore entries are gone)."""
    return NAMELESS if dom.dying else dom.name


# -- files ------------------------------------------------------------------------------


def state_path(state_dir: str | os.PathLike[str]) -> Path:
    """The JSON state file (replaced atomically on each change)."""
    from pathlib import Path  # here: pathlib costs every simulated xl process ~3 ms at import

    return Path(state_dir) / STATE_FILE


def _read_text(state_dir: str) -> str | None:
    try:
        with open(os.path.join(state_dir, STATE_FILE), encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _read(state_dir: str) -> HostState | None:
    text = _read_text(state_dir)
    return None if text is None else decode(text)


def _write(state_dir: str, st: HostState, text: str | None = None) -> None:
    text = encode(st) if text is None else text
    # (not tempfile.mkstemp: importing tempfile costs every simulated xl process ~9 ms; writers hold
    # the state lock, so the pid makes the name unique, and O_EXCL refuses a stale one)
    tmp = os.path.join(state_dir, f".state.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fchmod(fd, 0o644)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(state_dir, STATE_FILE))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fresh_state(fast: bool = False) -> HostState:
    st = HostState()
    st.domains = [make_dom0()]
    if fast:
        st.latency = {**DEFAULT_LATENCY, **FAST_LATENCY}
        st.rate = {**DEFAULT_RATE, **FAST_RATE}
    return st


def init_state(state_dir: str | os.PathLike[str], fast: bool = False) -> Path:
    """Create the state directory with a fresh host (dom0 only) unless it already has one."""
    from pathlib import Path

    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    fd = _lock(str(d))
    try:
        if not (d / STATE_FILE).exists():
            _write(str(d), fresh_state(fast))
    finally:
        os.close(fd)
    return d


def _lock(state_dir: str) -> int:
    """Take the state lock; closing the returned descriptor releases it."""
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


class transaction:  # noqa: N801 - used as a function: `with host.transaction(d) as st:`
    """The host state under the exclusive lock; written back atomically if it changed.

    A class rather than a contextlib.contextmanager generator: contextlib costs every
    simulated xl process ~3 ms at import.  An exception in the body writes nothing.
    """

    __slots__ = ("_dir", "_fd", "_before", "_state")

    def __init__(self, state_dir: str | os.PathLike[str]):
        self._dir = os.fspath(state_dir)
        self._fd = -1
        self._before = ""
        self._state = None

    def __enter__(self) -> HostState:
        d = self._dir
        if not os.path.isdir(d):
            raise FileNotFoundError(f"simulator state directory {d} does not exist (run `xdsim --state {d} init`)")
        self._fd = _lock(d)
        try:
            text = _read_text(d)
            # the file is always written by encode(), so its text is what encode() gives for it unchanged
            self._before = text or ""
            st = decode(text) if text is not None else fresh_state()
            apply_transitions(st, time.time())
        except BaseException:
            os.close(self._fd)
            raise
        self._state = st
        return st

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                after = encode(self._state)
                if after != self._before:
                    _write(self._dir, self._state, after)
        finally:
            os.close(self._fd)
            self._state = None


def load(state_dir: str | os.PathLike[str]) -> HostState:
    """A private copy of the state with due transitions applied (no lock, no write)."""
    st = _read(os.fspath(state_dir)) or fresh_state()
    apply_transitions(st, time.time())
    return st


# -- read-only snapshot (views.py: frozen dataclasses, imported only by readers) ----------------------


def snapshot_of(st: HostState, now: float) -> HostSnapshot:
    from .views import snapshot_of as _snapshot_of

    return _snapshot_of(st, now)


def load_snapshot(state_dir: str | os.PathLike[str]) -> HostSnapshot:
    """Read-only view of the host with due transitions applied in memory."""
    now = time.time()
    st = _read(os.fspath(state_dir)) or fresh_state()
    apply_transitions(st, now)
    return snapshot_of(st, now)


def __getattr__(name: str):
    # host.DomainView and host.HostSnapshot stay importable from here without costing the xl shim
    if name in ("DomainView", "HostSnapshot"):
        from . import views

        return getattr(views, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def c_float_seconds(seconds: float) -> float:
    """CPU time as xl prints it: nanoseconds through a C float, then / 1e9."""
    import struct

    ns = float(int(seconds * 1e9))
    return struct.unpack("f", struct.pack("f", ns))[0] / 1e9
