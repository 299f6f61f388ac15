"""A pool of simulated hosts: several state directories that reach one another by name.

Standalone Xen hosts reach each other over ssh: `xl migrate GUEST xen02`
runs `ssh xen02 xl migrate-receive`, and an administrator asks a peer
`ssh xen02 xl info`.  The simulator stands for that with a registry — one
small JSON file, ``pool.json`` in the first host's state directory — that
maps host names to state directories, and with an `ssh` shim beside the
`xl` shim that looks the name up and runs that host's simulated `xl`.

Every member's state records the registry's path (`HostState.pool`), so any
member can migrate onto any other (a rolling drain evacuates each in turn).
A member can be made unreachable (`down`: ssh fails at once, as with "No
route to host") or hanging (`hang`: ssh connects and never answers, what a
watchdog must catch).

Kept cheap to import: `xl migrate` and the ssh shim load it.
"""

from __future__ import annotations

import fcntl
import os

from . import fastjson, host

REGISTRY = "pool.json"
REACH = ("up", "down", "hang")


def registry_path(state_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.path.abspath(os.fspath(state_dir)), REGISTRY)


def read(registry: str | None) -> dict[str, dict]:
    """name -> {"state": DIR, "reach": up|down|hang}; {} when there is no registry."""
    if not registry:
        return {}
    try:
        with open(registry, encoding="utf-8") as fh:
            return dict(fastjson.loads(fh.read()).get("hosts", {}))
    except (FileNotFoundError, ValueError):
        return {}


def _write(registry: str, hosts: dict[str, dict]) -> None:
    tmp = f"{registry}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(fastjson.dumps_compact({"hosts": hosts}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, registry)


