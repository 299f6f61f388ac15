"""`xdsim`: drive the simulated Xen host (state, shims, faults, latencies, the demo).

    xdsim --state DIR init [--fast]
    xdsim --state DIR shim BINDIR
    xdsim --state DIR demo [--fast]
    xdsim --state DIR add NAME [--mem MIB] [--vcpus N] [--config FILE] [--state-flags -b----] …
    xdsim --state DIR latency OP SECONDS        (create restore save migrate shutdown ack ack_timeout destroy sysrq list)
    xdsim --state DIR rate save|migrate|restore MBPS   (each operation alone, whatever else runs)
    xdsim --state DIR resource disk MBPS | resource link HOST MBPS   (shared fairly by concurrent operations)
    xdsim --state DIR dirty GUEST MBPS          (pages a guest re-dirties during a live migration)
    xdsim --state DIR transfers                 (finished transfers: guest, resource, MB, simulated start/end)
    xdsim --state DIR fault OP GUEST fail|hang|ignore|zombie|enospc|delay:S
    xdsim --state DIR clear [--latency]
    xdsim --state DIR memory --total MIB [--free MIB]
    xdsim --state DIR list | targets | history [--json]
    xdsim --state DIR pool [add NAME [--memory-mib MIB] [--xen-version V] [--dir D] | name NAME | reach NAME up|down|hang]
    xdsim --state DIR xenstored [--socket PATH]   # a simulated xenstored mirroring the host
    xdsim --state DIR classic start|stop|status [--config FILE]   # the classic upstream script, for comparison
    xdsim --state DIR xl ARGS… | xm ARGS…     (run the simulated tool without a shim)

DIR defaults to $XDSIM_STATE; it must hold a host, except for init, demo and shim.
Every argument is checked (an unknown operation or guest, a negative number:
exit 2, nothing changed) and every change prints one line saying what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import host
from .testing import add_domain, config_of, guest_config_text, write_shims


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xdsim", description="The simulated Xen host for xendomains.")
    p.add_argument("--state", default=os.environ.get("XDSIM_STATE"), help="state directory ($XDSIM_STATE)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("init", help="create a fresh host (dom0 only)")
    s.add_argument("--fast", action="store_true", help="tiny latencies (tests)")
    s = sub.add_parser("shim", help="write xl and xm into BINDIR")
    s.add_argument("bindir")
    s = sub.add_parser("demo", help="lay out a realistic demo host")
    s.add_argument("--fast", action="store_true")
    s = sub.add_parser("add", help="put a running guest on the host")
    s.add_argument("name")
    s.add_argument("--mem", type=int, default=1024, help="MiB")
    s.add_argument("--maxmem", type=int, default=None, help="MiB")
    s.add_argument("--vcpus", type=int, default=1)
    s.add_argument("--config", help="xl config file to create it from (default: one is written)")
    s.add_argument("--state-flags", default="-b----", help="six xl state characters, e.g. -b---d")
    s.add_argument("--domid", type=int)
    s.add_argument("--uuid")
    s.add_argument("--type", default="pvh")
    s.add_argument("--cpu-time", type=float, default=0.0)
    s.add_argument("--no-devices", action="store_true", help="devices missing from xenstore")
    s.add_argument("--userdata", choices=("created", "dryrun", "none"), default="created")
    s = sub.add_parser("latency", help="set an operation's latency")
    s.add_argument("op")
    s.add_argument("seconds", type=float)
    s = sub.add_parser("rate", help="set the transfer rate of save/migrate/restore")
    s.add_argument("op", choices=("save", "migrate", "restore"))
    s.add_argument("mbps", type=float)
    s = sub.add_parser("resource", help="set a shared bandwidth: `disk MBPS` (saves and restores) or "
                                        "`link HOST MBPS` (migrations to HOST); 0 removes it")
    s.add_argument("kind", choices=("disk", "link"))
    s.add_argument("words", nargs="+", metavar="[HOST] MBPS")
    s = sub.add_parser("dirty", help="how fast a guest re-dirties memory during a live migration (MB/s)")
    s.add_argument("guest")
    s.add_argument("mbps", type=float)
    sub.add_parser("transfers", help="show finished and running transfers over the shared resources")
    s = sub.add_parser("fault", help="inject a fault for an operation on a guest (name, domid or *)")
    s.add_argument("op", choices=(*host.OPS, "*"))
    s.add_argument("guest")
    s.add_argument("kind", help="fail|hang|ignore|zombie|enospc|delay:SECONDS")
    s = sub.add_parser("clear", help="remove all faults")
    s.add_argument("--latency", action="store_true", help="also reset latencies and rates to defaults")
    s = sub.add_parser("memory", help="set host memory")
    s.add_argument("--total", type=int)
    s.add_argument("--free", type=int, help="make `xl info` free_memory this many MiB now")
    s = sub.add_parser("ready", help="a guest's agent announces readiness: xenstored writes /local/domain/DOMID/KEY "
                                     "S seconds after it starts (or after now, when it runs already)")
    s.add_argument("guest")
    s.add_argument("when", nargs="+", help="after S | now | never")
    s.add_argument("--key", default="data/ready", help="node under /local/domain/DOMID (default data/ready)")
    s.add_argument("--value", default="1")
    sub.add_parser("list", help="show domains, faults and latencies")
    sub.add_parser("targets", help="show guests received by migration targets")
    s = sub.add_parser("history", help="show the state-changing commands run so far (killed ones too)")
    s.add_argument("--json", action="store_true", help="one JSON object a line instead of the table")
    s = sub.add_parser("pool", help="list the hosts of this host's simulated pool (or add one, name one, cut one off)")
    s.add_argument("action", nargs="?", choices=("add", "name", "reach"))
    s.add_argument("host", nargs="?")
    s.add_argument("reach", nargs="?", choices=("up", "down", "hang"))
    s.add_argument("--memory-mib", type=int, default=65536, help="total memory of an added host")
    s.add_argument("--xen-version", help="Xen version an added host runs, e.g. 4.16 (default: this host's)")
    s.add_argument("--dir", help="state directory of an added host (default DIR/pool/NAME)")
    s = sub.add_parser("xenstored", help="serve the xs_wire protocol mirroring this host (DIR/xenstored.sock)")
    s.add_argument("--socket", help="socket path (default DIR/xenstored.sock)")
    s = sub.add_parser("classic", help="run the classic upstream xendomains script (Debian xen-utils-4.17) on this host")
    s.add_argument("verb", choices=("start", "stop", "restart", "reload", "status"))
    s.add_argument("--config", help="config it sources (default DIR/xendomains.conf)")
    s.add_argument("--bin", help="directory with the xl shim (default DIR/bin)")
    for flavour in ("xl", "xm"):
        s = sub.add_parser(flavour, help=f"run the simulated {flavour}", add_help=False)
        s.add_argument("args", nargs=argparse.REMAINDER)
    return p


class _Bad(Exception):
    """An argument xdsim refuses: printed as `xdsim: CMD: why`, exit 2, nothing changed."""


def _number(value: float, what: str, *, positive: bool = False) -> float:
    """A finite number, at least 0 (above 0 when `positive`), or _Bad naming `what`."""
    import math

    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _Bad(f"{what} must be a {'positive' if positive else 'non-negative'} number, got {value:g}")
    return value


def _fault(op: str, guest: str, kind: str) -> host.Fault:
    seconds = 0.0
    if kind.startswith("delay:"):
        kind, _, value = kind.partition(":")
        try:
            seconds = float(value)
        except ValueError:
            raise _Bad(f"delay:SECONDS needs a number of seconds, got {value!r}") from None
        _number(seconds, "the delay")
    if kind not in host.FAULT_KINDS:
        raise _Bad(f"unknown fault {kind!r} (one of {', '.join(host.FAULT_KINDS)}, delay:S)")
    return host.Fault(op, guest, kind, seconds)


def _guest_exists(st: host.HostState, guest: str) -> bool:
    return any(d.name == guest or str(d.domid) == guest for d in st.domains if d.domid != 0)


def _fmt_fault(f: host.Fault) -> str:
    return f"{f.op} on {f.guest}: {f.kind}" + (f" {f.seconds:g}s" if f.kind == "delay" else "")


def _join_dash_values(argv: list[str]) -> list[str]:
    """`--state-flags -b---d`: argparse would take the value for an option; join it with '='."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--state-flags" and i + 1 < len(argv):
            out.append(f"--state-flags={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


#: verbs that lay out a host where there is none; every other verb needs an existing host
_CREATING = ("init", "demo", "shim")


def main(argv: list[str] | None = None) -> int:
    from ..output import PipeSafeStdout

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(_join_dash_values(argv))
    if not args.state:
        print("xdsim: no state directory: pass --state DIR or set XDSIM_STATE", file=sys.stderr)
        return 2
    sdir = Path(args.state)
    if args.cmd not in _CREATING and not host.state_path(sdir).is_file():
        print(f"xdsim: {args.cmd}: no simulated host in {sdir} (lay one out: xdsim --state {sdir} init, or demo)",
              file=sys.stderr)
        return 2
    stdout = sys.stdout
    sys.stdout = PipeSafeStdout(stdout)  # type: ignore[assignment]  # `xdsim history | head` ends quietly
    try:
        return _main(args, sdir)
    except _Bad as exc:
        print(f"xdsim: {args.cmd}: {exc}; nothing changed", file=sys.stderr)
        return 2
    finally:
        sys.stdout = stdout


def _main(args: argparse.Namespace, sdir: Path) -> int:  # noqa: C901 - one branch per verb
    if args.cmd == "xenstored":
        from .xenstored import main as xenstored_main

        return xenstored_main(["--state", str(sdir)] + (["--socket", args.socket] if args.socket else []))
    if args.cmd == "classic":
        return _run_classic(sdir, args)
    if args.cmd in ("xl", "xm"):
        from .tool import run_command

        return run_command(args.cmd, sdir, args.args, sys.stdout, sys.stderr)
    if args.cmd == "demo":
        from .demo import build_demo, usage_text

        print(usage_text(build_demo(sdir, fast=args.fast)), end="")
        return 0
    host.init_state(sdir, fast=getattr(args, "fast", False))
    if args.cmd == "init":
        print(f"simulated host ready in {sdir}")
    elif args.cmd == "shim":
        for path in write_shims(sdir, args.bindir):
            print(path)
    elif args.cmd == "add":
        _check_add(sdir, args)
        if args.config:
            cfg_path = Path(args.config)
        else:
            cfg_dir = sdir / "configs"
            cfg_dir.mkdir(exist_ok=True)
            cfg_path = cfg_dir / f"{args.name}.cfg"
            cfg_path.write_text(guest_config_text(args.name, args.mem, args.vcpus, args.type, args.maxmem,
                                                  args.uuid))
        config = config_of(cfg_path)
        config["c_info"]["name"] = args.name
        domid = add_domain(sdir, config, config_path=str(cfg_path.resolve()), flags=args.state_flags,
                           domid=args.domid, cpu_time=args.cpu_time,
                           memory_mib=args.mem if not args.config else None, userdata=args.userdata,
                           devices_in_xenstore=not args.no_devices)
        print(domid)
    elif args.cmd == "latency":
        if args.op not in host.DEFAULT_LATENCY:
            raise _Bad(f"unknown operation {args.op!r} (one of {', '.join(host.DEFAULT_LATENCY)})")
        _number(args.seconds, "SECONDS")
        with host.transaction(sdir) as st:
            was = st.lat(args.op)
            st.latency[args.op] = args.seconds
        print(f"latency {args.op}: {args.seconds:g}s (was {was:g}s)")
    elif args.cmd == "rate":
        _number(args.mbps, "MBPS")
        with host.transaction(sdir) as st:
            was = float(st.rate.get(args.op, 0.0) or 0.0)
            st.rate[args.op] = args.mbps
        how = lambda v: f"{v:g} MB/s" if v > 0 else "unlimited (0)"  # noqa: E731
        print(f"rate {args.op}: {how(args.mbps)} (was {how(was)})")
    elif args.cmd == "resource":
        return _set_resource(sdir, args.kind, args.words)
    elif args.cmd == "dirty":
        _number(args.mbps, "MBPS")
        with host.transaction(sdir) as st:  # by name: may be set before the guest is created or restored
            st.dirty[args.guest] = args.mbps
            running = _guest_exists(st, args.guest)
        print(f"dirty {args.guest}: {args.mbps:g} MB/s re-dirtied during a live migration"
              + ("" if running else " (not running now)"))
    elif args.cmd == "transfers":
        st = host.load(sdir)
        for entry in st.transfer_log:
            print(json.dumps(entry))
        for t in st.transfers:
            print(json.dumps({k: t[k] for k in ("guest", "op", "res", "mb", "start", "left", "done") if k in t}
                             | {"running": True}))
    elif args.cmd == "fault":
        fault = _fault(args.op, args.guest, args.kind)
        with host.transaction(sdir) as st:
            # create and restore faults name guests that do not run yet; every other operation acts on one that does
            if args.guest != "*" and args.op not in ("create", "restore") and not _guest_exists(st, args.guest):
                raise _Bad(f"no guest {args.guest!r} on this host (a name, a domid or *; "
                           "create and restore faults may name a guest that is not running)")
            old = [f for f in st.faults if f.op == fault.op and f.guest == fault.guest]
            st.faults = [f for f in st.faults if not (f.op == fault.op and f.guest == fault.guest)]
            st.faults.append(fault)
        print(f"fault {_fmt_fault(fault)}" + (f" (replaces {old[0].kind})" if old else ""))
    elif args.cmd == "clear":
        with host.transaction(sdir) as st:
            n = len(st.faults)
            st.faults = []
            if args.latency:
                st.latency = dict(host.DEFAULT_LATENCY)
                st.rate = dict(host.DEFAULT_RATE)
        print(f"cleared {n} fault{'' if n == 1 else 's'}" + ("; latencies and rates back to defaults" if args.latency else ""))
    elif args.cmd == "memory":
        if args.total is None and args.free is None:
            raise _Bad("give --total MIB and/or --free MIB")
        if args.total is not None:
            _number(args.total, "--total", positive=True)
        if args.free is not None:
            _number(args.free, "--free")
        with host.transaction(sdir) as st:
            if args.total is not None:
                st.total_memory_mib = args.total
            if args.free is not None:
                used = sum(d.current_kib for d in st.domains) // 1024
                if args.free > st.total_memory_mib - used:
                    raise _Bad(f"--free {args.free} MiB is more than the {st.total_memory_mib - used} MiB"
                               " the guests leave of the host's memory")
                st.reserved_mib = max(0, st.total_memory_mib - used - args.free)
            total, free = st.total_memory_mib, st.free_memory_mib()
        print(f"memory: total {total} MiB, free {free} MiB")
    elif args.cmd == "ready":
        when = args.when
        if when == ["now"]:
            after = 0.0
        elif len(when) == 2 and when[0] == "after":
            try:
                after = float(when[1])
            except ValueError:
                print(f"xdsim ready: not a number of seconds: {when[1]!r}", file=sys.stderr)
                return 2
            _number(after, "the seconds after")
        elif when != ["never"]:
            print("xdsim ready: say `after S`, `now` or `never`", file=sys.stderr)
            return 2
        with host.transaction(sdir) as st:
            if when == ["never"]:
                st.ready.pop(args.guest, None)
            else:
                st.ready[args.guest] = {"after": after, "set_at": __import__("time").time(), "key": args.key,
                                        "value": args.value}
        print(f"ready {args.guest}: " + ("never" if when == ["never"] else f"after {after:g}s"))
    elif args.cmd == "list":
        st = host.load(sdir)
        snap = host.snapshot_of(st, __import__("time").time())
        for d in snap.domains:
            print(f"{d.domid:>5} {d.name:<32} {d.current_kib // 1024:>6} MiB {d.online_vcpus:>2} vCPUs {d.flags}")
        print(f"memory: total {snap.total_memory_mib} MiB, free {snap.free_memory_mib} MiB")
        for f in st.faults:
            print(f"fault: {f.op} {f.guest} {f.kind}{':%g' % f.seconds if f.kind == 'delay' else ''}")
        for name, rule in sorted(st.ready.items()):
            print(f"ready: {name} writes {rule.get('key', 'data/ready')}={rule.get('value', '1')} "
                  f"{float(rule.get('after', 0)):g}s after it starts")
        print("latency: " + ", ".join(f"{k}={v:g}s" for k, v in st.latency.items()))
        print("rate: " + ", ".join(f"{k}={v:g}MB/s" for k, v in st.rate.items()))
        if st.resources:
            print("shared: " + ", ".join(f"{k}={v:g}MB/s" for k, v in sorted(st.resources.items())))
        if st.dirty:
            print("dirty: " + ", ".join(f"{k}={v:g}MB/s" for k, v in sorted(st.dirty.items())))
    elif args.cmd == "targets":
        st = host.load(sdir)
        for target, guests in sorted(st.targets.items()):
            for g in guests:
                print(f"{target}\t{g['name']}\t{g['memory_mib']} MiB\t{g.get('vcpus', '')} vCPUs")
    elif args.cmd == "pool":
        return _pool(sdir, args)
    elif args.cmd == "history":
        entries = host.load(sdir).history
        if args.json:
            for entry in entries:
                print(json.dumps(entry))
        else:
            _print_history(entries)
    return 0


def _check_add(sdir: Path, args: argparse.Namespace) -> None:
    """Refuse what `xl` could never show: sizes below 1, a duplicate name or domid, bad state flags."""
    import re

    if not args.name or args.name == "Domain-0" or "/" in args.name:
        raise _Bad(f"a guest name cannot be {args.name!r}")
    _number(args.mem, "--mem", positive=True)
    _number(args.vcpus, "--vcpus", positive=True)
    _number(args.cpu_time, "--cpu-time")
    if args.maxmem is not None and args.maxmem < args.mem:
        raise _Bad(f"--maxmem {args.maxmem} is below --mem {args.mem}")
    if not re.fullmatch(r"[r-][b-][p-][s-][c-][d-]", args.state_flags):
        raise _Bad(f"--state-flags must be six characters like -b---- (r b p s c d or -), got {args.state_flags!r}")
    if args.config and not Path(args.config).is_file():
        raise _Bad(f"--config {args.config}: no such file")
    st = host.load(sdir)
    if any(d.name == args.name for d in st.domains):
        raise _Bad(f"a guest named {args.name!r} is already on this host")
    if args.domid is not None and (args.domid < 1 or any(d.domid == args.domid for d in st.domains)):
        raise _Bad(f"--domid {args.domid} is {'taken' if args.domid >= 1 else 'not a guest domid (1 or more)'}")


def _print_history(entries: list[dict]) -> None:
    """The state-changing commands as a table: when, how long, how it ended, what."""
    import time as _time

    rows = [("started", "took", "result", "command")]
    for e in entries:
        t = e.get("t")
        when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(t)) if isinstance(t, (int, float)) else "?"
        end = e.get("end")
        took = f"{end - t:.2f}s" if isinstance(end, (int, float)) and isinstance(t, (int, float)) else "?"
        if e.get("killed"):
            result = "killed"
        elif e.get("rc") is None:
            result = "?"
        else:
            result = "ok" if e["rc"] == 0 else f"exit {e['rc']}"
        rows.append((when, took, result, " ".join(str(a) for a in e.get("argv", []))))
    if len(rows) == 1:
        print("no state-changing command yet")
        return
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")


