"""The simulated `xl`: subcommands, output formats, messages and exit codes of xl 4.17.

Every text here is the real one where xen-reference.md or the fixtures show
it verbatim (list, list -l/-v, info, create --dryrun, shutdown, save,
restore, migrate messages, option errors).  Commands are generators (see
runtime.py): they wait by yielding seconds and never sleep while holding
the state lock.  Faults (host.Fault) and latencies come from the state.
"""

from __future__ import annotations

import os
import time

from . import host
from .runtime import HANG, Run, getopt
from .simerrors import SimExit

# The config language (xlcfg, domconfig), save images (images), JSON output (yajl) and XenStore
# (xsbridge) are imported by the subcommands that use them: each simulated xl process runs one
# subcommand, and `xl list` or `xl shutdown` should not pay for the config parser's imports.

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .runtime import Command

# -- command table (xl_cmdtable.c order; only some are simulated) ----------------------

CMD_NAMES = [
    "create", "config-update", "list", "destroy", "shutdown", "reboot", "pci-attach", "pci-detach",
    "pci-list", "pci-assignable-add", "pci-assignable-remove", "pci-assignable-list", "pause", "unpause",
    "console", "vncviewer", "save", "migrate", "restore", "migrate-receive", "dump-core", "cd-insert",
    "cd-eject", "mem-max", "mem-set", "button-press", "vcpu-list", "vcpu-pin", "vcpu-set", "vm-list",
    "info", "sharing", "sched-credit", "sched-credit2", "sched-rtds", "domid", "domname", "rename",
    "trigger", "sysrq", "debug-keys", "set-parameters", "dmesg", "top", "network-attach", "network-list",
    "network-detach", "channel-list", "block-attach", "block-list", "block-detach", "vtpm-attach",
    "vtpm-list", "vtpm-detach", "vdispl-attach", "vdispl-list", "vdispl-detach", "vsnd-attach",
    "vsnd-list", "vsnd-detach", "vkb-attach", "vkb-list", "vkb-detach", "uptime", "claims",
    "cpupool-create", "cpupool-list", "cpupool-destroy", "cpupool-rename", "cpupool-cpu-add",
    "cpupool-cpu-remove", "cpupool-migrate", "cpupool-numa-split", "getenforce", "setenforce",
    "loadpolicy", "remus", "devd", "psr-hwinfo", "psr-cmt-attach", "psr-cmt-detach", "psr-cmt-show",
    "psr-cat-set", "psr-cat-show", "psr-mba-set", "psr-mba-show", "usbctrl-attach", "usbctrl-detach",
    "usbdev-attach", "usbdev-detach", "usb-list", "qemu-monitor-command",
]

# name: (usage, description, options text, modifies, can_dryrun)
HELP = {
    "create": ("[options] <ConfigFile> [options] [vars]", "Create a domain from config file <filename>",
               "-h                      Print this help.\n"
               "-p                      Leave the domain paused after it is created.\n"
               "-c                      Connect to the console after the domain is created.\n"
               "-f FILE, --defconfig=FILE\n"
               "                        Use the given configuration file.\n"
               "-q, --quiet             Quiet.\n"
               "-n, --dryrun            Dry run - prints the resulting configuration\n"
               "                         (deprecated in favour of global -N option).\n"
               "-d                      Enable debug messages.\n"
               "-F                      Run in foreground until death of the domain.\n"
               "-e                      Do not wait in the background for the death of the domain.\n"
               "-V, --vncviewer         Connect to the VNC display after the domain is created.\n"
               "-A, --vncviewer-autopass\n"
               "                        Pass VNC password to viewer via stdin.\n"
               "-i, --ignore-global-affinity-masks Ignore global masks in xl.conf.\n", True, True),
    "list": ("[options] [Domain]", "List information about all/some domains",
             "-l, --long              Output all VM details\n"
             "-v, --verbose           Prints out UUIDs and security context\n"
             "-Z, --context           Prints out security context\n"
             "-c, --cpupool           Prints the cpupool the domain is in\n"
             "-n, --numa              Prints out NUMA node affinity\n", False, False),
    "destroy": ("[options] <Domain>", "Terminate a domain immediately",
                "-f                      Permit destroying domain 0.\n", True, False),
    "shutdown": ("[options] <-a|Domain>", "Issue a shutdown signal to a domain",
                 "-a, --all               Shutdown all guest domains.\n"
                 "-h                      Print this help.\n"
                 "-F                      Fallback to ACPI power event for HVM guests with\n"
                 "                        no PV drivers.\n"
                 "-w, --wait              Wait for guest(s) to shutdown.\n", True, False),
    "pause": ("<Domain>", "Pause execution of a domain", "", True, False),
    "unpause": ("<Domain>", "Unpause a paused domain", "", True, False),
    "save": ("[options] <Domain> <CheckpointFile> [<ConfigFile>]", "Save a domain state to restore later",
             "-h  Print this help.\n"
             "-c  Leave domain running after creating the snapshot.\n"
             "-p  Leave domain paused after creating the snapshot.\n"
             "-D  Store the domain id in the configration.\n", True, False),
    "migrate": ("[options] <Domain> <host>", "Migrate a domain to another host",
                "-h              Print this help.\n"
                "-C <config>     Send <config> instead of config file from creation.\n"
                "-s <sshcommand> Use <sshcommand> instead of ssh.  String will be passed\n"
                "                to sh. If empty, run <host> instead of ssh <host> xl\n"
                "                migrate-receive [-d -e]\n"
                "-e              Do not wait in the background (on <host>) for the death\n"
                "                of the domain.\n"
                "--debug         Print huge (!) amount of debug during the migration process.\n"
                "-p              Do not unpause domain after migrating it.\n"
                "-D              Preserve the domain id\n", True, False),
    "restore": ("[options] [<ConfigFile>] <CheckpointFile>", "Restore a domain from a saved state",
                "-h                       Print this help.\n"
                "-p                       Do not unpause domain after restoring it.\n"
                "-e                       Do not wait in the background for the death of the domain.\n"
                "-d                       Enable debug messages.\n"
                "-V, --vncviewer          Connect to the VNC display after the domain is created.\n"
                "-A, --vncviewer-autopass Pass VNC password to viewer via stdin.\n", True, False),
    "info": ("[-n|--numa]", "Get information about Xen host",
             "-n, --numa         List host NUMA topology information\n", False, False),
    "domid": ("<DomainName>", "Convert a domain name to domain id", "", False, False),
    "domname": ("<DomainId>", "Convert a domain id to domain name", "", False, False),
    "sysrq": ("<Domain> <letter>", "Send a sysrq to a domain", "", True, False),
}


