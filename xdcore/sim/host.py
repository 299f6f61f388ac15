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

import contextlib
import fcntl
import json
import os
import struct
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

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
OPS = ("create", "restore", "save", "migrate", "shutdown", "destroy", "sysrq")

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


@dataclass
class SimDomain:
    """One domain of the simulated hypervisor (mutable, lives only inside a transaction)."""

    domid: int
    name: str
    uuid: str
    domain_type: str = "pv"
    memory_kib: int = 0  # balloon target (memory/target)
    maxmem_kib: int = 0  # memory/static-max
    current_kib: int = 0  # tot_pages * 4: what `xl list` shows
    vcpus: int = 1  # max
    online_vcpus: int = 1
    cpu_time: float = 0.0  # seconds, at cpu_time_at
    cpu_time_at: float = 0.0
    cpu_rate: float = 0.0  # CPU seconds gained per second while not paused/dying
    flags: str = "-b----"
    start_time: float = 0.0
    config_path: str | None = None
    userdata: dict | None = None  # stored libxl JSON; None: left out of `xl list -l`
    devices_in_xenstore: bool = True
    xs_domain: bool = False  # a xenstore stub domain (never_stop)
    ready_at: float | None = None  # paused while being built until then
    ready_flags: str = "-b----"
    gone_at: float | None = None  # shutdown completes then
    gone_as: str = "destroy"  # "destroy" (vanish) or "zombie" (stay dying)
    busy: dict | None = None  # {"op", "pid", "prev_flags", "prev_name"} during save/migrate/…

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


@dataclass
class Fault:
    op: str
    guest: str  # name, domid, or "*"
    kind: str
    seconds: float = 0.0

    def matches(self, op: str, name: str, domid: int | None) -> bool:
        return self.op in (op, "*") and self.guest in ("*", name, str(domid))


@dataclass
class HostState:
    """Everything in state.json."""

    version: int = FORMAT_VERSION
    next_domid: int = 1
    total_memory_mib: int = 16384
    reserved_mib: int = 0  # memory Xen itself holds: free = total - reserved - domains
    info: dict = field(default_factory=dict)  # overrides of `xl info` lines
    domains: list[SimDomain] = field(default_factory=list)
    latency: dict = field(default_factory=lambda: dict(DEFAULT_LATENCY))
    rate: dict = field(default_factory=lambda: dict(DEFAULT_RATE))
    faults: list[Fault] = field(default_factory=list)
    targets: dict = field(default_factory=dict)  # host -> [received guest records]
    history: list = field(default_factory=list)  # [{"t", "argv", "rc"}] of state-changing commands

    # -- queries -----------------------------------------------------------------

    def by_id(self, domid: int) -> SimDomain | None:
        return next((d for d in self.domains if d.domid == domid), None)

    def by_name(self, name: str) -> SimDomain | None:
        return next((d for d in self.domains if d.name == name), None)

    def lat(self, op: str) -> float:
        return float(self.latency.get(op, DEFAULT_LATENCY.get(op, 0.0)))

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
    import uuid  # here: costs every simulated xl process ~2 ms at import, and only creates need it

    return str(uuid.uuid4())


# -- (de)serialisation ------------------------------------------------------------