def _set_resource(sdir: Path, kind: str, words: list[str]) -> int:
    from . import physics

    want = 2 if kind == "link" else 1
    if len(words) != want:
        print(f"xdsim: resource {kind}: expected {'HOST MBPS' if kind == 'link' else 'MBPS'}, got {' '.join(words)!r}",
              file=sys.stderr)
        return 2
    try:
        mbps = float(words[-1])
    except ValueError:
        mbps = -1.0
    if not (mbps >= 0 and mbps != float('inf')):
        print(f"xdsim: resource {kind}: MBPS must be a number of MB/s (0 removes it), got {words[-1]!r}",
              file=sys.stderr)
        return 2
    name = physics.link(words[0]) if kind == "link" else physics.DISK
    with host.transaction(sdir) as st:
        host.advance_ledger(st, __import__("time").time())  # what ran so far ran at the old rate
        was = float(st.resources.get(name) or 0.0)
        if mbps > 0:
            st.resources[name] = mbps
        else:
            st.resources.pop(name, None)
    how = lambda v: f"{v:g} MB/s, shared" if v > 0 else "not shared"  # noqa: E731
    print(f"resource {name}: {how(mbps)} (was {how(was)})")
    return 0


def _pool(sdir: Path, args: argparse.Namespace) -> int:
    from . import pool

    try:
        if args.action == "add":
            if not args.host:
                raise ValueError("pool add needs a host name")
            mdir = pool.add_member(sdir, args.host, args.memory_mib, args.dir, args.xen_version)
            print(f"{args.host}: simulated host in {mdir} (shims in {mdir}/bin)")
            return 0
        if args.action == "name":
            if not args.host:
                raise ValueError("pool name needs a host name")
            pool.rename_self(sdir, args.host)
            return 0
        if args.action == "reach":
            if not args.host or not args.reach:
                raise ValueError("pool reach needs a host name and up, down or hang")
            pool.set_reach(sdir, args.host, args.reach)
            return 0
    except ValueError as exc:
        print(f"xdsim: {exc}", file=sys.stderr)
        return 2
    registry = pool.registry_of(sdir)
    members = pool.read(registry) or {pool.host_name(host.load(sdir)): {"state": str(sdir.resolve()), "reach": "up"}}
    for name, entry in sorted(members.items()):
        snap = host.load_snapshot(entry["state"])
        guests = [d.name for d in snap.domains if d.domid != 0]
        reach = "" if entry.get("reach", "up") == "up" else f" [{entry['reach']}]"
        xen = host.load(entry["state"]).info.get("xen_version") or host.DEFAULT_INFO["xen_version"]
        print(f"{name}{reach}\t{entry['state']}\tXen {xen}\tfree {snap.free_memory_mib} of {snap.total_memory_mib} MiB\t"
              f"{len(guests)} guest{'' if len(guests) == 1 else 's'}: {' '.join(guests) or '-'}")
    return 0


def _run_classic(sdir: Path, args: argparse.Namespace) -> int:
    """The classic script, fetched once from Debian and pointed at this host, run with `verb`."""
    import subprocess

    from .classic import ClassicUnavailable, classic_env, fetch_classic, prepare_classic

    conf = Path(args.config) if args.config else sdir / "xendomains.conf"
    bindir = Path(args.bin) if args.bin else sdir / "bin"
    for what, path in (("config", conf), ("xl shim", bindir / "xl")):
        if not path.exists():
            print(f"xdsim: classic: no {what} at {path} (lay out a host with `xdsim --state DIR demo`)", file=sys.stderr)
            return 2
    try:
        original = fetch_classic()
    except ClassicUnavailable as exc:
        print(f"xdsim: classic: {exc}", file=sys.stderr)
        return 1
    lock_dir = sdir / "lock"
    lock_dir.mkdir(parents=True, exist_ok=True)
    script = prepare_classic(original, sdir / "classic-xendomains", bindir=bindir.resolve(), config=conf.resolve(),
                             lock_dir=lock_dir.resolve())
    env = classic_env(bindir.resolve()) | {"XDSIM_STATE": str(sdir.resolve())}
    return subprocess.run(["bash", str(script), args.verb], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