def usage(cmd: str) -> str:
    usage_text, desc, opts, modifies, dry = HELP[cmd]
    mods = "vtT" + ("f" if modifies else "") + ("N" if dry else "")
    text = f"Usage: xl [-{mods}] {cmd} {usage_text}\n\n{desc}.\n\n"
    if opts:
        text += f"Options:\n\n{opts}\n"
    return text


def _unsupported(c: str) -> SimExit:
    return SimExit(2, f"option `{c}' not supported.\n")


def _opts(run: Run, cmd: str, args: list[str], short: str, longs: dict[str, tuple[str, bool]] | None = None,
          nargs: int = 0) -> tuple[dict[str, list[str]], list[str]]:
    """def_getopt: -h prints help (exit 0), unknown options exit 2, too few arguments exit 2."""
    opts, rest = getopt(args, "h" + short, longs or {}, _unsupported)
    got: dict[str, list[str]] = {}
    for k, v in opts:
        got.setdefault(k, []).append(v)
    if "h" in got:
        raise SimExit(0, stdout=usage(cmd))
    if len(rest) < nargs:
        s = "s" if nargs > 1 else ""
        raise SimExit(2, f"'xl {cmd}' requires at least {nargs} argument{s}.\n\n", stdout=usage(cmd))
    return got, rest


# -- helpers ----------------------------------------------------------------------------


def find_domid(st: host.HostState, arg: str) -> int:
    """xl's find_domain: digits are a domid (unchecked), anything else a name."""
    if arg.isdigit():
        return int(arg)
    dom = by_xl_name(st, arg)
    if dom is None:
        raise SimExit(1, f"{arg} is an invalid domain identifier (rc=-6)\n")
    return dom.domid


def by_xl_name(st: host.HostState, name: str) -> host.SimDomain | None:
    """libxl_name_to_domid: by the name in XenStore, which a dying domain no longer has."""
    return next((d for d in st.domains if d.name == name and not d.dying), None)


def _c_time(seconds: float) -> float:
    return host.c_float_seconds(seconds)


def list_header(verbose: bool = False, context: bool = False, cpupool: bool = False, numa: bool = False) -> str:
    text = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    if verbose:
        text += "   UUID                            Reason-Code\tSecurity Label"
    if context and not verbose:
        text += "   Security Label"
    if cpupool:
        text += "         Cpupool"
    if numa:
        text += " NODE Affinity"
    return text + "\n"