class _locked:  # noqa: N801 - `with _locked(registry) as hosts:` edits the registry under its lock
    def __init__(self, registry: str):
        self.registry = registry
        self.fd = -1
        self.hosts: dict[str, dict] = {}

    def __enter__(self) -> dict[str, dict]:
        self.fd = os.open(self.registry + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.hosts = read(self.registry)
        return self.hosts

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                _write(self.registry, self.hosts)
        finally:
            os.close(self.fd)


def host_name(st: host.HostState) -> str:
    return str(st.info.get("host") or host.DEFAULT_INFO["host"])


def registry_of(state_dir: str | os.PathLike[str]) -> str | None:
    """The registry a host belongs to (None: not in a pool)."""
    return host.load(state_dir).pool


def ensure_pool(state_dir: str | os.PathLike[str]) -> str:
    """Make the host in state_dir the first member of a pool (if it is in none); the registry path."""
    sdir = os.path.abspath(os.fspath(state_dir))
    with host.transaction(sdir) as st:
        if st.pool:
            return st.pool
        st.pool = registry_path(sdir)
        name = host_name(st)
    with _locked(st.pool) as hosts:
        hosts.setdefault(name, {"state": sdir, "reach": "up"})
    return registry_path(sdir)


def xen_info(version: str) -> dict[str, str]:
    """The `xl info` lines of a Xen version "4.16" or "4.16.5" (xen_major, xen_minor, xen_extra, xen_version)."""
    import re

    m = re.fullmatch(r"(\d+)\.(\d+)((?:\.\d+)?(?:[-+~.]\w[\w.+~-]*)?)", version.strip())
    if m is None:
        raise ValueError(f"a Xen version is MAJOR.MINOR[.EXTRA], e.g. 4.16 or 4.17.7, not {version!r}")
    major, minor, extra = m.group(1), m.group(2), m.group(3) or ".0"
    return {"xen_major": str(int(major)), "xen_minor": str(int(minor)), "xen_extra": extra,
            "xen_version": f"{int(major)}.{int(minor)}{extra}"}


def add_member(state_dir: str | os.PathLike[str], name: str, memory_mib: int, member_dir: str | None = None,
               xen_version: str | None = None) -> str:
    """Create host `name` beside the one in state_dir: its own state, shims (xl, xm, ssh) and directories.

    xen_version: the Xen it runs ("4.16"; default the first host's), as its `xl info` says it."""
    from .testing import make_host

    xen = xen_info(xen_version) if xen_version else {}
    registry = ensure_pool(state_dir)
    hosts = read(registry)
    if name in hosts:
        raise ValueError(f"host {name} is already in the pool (state {hosts[name]['state']})")
    first = host.load(state_dir)
    mdir = os.path.abspath(member_dir or os.path.join(os.path.dirname(registry), "pool", name))
    if os.path.exists(os.path.join(mdir, host.STATE_FILE)):
        raise ValueError(f"{mdir} already holds a simulated host")
    make_host(mdir, guests=(), fast=False)
    with host.transaction(mdir) as st:
        st.total_memory_mib = int(memory_mib)
        st.reserved_mib = first.reserved_mib
        st.latency = dict(first.latency)
        st.rate = dict(first.rate)
        st.info = {**first.info, **xen, "host": name}
        st.pool = registry
    with _locked(registry) as reg:
        reg[name] = {"state": mdir, "reach": "up"}
    return mdir


def rename_self(state_dir: str | os.PathLike[str], name: str) -> None:
    """Give the host in state_dir its pool name (`xl info` host), in its state and the registry."""
    sdir = os.path.abspath(os.fspath(state_dir))
    with host.transaction(sdir) as st:
        old = host_name(st)
        st.info["host"] = name
        registry = st.pool
    if registry:
        with _locked(registry) as reg:
            entry = reg.pop(old, None) or {"state": sdir, "reach": "up"}
            if name in reg and reg[name]["state"] != sdir:
                raise ValueError(f"host {name} is already in the pool (state {reg[name]['state']})")
            reg[name] = entry


def set_reach(state_dir: str | os.PathLike[str], name: str, reach: str) -> None:
    if reach not in REACH:
        raise ValueError(f"reachability is one of {', '.join(REACH)}")
    registry = registry_of(state_dir)
    with _locked(registry or ensure_pool(state_dir)) as reg:
        if name not in reg:
            raise ValueError(f"no host {name} in the pool")
        reg[name]["reach"] = reach


def lookup(registry: str | None, name: str) -> dict | None:
    """The registry entry of `name` (a `user@` prefix is ignored), or None."""
    return read(registry).get(name.rpartition("@")[2])


# -- the ssh shim --------------------------------------------------------------------------------

#: OpenSSH options that take an argument (ssh.c getopt string "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:PQ:R:S:TVw:W:XYy")
_SSH_ARG = set("bceilmopBDEFIJLOQRSwW")


def ssh_main(state_dir: str, argv: list[str]) -> int:
    """`ssh [OPTIONS] HOST COMMAND…` on a simulated host: runs COMMAND (xl/xm) on the pool member HOST."""
    import shlex
    import sys
    import time

    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        word = argv[i]
        i += 1
        for j, c in enumerate(word[1:], 1):
            if c in _SSH_ARG:
                if j == len(word) - 1:
                    i += 1  # the argument is the next word
                break
    if i >= len(argv):
        sys.stderr.write("usage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] [-p port] destination [command [argument ...]]\n")
        return 255
    target, command = argv[i], argv[i + 1 :]
    name = target.rpartition("@")[2]
    entry = lookup(host.load(state_dir).pool, name)
    if entry is None:
        sys.stderr.write(f"ssh: Could not resolve hostname {name}: Name or service not known\n")
        return 255
    if entry.get("reach") == "down":
        sys.stderr.write(f"ssh: connect to host {name} port 22: No route to host\n")
        return 255
    if entry.get("reach") == "hang":
        while True:
            time.sleep(3600.0)
    words = shlex.split(" ".join(command))  # the remote shell splits the joined words again
    if not words:
        sys.stderr.write(f"xdsim: ssh {name}: an interactive login is not simulated\n")
        return 255
    if os.path.basename(words[0]) not in ("xl", "xm"):
        sys.stderr.write(f"bash: line 1: {words[0]}: command not found\n")
        return 127
    from .tool import run_command

    return run_command(os.path.basename(words[0]), entry["state"], words[1:], sys.stdout, sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry of the ssh shim: ``main(['--state', DIR, *ssh_argv])``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["--state"] or len(args) < 2:
        sys.stderr.write("usage: python -m xdcore.sim.pool --state DIR SSH-ARGS...\n")
        return 2
    try:
        return ssh_main(args[1], args[2:])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    import sys

    sys.exit(main())