def _from_dict(cls, data: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def decode(text: str) -> HostState:
    raw = json.loads(text)
    st = _from_dict(HostState, raw)
    st.domains = [_from_dict(SimDomain, d) for d in raw.get("domains", [])]
    st.faults = [_from_dict(Fault, f) for f in raw.get("faults", [])]
    st.latency = {**DEFAULT_LATENCY, **raw.get("latency", {})}
    st.rate = {**DEFAULT_RATE, **raw.get("rate", {})}
    return st


def encode(st: HostState) -> str:
    # Every simulated xl process encodes the state a few times (a transaction compares before and
    # after), so this is on the benchmarks' hot path: no asdict (a deep copy; the dataclasses hold
    # only JSON values besides the SimDomain and Fault lists) and compact separators, which let json
    # use its C encoder (indent= forces the pure-Python one).  Together ~20x cheaper with 64 guests.
    # Read it with `xdsim list` or `python -m json.tool state.json`.
    raw = _fields_of(st)
    raw["domains"] = [_fields_of(d) for d in st.domains]
    raw["faults"] = [_fields_of(f) for f in st.faults]
    return json.dumps(raw, separators=(",", ":")) + "\n"


def _fields_of(obj) -> dict:
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


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


def abort_busy(st: HostState, dom: SimDomain) -> None:
    """Undo a half-done operation whose command died: the guest resumes (or a half-built one goes)."""
    busy = dom.busy or {}
    dom.busy = None
    if busy.get("op") in ("create", "restore"):
        st.remove(dom)
        return
    if busy.get("prev_flags"):
        dom.flags = busy["prev_flags"]
    if busy.get("prev_name"):
        dom.name = busy["prev_name"]


def apply_transitions(st: HostState, now: float) -> bool:
    """Apply what is due at `now`; True if anything changed."""
    changed = False
    for dom in list(st.domains):
        if dom.busy and not _pid_alive(int(dom.busy.get("pid", 0))):
            abort_busy(st, dom)
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
                dom.flags = "-b---d" if dom.vcpus % 2 == 0 else "-----d"
                dom.current_kib = 0
                dom.online_vcpus = 0
            else:
                st.remove(dom)
    return changed


# -- files ------------------------------------------------------------------------------


def state_path(state_dir: str | os.PathLike[str]) -> Path:
    """The JSON state file (replaced atomically on each change)."""
    return Path(state_dir) / STATE_FILE


def _read(state_dir: Path) -> HostState | None:
    try:
        text = state_path(state_dir).read_text()
    except FileNotFoundError:
        return None
    return decode(text)


def _write(state_dir: Path, st: HostState, text: str | None = None) -> None:
    text = encode(st) if text is None else text
    # (not tempfile.mkstemp: importing tempfile costs every simulated xl process ~9 ms; writers hold
    # the state lock, so the pid makes the name unique, and O_EXCL refuses a stale one)
    tmp = str(Path(state_dir) / f".state.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, state_path(state_dir))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d):
        if not state_path(d).exists():
            _write(d, fresh_state(fast))
    return d


@contextlib.contextmanager
def _locked(state_dir: Path):
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def transaction(state_dir: str | os.PathLike[str]):
    """The host state under the exclusive lock; written back atomically if it changed."""
    d = Path(state_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"simulator state directory {d} does not exist (run `xdsim --state {d} init`)")
    with _locked(d):
        st = _read(d)
        before = encode(st) if st is not None else ""
        if st is None:
            st = fresh_state()
        apply_transitions(st, time.time())
        yield st
        after = encode(st)
        if after != before:
            _write(d, st, after)


def load(state_dir: str | os.PathLike[str]) -> HostState:
    """A private copy of the state with due transitions applied (no lock, no write)."""
    st = _read(Path(state_dir)) or fresh_state()
    apply_transitions(st, time.time())
    return st


# -- read-only snapshot --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainView:
    """One domain as a reader sees it at snapshot time."""

    domid: int
    name: str
    uuid: str
    memory_kib: int
    maxmem_kib: int
    current_kib: int
    vcpus: int
    online_vcpus: int
    cpu_time: float
    flags: str
    start_time: float
    domain_type: str
    config_path: str | None
    dying: bool
    shutdown_reason: int | None


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    taken_at: float
    domains: tuple[DomainView, ...]
    total_memory_mib: int
    free_memory_mib: int
    targets: tuple[tuple[str, tuple[str, ...]], ...]


def snapshot_of(st: HostState, now: float) -> HostSnapshot:
    views = tuple(
        DomainView(
            domid=d.domid, name=d.name, uuid=d.uuid, memory_kib=d.memory_kib, maxmem_kib=d.maxmem_kib,
            current_kib=d.current_kib, vcpus=d.vcpus, online_vcpus=d.online_vcpus,
            cpu_time=d.cpu_time_now(now), flags=d.flags, start_time=d.start_time,
            domain_type=d.domain_type, config_path=d.config_path, dying=d.dying,
            shutdown_reason=d.shutdown_code,
        )
        for d in sorted(st.domains, key=lambda d: d.domid)
    )
    targets = tuple((host, tuple(g["name"] for g in guests)) for host, guests in sorted(st.targets.items()))
    return HostSnapshot(now, views, st.total_memory_mib, st.free_memory_mib(), targets)


def load_snapshot(state_dir: str | os.PathLike[str]) -> HostSnapshot:
    """Read-only view of the host with due transitions applied in memory."""
    now = time.time()
    st = _read(Path(state_dir)) or fresh_state()
    apply_transitions(st, now)
    return snapshot_of(st, now)


def c_float_seconds(seconds: float) -> float:
    """CPU time as xl prints it: nanoseconds through a C float, then / 1e9."""
    ns = float(int(seconds * 1e9))
    return struct.unpack("f", struct.pack("f", ns))[0] / 1e9