def list_row(d: host.SimDomain, now: float, verbose: bool = False, context: bool = False,
             cpupool: bool = False, numa: bool = False) -> str:
    row = "%-40s %5d %5d %5d     %s  %8.1f" % (
        host.xl_name(d), d.domid, d.current_kib // 1024, d.online_vcpus, d.flags, _c_time(d.cpu_time_now(now)))
    if verbose:
        code = d.shutdown_code
        row += " " + d.uuid
        row += " %8x" % code if code is not None else " %8s" % "-"
        row += " %16s" % "-"
    if context and not verbose:
        row += " %16s" % "-"
    if cpupool:
        row += "%16s" % "Pool-0"
    if numa:
        row += " all"
    return row + "\n"


def retrieved_config(d: host.SimDomain, warnings: list[str]) -> dict:
    from . import domconfig

    assert d.userdata is not None
    return domconfig.retrieve(
        d.userdata, domid=d.domid, name=d.name, uuid=d.uuid, online_vcpus=d.online_vcpus,
        max_kib=d.maxmem_kib, target_kib=d.memory_kib, devices_in_xenstore=d.devices_in_xenstore,
        warnings=warnings)


def info_lines(st: host.HostState) -> list[tuple[str, str]]:
    values = dict(host.DEFAULT_INFO)
    values["total_memory"] = str(st.total_memory_mib)
    values["free_memory"] = str(st.free_memory_mib())
    values.update({k: str(v) for k, v in st.info.items()})
    return list(values.items())


def domain_from_config(st: host.HostState, config: dict, config_path: str | None, now: float,
                       devices_in_xenstore: bool = True) -> host.SimDomain:
    """A new domain as libxl builds it from a domain config (create and restore)."""
    from . import domconfig

    c_info, b_info = config.get("c_info", {}), config.get("b_info", {})
    max_kib = int(b_info.get("max_memkb", 32 * 1024))
    target = int(b_info.get("target_memkb", max_kib))
    vcpus = int(b_info.get("max_vcpus", 1) or 1)
    online = len(b_info.get("avail_vcpus", [])) or vcpus
    return host.SimDomain(
        domid=st.new_domid(), name=c_info["name"], uuid=c_info.get("uuid") or host.new_uuid(),
        domain_type=c_info.get("type", "pv"), memory_kib=target, maxmem_kib=max_kib, current_kib=target,
        vcpus=vcpus, online_vcpus=online, cpu_time=0.0, cpu_time_at=now, cpu_rate=0.02 * online,
        flags="--p---", start_time=now, config_path=config_path, userdata=domconfig.userdata_from(config),
        devices_in_xenstore=devices_in_xenstore,
    )


def _check_new_domain(st: host.HostState, name: str, memory_kib: int, code: int = 3) -> None:
    """create exits 3 (-ERROR_FAIL) when libxl refuses; restore exits 1 on any failure."""
    if by_xl_name(st, name) is not None:
        raise SimExit(code, f'libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain with name "{name}" '
                         "already exists.\n"
                         "libxl: error: libxl_create.c:1256:initiate_domain_create: cannot make domain: -6\n")
    if memory_kib // 1024 > st.free_memory_mib():
        raise SimExit(code, "failed to free memory for the domain\n")


def _check_backends(st: host.HostState, config: dict, domid: int, code: int = 3) -> None:
    """Each device's `backend=` domain must be running: libxl resolves its name when it sets the device's
    defaults, and fails the create when it cannot (a driver domain must start before its clients)."""
    for key, what in (("disks", "disk"), ("nics", "nic")):
        for i, dev in enumerate(config.get(key) or []):
            name = dev.get("backend_domname")
            if not name:
                continue
            b = st.by_name(name)
            if b is None or b.dying:
                raise SimExit(code, f"libxl: error: libxl_create.c:1164:initiate_domain_create: Domain {domid}:"
                                    f"Unable to set {what} defaults for {what} {i}\n"
                                    f"libxl: error: libxl_create.c:1767:domcreate_complete: Domain {domid}:"
                                    "cannot (re-)build domain: -6\n")


def _wait_ready(run: Run, domid: int, op: str, name: str, seconds: float) -> Command:
    """Shared tail of create/restore: wait the build latency, apply faults, unpause unless told not to."""
    with host.transaction(run.state_dir) as st:
        fault = st.fault(op, name, domid)
    if fault and fault.kind == "hang":
        with host.transaction(run.state_dir) as st:
            dom = st.by_id(domid)
            if dom is not None:
                dom.ready_at = None
                dom.busy = run.busy(op)

        def _abort() -> None:
            with host.transaction(run.state_dir) as st2:
                d = st2.by_id(domid)
                if d is not None:
                    st2.remove(d)

        run.on_abort(_abort)
        yield HANG
    if seconds > 0:
        yield seconds
    if fault and fault.kind == "fail":
        with host.transaction(run.state_dir) as st:
            dom = st.by_id(domid)
            if dom is not None:
                st.remove(dom)
        raise SimExit(3, f"libxl: error: libxl_create.c:1676:domcreate_devmodel_started: Domain {domid}:"
                         "device model did not start: -3\n"
                         f"libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain {domid}:"
                         "Non-existant domain\n")
    return 0


#: longest a transfer sleeps before looking at the ledger again (a transfer that left early frees bandwidth)
RECHECK_S = 2.0


def _transfer(run: Run, res: str, guest: str, op: str, mb: float, dirty: float = 0.0,
              on_tick: Callable[[float], None] | None = None) -> Command:
    """Move `mb` MB over the shared resource `res`, fairly sharing it with every other xl doing so.

    The transfer is entered in the host's ledger (other xl processes see it at once and slow down);
    this process sleeps until its predicted completion and checks again, since transfers that
    joined meanwhile push it later.  Killed: the ledger drops it when it notices the dead pid.
    """
    from . import physics

    with host.transaction(run.state_dir) as st:
        now = max(time.time(), st.ledger_at)  # under the lock: the ledger never runs backwards
        tid = f"{run.pid}.{op}.{guest}.{now:.6f}"
        host.advance_ledger(st, now)
        st.transfers.append(physics.new_transfer(tid, res, mb, now, dirty, guest=guest, op=op, pid=run.pid))
        until = physics.predict_done(st.transfers, st.resources, now, tid)

    def _leave() -> None:
        with host.transaction(run.state_dir) as st2:
            st2.transfers = [t for t in st2.transfers if t["id"] != tid]

    run.on_abort(_leave)
    while True:
        wait = until - time.time()
        if wait > 0:
            yield min(wait, RECHECK_S)
        if on_tick is not None:
            on_tick(until)  # real xl save writes progress all along: a dead reader kills it here
        with host.transaction(run.state_dir) as st:
            rec = host.finish_transfer(st, tid)
            if rec is None or rec["done"] is not None:
                break
            until = physics.predict_done(st.transfers, st.resources, st.ledger_at, tid)
    run.done_with(_leave)
    return 0


# -- list / info / domid / domname --------------------------------------------------------


def cmd_list(run: Run, args: list[str]) -> Command:
    got, rest = _opts(run, "list", args, "lvZcn",
                      {"long": ("l", False), "verbose": ("v", False), "context": ("Z", False),
                       "cpupool": ("c", False), "numa": ("n", False)})
    if len(rest) > 1:
        raise SimExit(1, stdout=usage("list"))
    st = host.load(run.state_dir)
    now = time.time()
    doms = sorted(st.domains, key=lambda d: d.domid)
    if rest:
        arg = rest[0]
        domid = find_domid(st, arg)
        doms = [d for d in doms if d.domid == domid]
        if not doms:
            raise SimExit(1, f"Error: Domain '{arg}' does not exist.\n")
    fault = next((f for f in st.faults if f.op == "list"), None)  # a wedged xenstored: `xdsim fault list '*' hang`
    if fault is not None and fault.kind == "hang":
        yield HANG
    if st.lat("list") > 0:
        yield st.lat("list")
    if "l" in got:
        from . import yajl

        items = []
        for d in doms:
            if d.userdata is None or d.dying:  # (libxl destroys the stored config before the domain)
                run.stderr("libxl: error: libxl_domain.c:2335:retrieve_domain_configuration_lock_acquired: "
                           f"Domain {d.domid}:Fail to get domain configuration\n")
                continue
            warnings: list[str] = []
            items.append({"domid": d.domid, "config": retrieved_config(d, warnings)})
            for w in warnings:
                run.stderr(w + "\n")
        run.stdout(yajl.dumps(items) + "\n\n")
        return 0
    flags = dict(verbose="v" in got, context="Z" in got, cpupool="c" in got, numa="n" in got)
    text = list_header(**flags) + "".join(list_row(d, now, **flags) for d in doms)
    run.stdout(text)
    return 0


def cmd_info(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(run, "info", args, "n", {"numa": ("n", False)})
    st = host.load(run.state_dir)
    lines = [f"{k:<23}: {v}" for k, v in info_lines(st)]
    if rest:
        key = rest[0]
        values = [ln.split(": ", 1)[1] if ": " in ln else "" for ln in lines if ln.startswith(key)]
        run.stdout("".join(v + "\n" for v in values))
        return 0
    run.stdout("\n".join(lines) + "\n")
    return 0
    yield  # pragma: no cover - makes this a generator


def cmd_domid(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(run, "domid", args, "", nargs=1)
    st = host.load(run.state_dir)
    dom = by_xl_name(st, rest[0])
    if dom is None:
        raise SimExit(1, f"Can't get domid of domain name '{rest[0]}', maybe this domain does not exist.\n")
    run.stdout(f"{dom.domid}\n")
    return 0
    yield  # pragma: no cover


def cmd_domname(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(run, "domname", args, "", nargs=1)
    if not rest[0].isdigit():
        raise SimExit(1, "Invalid domain id.\n\n")
    st = host.load(run.state_dir)
    dom = st.by_id(int(rest[0]))
    if dom is None or dom.dying:
        raise SimExit(1, f"Can't get domain name of domain id '{rest[0]}', maybe this domain does not exist.\n")
    run.stdout(f"{dom.name}\n")
    return 0
    yield  # pragma: no cover


# -- create ---------------------------------------------------------------------------------


def read_config_text(path: str, extra: list[str]) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError as exc:
        raise SimExit(3, f"Failed to read config file: {path}: {exc.strerror}\n") from None
    if extra:
        text += "\n" + "".join(e + "\n" for e in extra)
    return text


def parse_config(run: Run, path: str, extra: list[str], quiet: bool) -> dict:
    """Read, announce and parse a domain config as xl create does; the dry-run object."""
    from . import domconfig
    from .xlcfg import ConfigSyntaxError, parse

    text = read_config_text(path, extra)
    if not quiet:
        run.stderr(f"Parsing config from {path}\n")
    try:
        cfg = parse(text, path)
    except ConfigSyntaxError as exc:
        raise SimExit(1, "".join(line + "\n" for line in exc.lines)
                      + "Failed to parse config: Invalid argument\n") from None
    config = domconfig.build(cfg)
    for w in cfg.warnings:
        run.stderr(w + "\n")
    return config


def cmd_create(run: Run, args: list[str]) -> Command:
    longs = {"defconfig": ("f", True), "dryrun": ("n", False), "quiet": ("q", False),
             "vncviewer": ("V", False), "vncviewer-autopass": ("A", False),
             "ignore-global-affinity-masks": ("i", False)}
    got, rest = _opts(run, "create", args, "Fnqf:pcdeViA", longs)
    config_file = got["f"][-1] if "f" in got else None
    extra: list[str] = []
    for a in rest:
        if "=" in a:
            extra.append(a)
        elif config_file is None:
            config_file = a
        else:
            raise SimExit(2, stdout=usage("create"))
    quiet = "q" in got
    dryrun = "n" in got or run.dryrun
    if config_file is None:
        raise SimExit(6, "Config file not specified and none in save file\n")
    config = parse_config(run, config_file, extra, quiet)
    if dryrun:
        from . import yajl

        run.stdout(yajl.dumps(config) + "\n")
        return 0
    now = time.time()
    name = config["c_info"]["name"]
    with host.transaction(run.state_dir) as st:
        dom = domain_from_config(st, config, os.path.abspath(config_file), now)
        _check_new_domain(st, name, dom.memory_kib)
        _check_backends(st, config, dom.domid)
        latency = st.lat("create") + st.delay("create", name)
        dom.ready_at = now + latency
        dom.ready_flags = "--p---" if "p" in got else "-b----"
        st.add(dom)
        domid = dom.domid
    rc = yield from _wait_ready(run, domid, "create", name, latency)
    return rc


# -- restore --------------------------------------------------------------------------------


def cmd_restore(run: Run, args: list[str]) -> Command:
    got, rest = _opts(run, "restore", args, "FpedVAc",
                      {"vncviewer": ("V", False), "vncviewer-autopass": ("A", False)}, nargs=1)
    if len(rest) > 2:
        raise SimExit(2, stdout=usage("restore"))
    from . import fastjson, images

    config_file = rest[0] if len(rest) == 2 else None
    image_path = rest[-1]
    image = images.read_xl(image_path)
    run.stderr(f"Loading new save file {image_path} (new xl fmt info 0x{image.mandatory_flags:x}/"
               f"0x{image.optional_flags:x}/{image.optional_data_len})\n")
    run.stderr(" Savefile contains xl domain config in JSON format\n")
    if config_file is not None:
        config = parse_config(run, config_file, [], False)
    else:
        run.stderr("Parsing config from <saved>\n")
        try:
            config = fastjson.loads(image.config_json)
        except ValueError:
            raise SimExit(1, "Failed to parse config: Invalid argument\n") from None
    name = config["c_info"]["name"]
    pv = config["c_info"].get("type", "pv") == "pv"
    now = time.time()
    with host.transaction(run.state_dir) as st:
        dom = domain_from_config(st, config, None, now)
        _check_new_domain(st, name, dom.memory_kib, code=1)
        _check_backends(st, config, dom.domid, code=1)
        res = st.resource_for("restore")
        latency = st.transfer_time("restore", dom.memory_kib) + st.delay("restore", name)
        dom.ready_flags = "--p---" if "p" in got else "-b----"
        if res is not None and image.complete:  # read the image over the shared disk, then finish building
            latency = st.lat("restore") + st.delay("restore", name)
            dom.busy = run.busy("restore")
        else:
            dom.ready_at = now + latency
        st.add(dom)
        domid, mem = dom.domid, dom.memory_kib
    run.stderr(f"xc: info: Found x86 {'PV' if pv else 'HVM'} domain from Xen 4.17\nxc: info: Restoring domain\n")
    if res is not None and image.complete:
        run.on_abort(_remove_domain(run, domid))
        yield from _transfer(run, res, name, "restore", mem / 1024.0)
        with host.transaction(run.state_dir) as st:
            dom = st.by_id(domid)
            if dom is None:
                raise SimExit(1, f"libxl: error: libxl_create.c:1640:domcreate_rebuild_done: Domain {domid}:"
                                 "cannot (re-)build domain: -3\n")
            dom.busy = None
            dom.ready_at = time.time() + latency
    if not image.complete:
        if latency > 0:
            yield latency / 2
        with host.transaction(run.state_dir) as st:
            d = st.by_id(domid)
            if d is not None:
                st.remove(d)
        # as real xl 4.17.7 printed for an image cut at 46 of 100 MB (tests/fixtures/xen/real-4.17/xl_restore_truncated)
        raise SimExit(1, "xc: error: Failed to read Record Header from stream (0 = Success): Internal error\n"
                         "xc: error: Restore failed (0 = Success): Internal error\n"
                         "libxl: error: libxl_stream_read.c:850:libxl__xc_domain_restore_done: restoring domain: "
                         "Success\n"
                         f"libxl: error: libxl_create.c:1640:domcreate_rebuild_done: Domain {domid}:"
                         "cannot (re-)build domain: -3\n"
                         f"libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain {domid}:"
                         "Non-existant domain\n"
                         f"libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain {domid}:"
                         "Unable to destroy guest\n"
                         f"libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain {domid}:"
                         "Destruction of domain failed\n")
    rc = yield from _wait_ready(run, domid, "restore", name, latency)
    if rc == 0:
        run.stderr("xc: info: Restore successful\n")
        if pv:
            run.stderr(f"xc: info: XenStore: mfn {_fake_mfn(domid, 0)}, dom 0, evt 1\n"
                       f"xc: info: Console: mfn {_fake_mfn(domid, 1)}, dom 0, evt 2\n")
    return rc


def _fake_mfn(domid: int, which: int) -> str:
    """A machine frame number as libxc prints it (the real ones are where Xen put the guest's rings)."""
    return f"{0x15eafa - 0x400 * domid - which:#x}"


# -- save --------------------------------------------------------------------------------------


def _remove_domain(run: Run, domid: int) -> Callable[[], None]:
    def remove() -> None:
        with host.transaction(run.state_dir) as st:
            d = st.by_id(domid)
            if d is not None and d.busy and d.busy.get("pid") == run.pid:
                st.remove(d)

    return remove


def _suspend(run: Run, domid: int, op: str, rename: str | None = None) -> Callable[[], None]:
    """Mark a domain busy (suspended for save, renamed for migrate); returns the resume action."""
    with host.transaction(run.state_dir) as st:
        dom = st.by_id(domid)
        assert dom is not None
        dom.busy = run.busy(op, prev_flags=dom.flags, prev_name=dom.name)
        if op == "save":
            dom.flags = "---ss-"  # as real xl 4.17 lists a domain being saved (real-4.17/xl_list_during_save)
            dom.monitor = False  # the `xl create` watching it exits as it suspends: resumed or not, it has none
        if rename:
            dom.name = rename

    def resume() -> None:
        with host.transaction(run.state_dir) as st2:
            d = st2.by_id(domid)
            if d is not None and d.busy and d.busy.get("pid") == run.pid:
                host.abort_busy(st2, d, died=run.killed)

    return run.on_abort(resume)


def _domain_for_action(st: host.HostState, arg: str, what: str) -> host.SimDomain:
    domid = find_domid(st, arg)
    dom = st.by_id(domid)
    if dom is None:
        raise SimExit(1, f"libxl: error: libxl_domain.c:1124:libxl_domain_{what}: "
                         f"Domain {domid}:Non-existant domain\n")
    return dom


#: progress lines `xl save` writes to stderr (real-4.17/xl_save.stderr has 12, then "End of stream")
SAVE_PROGRESS_STEPS = 12


def _save_progress(run: Run, domid: int, seconds: float) -> Command:
    """Spend the save's time writing progress to stderr as real xl does all along.

    Real xl dies of SIGPIPE at the first write after its reader is gone (the
    shim restores SIGPIPE's default action), leaving the domain suspended.
    """
    run.stderr(f"xc: info: Saving domain {domid}, type x86 PV\n")
    frames = 24576
    for i in range(1, SAVE_PROGRESS_STEPS + 1):
        if seconds > 0:
            yield seconds / SAVE_PROGRESS_STEPS
        n = frames * i // SAVE_PROGRESS_STEPS
        run.stderr(f"xc: progress: Frames: {n}/{frames}  {100 * n // frames:3d}%\n")
    run.stderr("xc: progress: End of stream: 0/0    0%\n")
    return 0


def cmd_save(run: Run, args: list[str]) -> Command:
    from . import domconfig, images, yajl

    got, rest = _opts(run, "save", args, "cpD", nargs=2)
    if len(rest) > 3:
        raise SimExit(2, stdout=usage("save"))
    dom_arg, path = rest[0], rest[1]
    with host.transaction(run.state_dir) as st:
        dom = _domain_for_action(st, dom_arg, "suspend")
        if dom.domid == 0:
            raise SimExit(1, "cannot save domain 0\n")
        warnings: list[str] = []
        if dom.userdata is None:
            raise SimExit(1, f"libxl: error: libxl_domain.c:2335:retrieve_domain_configuration_lock_acquired: "
                             f"Domain {dom.domid}:Fail to get domain configuration\n"
                             "Failed to save domain, resuming domain\n")
        config = domconfig.for_save_image(retrieved_config(dom, warnings), "D" in got, dom.domid)
        domid, name, mem = dom.domid, dom.name, dom.memory_kib
        busy_other = dom.busy is not None
        dying = dom.dying
        already_suspended = dom.flags[3:5] == "ss" and not busy_other  # left so by a save that died
        fault = st.fault("save", name, domid)
        seconds = st.transfer_time("save", mem) + st.delay("save", name, domid)
        res = st.resource_for("save")
        fixed = st.lat("save") + st.delay("save", name, domid)
    for w in warnings:
        run.stderr(w + "\n")
    header, optional_len = images.xl_header(yajl.dumps(config) + "\n")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        raise SimExit(1, f"Failed to open temp file {path} for writing\n") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(header)
    run.stderr(f"Saving to {path} new xl format (info 0x{images.XL_FLAGS:x}/0x0/{optional_len})\n")
    if dying or busy_other:
        raise SimExit(1, f"libxl: error: libxl_dom_suspend.c:382:suspend_common_wait_guest_timeout: "
                         f"Domain {domid}:guest did not suspend, timed out\n"
                         "Failed to save domain, resuming domain\n")
    if already_suspended:  # real 4.17: libxl waits 60 s for an ack the suspended guest cannot give, then saves
        if st.lat("ack_timeout") > 0:
            yield st.lat("ack_timeout")
        run.stderr(f"libxl: error: libxl_dom_suspend.c:269:domain_suspend_common_pvcontrol_suspending: Domain {domid}:"
                   "guest didn't acknowledge suspend, cancelling request\n")
    resume = _suspend(run, domid, "save")
    if fault and fault.kind == "hang":
        yield HANG
    body = images.payload(mem)
    if fault and fault.kind in ("fail", "enospc"):
        run.stderr(f"xc: info: Saving domain {domid}, type x86 PV\n")
        if seconds > 0:
            yield seconds / 2
        with open(path, "ab") as fh:
            fh.write(body[: len(body) // 2])
        resume()
        run.done_with(resume)
        if fault.kind == "enospc":  # as real xl 4.17.7 (tests/fixtures/xen/real-4.17/xl_save_enospc)
            raise SimExit(1, "xc: error: Failed to write page data to stream (28 = No space left on device): "
                             "Internal error\n"
                             "xc: error: Save failed (28 = No space left on device): Internal error\n"
                             f"libxl: error: libxl_stream_write.c:347:libxl__xc_domain_save_done: Domain {domid}:"
                             "saving domain: domain responded to suspend request: "
                             "No space left on device\n"
                             "Failed to save domain, resuming domain\n")
        raise SimExit(1, f"libxl: error: libxl_stream_write.c:347:libxl__xc_domain_save_done: Domain {domid}:"
                         "saving domain: domain responded to suspend request: Input/output error\n"
                         "Failed to save domain, resuming domain\n")
    if res is not None:  # the suspend, then the pages over the shared disk, with progress lines all along
        run.stderr(f"xc: info: Saving domain {domid}, type x86 PV\n")
        if fixed > 0:
            yield fixed
        t0 = time.time()

        def tick(until: float) -> None:
            frac = min(1.0, (time.time() - t0) / max(1e-6, until - t0))
            n = int(24576 * frac)
            run.stderr(f"xc: progress: Frames: {n}/24576  {100 * n // 24576:3d}%\n")

        yield from _transfer(run, res, name, "save", mem / 1024.0, on_tick=tick)
        run.stderr("xc: progress: Frames: 24576/24576  100%\nxc: progress: End of stream: 0/0    0%\n")
    else:
        yield from _save_progress(run, domid, seconds)
    with open(path, "ab") as fh:
        fh.write(body)
    with host.transaction(run.state_dir) as st:
        dom = st.by_id(domid)
        run.done_with(resume)
        if dom is None or not dom.busy or dom.busy.get("pid") != run.pid:
            raise SimExit(1, f"libxl: error: libxl_dom_suspend.c:382:suspend_common_wait_guest: "
                             f"Domain {domid}:guest went away during save\n"
                             "Failed to save domain, resuming domain\n")
        if "c" in got:
            host.abort_busy(st, dom)
        elif "p" in got:
            host.abort_busy(st, dom)
            dom.flags = "--p---"
        else:
            st.remove(dom)
    return 0


# -- migrate ----------------------------------------------------------------------------------


def cmd_migrate(run: Run, args: list[str]) -> Command:
    got, rest = _opts(run, "migrate", args, "FC:s:epD", {"debug": ("debug", False), "live": ("live", False)},
                      nargs=2)
    dom_arg, target = rest[0], rest[1]
    if "C" in got:
        read_config_text(got["C"][-1], [])
    with host.transaction(run.state_dir) as st:
        dom = _domain_for_action(st, dom_arg, "suspend")
        if dom.domid == 0:
            raise SimExit(1, "cannot migrate domain 0\n")
        domid, name, mem, uuid, vcpus = dom.domid, dom.name, dom.memory_kib, dom.uuid, dom.online_vcpus
        dying = dom.dying or dom.busy is not None
        fault = st.fault("migrate", name, domid)
        seconds = st.transfer_time("migrate", mem) + st.delay("migrate", name, domid)
        res = st.resource_for("migrate", target)
        fixed = st.lat("migrate") + st.delay("migrate", name, domid)
        dirty = float(st.dirty.get(name) or 0.0)
        registry = st.pool
        record = dom.to_dict()
    if dying:
        raise SimExit(1, "Migration failed, failed to suspend at sender.\n")
    peer = None
    if registry:
        from . import pool

        peer = pool.lookup(registry, target)
    if peer is not None and peer.get("reach") == "down":
        raise SimExit(1, f"ssh: connect to host {target.rpartition('@')[2]} port 22: No route to host\n"
                         "xl migrate: failed to read the migration-receive banner (rc=-3)\n"
                         "Migration failed, resuming at sender.\n")
    if peer is not None and peer.get("reach") == "hang":
        yield HANG
    resume = _suspend(run, domid, "migrate", rename=f"{name}--migratedaway")
    incoming = None
    if peer is not None:  # the receiver builds the domain (and claims its memory) before the stream starts
        incoming = _receive_begin(run, peer["state"], record, resume)
    if fault and fault.kind == "hang":
        yield HANG
    if fault and fault.kind in ("fail", "enospc", "ignore"):
        if seconds > 0:
            yield seconds / 2
        resume()
        run.done_with(resume)
        if incoming is not None:
            incoming[1]()
            run.done_with(incoming[1])
        raise SimExit(1, "migration sender: Target reported a problem (rc=-3)\n"
                         "Migration failed, resuming at sender.\n")
    if res is not None:  # the set-up, then memory and re-dirtied pages over the shared link
        if fixed > 0:
            yield fixed
        yield from _transfer(run, res, name, "migrate", mem / 1024.0, dirty)
    elif seconds > 0:
        yield seconds
    run.stderr("migration sender: Target has acknowledged transfer.\n"
               "migration sender: Giving target permission to start.\n")
    with host.transaction(run.state_dir) as st:
        dom = st.by_id(domid)
        run.done_with(resume)
        gone = dom is None or not dom.busy or dom.busy.get("pid") != run.pid
        if not gone:
            st.remove(dom)
            ssh = got["s"][-1] if "s" in got else "ssh"
            st.targets.setdefault(target, []).append({
                "name": name, "uuid": uuid, "memory_mib": mem // 1024, "vcpus": vcpus, "from_domid": domid,
                "received_at": time.time(), "ssh": ssh, "options": sorted(k for k in got),
                "config": dom.userdata,
            })
    if gone:
        if incoming is not None:
            incoming[1]()
            run.done_with(incoming[1])
        raise SimExit(1, "Migration failed due to problems at target.\n")
    if incoming is not None:
        _receive_end(run, peer["state"], *incoming)
    run.stderr("migration sender: Target reports successful startup.\nMigration successful.\n")
    return 0


def _receive_begin(run: Run, peer_dir: str, record: dict, resume: Callable[[], None]) -> tuple[int, Callable[[], None]]:
    """`xl migrate-receive` on a pool member: a paused `NAME--incoming` domain holding the guest's memory.

    The same UUID and a domid of the receiver's.  Refused (the sender resumes
    its guest) when the receiver lacks the memory or already runs the name.
    Returns the new domid and the abort action; a SIGKILLed sender leaves
    nothing behind either (the receiver's busy marker names its pid).
    """
    clone = host.SimDomain.from_dict(record)
    clone.monitor = True  # the receiving xl watches it from now on
    name = clone.name
    problem = ""
    newid = -1
    with host.transaction(peer_dir) as pst:
        if by_xl_name(pst, name) is not None or by_xl_name(pst, f"{name}--incoming") is not None:
            problem = (f'libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain with name "{name}" already exists.\n'
                       "migration target: Domain creation failed (code -3).\n")
        elif clone.memory_kib // 1024 > pst.free_memory_mib():
            problem = ("xc: error: panic: xc_dom_boot.c:121: xc_dom_boot_mem_init: can't allocate low memory for domain: "
                       "Out of memory\nmigration target: Domain creation failed (code -3).\n")
        else:
            now = time.time()
            clone.domid = pst.new_domid()
            clone.name = f"{name}--incoming"
            clone.flags = "--p---"
            clone.busy = {"op": "migrate-receive", "pid": run.pid}
            clone.ready_at = clone.gone_at = None
            clone.cpu_time, clone.cpu_time_at, clone.start_time = 0.0, now, now
            pst.add(clone)
            newid = clone.domid
    if problem:
        resume()
        run.done_with(resume)
        raise SimExit(1, problem + "migration sender: Target reported a problem (rc=-3)\n"
                                   "Migration failed, resuming at sender.\n")

    def abort() -> None:
        with host.transaction(peer_dir) as pst2:
            d = pst2.by_id(newid)
            if d is not None and d.busy and d.busy.get("pid") == run.pid:
                pst2.remove(d)

    return newid, run.on_abort(abort)


def _receive_end(run: Run, peer_dir: str, domid: int, abort: Callable[[], None]) -> None:
    """The receiver unpauses its domain under the guest's own name."""
    with host.transaction(peer_dir) as pst:
        d = pst.by_id(domid)
        if d is not None:
            d.name = d.name.removesuffix("--incoming")
            d.flags, d.busy = "-b----", None
            d.cpu_time_at = time.time()
    run.done_with(abort)


# -- shutdown -----------------------------------------------------------------------------------


def _shutdown_one(run: Run, domid: int) -> Command:
    """Request a poweroff and wait for the guest's acknowledgement (synchronous, even without -w)."""
    run.stderr(f"Shutting down domain {domid}\n")
    st = host.load(run.state_dir)  # only reads: no lock, no write-back
    dom = st.by_id(domid)
    if dom is None:
        raise SimExit(1, f"libxl: error: libxl_dom.c:37:libxl__domain_type: unable to get domain type for "
                         f"domid={domid}\nshutdown failed (rc=-3)\n")
    name = dom.name
    fault = st.fault("shutdown", name, domid)
    ack = st.lat("ack")
    ack_timeout = st.lat("ack_timeout")
    linger = st.lat("shutdown") + st.delay("shutdown", name, domid)
    # a dying, suspended or powered-off guest runs no code: it cannot acknowledge (real xl 4.17 waits on a
    # `---s--` one until it is killed)
    never_acks = dom.dying or dom.flags[3] == "s" or (fault is not None and fault.kind == "ignore")
    from . import xsbridge

    xsbridge.write_control(run.state_dir, domid, "shutdown", "poweroff")
    if fault and fault.kind == "hang":
        yield HANG
    if never_acks:
        if ack_timeout > 0:
            yield ack_timeout
        raise SimExit(1, "libxl: error: libxl_domain.c:854:pvcontrol_cb: guest didn't acknowledge control "
                         "request: -9\nshutdown failed (rc=-9)\n")
    if ack > 0:
        yield ack
    if fault and fault.kind == "fail":
        raise SimExit(1, f"libxl: error: libxl_domain.c:854:pvcontrol_cb: Domain {domid}:"
                         "guest failed to handle the control request\nshutdown failed (rc=-3)\n")
    with host.transaction(run.state_dir) as st:
        dom = st.by_id(domid)
        if dom is not None and dom.gone_at is None and not dom.dying:
            dom.gone_at = time.time() + linger
            dom.gone_as = "zombie" if fault is not None and fault.kind == "zombie" else "destroy"
    return 0


def _wait_gone(run: Run, domids: list[int]) -> Command:
    run.stderr(f"Waiting for {len(domids)} domains\n")
    pending = list(domids)
    while pending:
        st = host.load(run.state_dir)
        now = time.time()
        for domid in list(pending):
            dom = st.by_id(domid)
            # done when it is gone, dying, or shut down (its monitor, if any, destroys it: not our wait)
            if dom is None or dom.dying or (dom.flags[3] == "s" and dom.gone_at is None and not dom.busy):
                run.stderr(f"Domain {domid} has been destroyed\n" if dom is not None and dom.dying else
                           f"Domain {domid} has been shut down, reason code 0\n")
                pending.remove(domid)
        if pending:
            due = [d.gone_at for d in st.domains if d.domid in pending and d.gone_at is not None]
            yield max(0.01, min(due) - now + 0.005) if due else 0.05
    return 0


def cmd_shutdown(run: Run, args: list[str]) -> Command:
    got, rest = _opts(run, "shutdown", args, "awF", {"all": ("a", False), "wait": ("w", False)})
    if "a" not in got and not rest:
        raise SimExit(1, "You must specify -a or a domain id.\n\n", stdout=usage("shutdown"))
    if "a" in got:
        st = host.load(run.state_dir)
        domids = [d.domid for d in sorted(st.domains, key=lambda d: d.domid) if d.domid != 0 and not d.xs_domain]
    elif rest[0].isdigit():
        domids = [int(rest[0])]  # as find_domid takes it, without reading the state for nothing
    else:
        domids = [find_domid(host.load(run.state_dir), rest[0])]
    for domid in domids:
        yield from _shutdown_one(run, domid)
    if "w" in got and domids:
        yield from _wait_gone(run, domids)
    return 0


# -- destroy, sysrq, pause ----------------------------------------------------------------------


def cmd_destroy(run: Run, args: list[str]) -> Command:
    got, rest = _opts(run, "destroy", args, "f", nargs=1)
    st = host.load(run.state_dir)
    domid = find_domid(st, rest[0])
    if domid == 0 and "f" not in got:
        raise SimExit(1, "Not destroying domain 0; use -f to force.\n"
                         "This can only be done when using a disaggregated hardware domain and toolstack.\n\n")
    dom = st.by_id(domid)
    if dom is None:
        raise SimExit(1, f"libxl: error: libxl_domain.c:1124:libxl_domain_destroy: Domain {domid}:"
                         "Non-existant domain\n"
                         f"libxl: error: libxl_domain.c:1080:domain_destroy_callback: Domain {domid}:"
                         "Unable to destroy guest\n"
                         f"libxl: error: libxl_domain.c:1007:domain_destroy_cb: Domain {domid}:"
                         "Destruction of domain failed\n"
                         "destroy failed (rc=-21)\n")
    fault = st.fault("destroy", dom.name, domid)
    seconds = st.lat("destroy") + st.delay("destroy", dom.name, domid)
    if fault and fault.kind == "hang":
        yield HANG
    if seconds > 0:
        yield seconds
    if fault and fault.kind == "fail":
        raise SimExit(1, "destroy failed (rc=-3)\n")
    with host.transaction(run.state_dir) as st:
        dom = st.by_id(domid)
        if dom is not None and not (fault and fault.kind == "zombie"):
            if dom.dying and dom.gone_at is None:
                return 0  # a zombie stays: its memory is held by something outside the toolstack
            st.remove(dom)
        elif dom is not None:
            dom.gone_at, dom.gone_as = time.time(), "zombie"
    return 0


def cmd_sysrq(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(run, "sysrq", args, "", nargs=2)
    st = host.load(run.state_dir)
    domid = find_domid(st, rest[0])
    if len(rest[1]) != 1:
        raise SimExit(1, "Invalid sysrq.\n\n", stdout=usage("sysrq"))
    dom = st.by_id(domid)
    name = dom.name if dom else str(domid)
    fault = st.fault("sysrq", name, domid)
    from . import xsbridge

    xsbridge.write_control(run.state_dir, domid, "sysrq", rest[1])
    if fault and fault.kind == "hang":
        yield HANG
    seconds = st.lat("sysrq") + st.delay("sysrq", name, domid)
    if seconds > 0:
        yield seconds
    if fault and fault.kind == "fail":
        raise SimExit(1, f"libxl: error: libxl.c:651:libxl_send_sysrq: Domain {domid}:"
                         "Failed to write sysrq to xenstore\n")
    return 0


def _pause(run: Run, args: list[str], cmd: str, paused: bool) -> Command:
    _got, rest = _opts(run, cmd, args, "", nargs=1)
    with host.transaction(run.state_dir) as st:
        domid = find_domid(st, rest[0])
        dom = st.by_id(domid)
        if dom is None:
            run.stderr(f"libxl: error: libxl_domain.c:{'579' if paused else '1520'}:libxl_domain_{cmd}: "
                       f"Domain {domid}:{'Pausing' if paused else 'Unpausing'} domain {domid} failed\n")
            return 0
        if not dom.dying and not dom.busy:
            dom.cpu_time = dom.cpu_time_now(time.time())
            dom.cpu_time_at = time.time()
            dom.flags = ("--p---" if paused else "-b----")
    return 0
    yield  # pragma: no cover


def cmd_pause(run: Run, args: list[str]) -> Command:
    return (yield from _pause(run, args, "pause", True))


def cmd_unpause(run: Run, args: list[str]) -> Command:
    return (yield from _pause(run, args, "unpause", False))


COMMANDS = {
    "list": cmd_list, "info": cmd_info, "domid": cmd_domid, "domname": cmd_domname, "create": cmd_create,
    "restore": cmd_restore, "save": cmd_save, "migrate": cmd_migrate, "shutdown": cmd_shutdown,
    "destroy": cmd_destroy, "sysrq": cmd_sysrq, "pause": cmd_pause, "unpause": cmd_unpause,
}
MUTATING = {"create", "restore", "save", "migrate", "shutdown", "destroy", "sysrq", "pause", "unpause"}


def lookup(name: str) -> str | None:
    """cmdtable_lookup: an exact name, else a unique prefix."""
    if name in CMD_NAMES:
        return name
    matches = [c for c in CMD_NAMES if c.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def main(run: Run, argv: list[str]) -> Command:
    """xl [-vfNtT] SUBCOMMAND ARGS: the whole command line after `xl`."""
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        for c in argv[i][1:]:
            if c == "v":
                run.verbose += 1
            elif c == "N":
                run.dryrun = True
            elif c == "f":
                run.force = True
            elif c in "tT":
                pass
            else:
                raise SimExit(1, "unknown global option\n")
        i += 1
    if i >= len(argv):
        raise SimExit(1, stdout="Usage xl [-vfNtT] <subcommand> [args]\n")
    name = lookup(argv[i])
    if name is None:
        raise SimExit(1, "command not implemented\n")
    fn = COMMANDS.get(name)
    if fn is None:
        raise SimExit(1, f"xdsim: `xl {name}' is not simulated\n")
    rc = yield from fn(run, argv[i + 1 :])
    return rc
