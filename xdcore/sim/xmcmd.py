"""The simulated `xm` (xend era, Oracle VM): same host model, xm's formats and messages.

Differences from xl that matter to xendomains: `xm list` has no TABs,
`xm list -l` prints SXP through xend's PrettyPrint, save images start with
"LinuxGuestRecord", `xm shutdown` accepts -H/--halt and -R and does not
wait for an acknowledgement, errors are "Error: …" (exit 1, or 3 for an
unknown domain), and a config without `name` is named after its file.
"""

from __future__ import annotations

import os
import time

from . import host
from .runtime import HANG, Run, getopt
from .simerrors import SimExit
from .xlcmd import domain_from_config, read_config_text

# As in xlcmd: the config language, SXP output, save images and XenStore are imported by the
# subcommands that use them, so that each simulated xm process pays only for its own.

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .runtime import Command

CMD_NAMES = ["create", "list", "save", "restore", "migrate", "shutdown", "destroy", "sysrq", "domid",
             "domname", "info", "pause", "unpause", "reboot", "new", "delete", "start", "suspend", "resume"]
MUTATING = {"create", "restore", "save", "migrate", "shutdown", "destroy", "sysrq"}
XM_STATE = "rbpscd"


def _bad_option(c: str) -> SimExit:
    opt = "--?" if c == "\0" else f"-{c}"
    return SimExit(1, f"Error: option {opt} not recognized\n")


def _opts(args: list[str], short: str, longs: dict[str, tuple[str, bool]] | None = None, nargs: int = 0,
          cmd: str = "") -> tuple[dict[str, list[str]], list[str]]:
    opts, rest = getopt(args, "h" + short, {"help": ("h", False), **(longs or {})}, _bad_option)
    got: dict[str, list[str]] = {}
    for k, v in opts:
        got.setdefault(k, []).append(v)
    if "h" in got:
        raise SimExit(0, stdout=f"Usage: xm {cmd} ...\n")
    if len(rest) < nargs:
        raise SimExit(1, f"Error: 'xm {cmd}' requires {nargs} argument{'s' if nargs > 1 else ''}.\n\n"
                         f"Usage: xm {cmd} ...\n")
    return got, rest


def _find(st: host.HostState, arg: str) -> host.SimDomain:
    dom = st.by_id(int(arg)) if arg.isdigit() else st.by_name(arg)
    if dom is None:
        raise SimExit(3, f"Error: Domain '{arg}' does not exist.\n")
    return dom


def xm_state(flags: str) -> str:
    """xend's state string: r b p s c d, position 5 a plain crashed flag."""
    crashed = flags[3] == "s" and flags[4] == "c"
    shut = flags[3] == "s" and not crashed
    bits = [flags[0] == "r", flags[1] == "b", flags[2] == "p", shut, crashed, flags[5] == "d"]
    return "".join(c if on else "-" for c, on in zip(XM_STATE, bits))


def domain_sxp(d: host.SimDomain, now: float) -> list:
    cfg = d.userdata or {}
    b_info = cfg.get("b_info", {})
    on = {k: cfg.get(k, "destroy" if k != "on_reboot" else "restart") for k in ("on_poweroff", "on_reboot",
                                                                              "on_crash")}
    sx: list = ["domain", ["domid", d.domid], ["cpu_weight", 256], ["cpu_cap", 0],
                ["on_crash", on["on_crash"]], ["uuid", d.uuid], ["vcpus", d.vcpus], ["name", d.name],
                ["on_reboot", on["on_reboot"]], ["on_poweroff", on["on_poweroff"]],
                ["maxmem", d.maxmem_kib // 1024], ["memory", d.memory_kib // 1024]]
    if d.domid == 0:
        sx += [["shadow_memory", 0], ["on_xend_start", "ignore"], ["on_xend_stop", "ignore"]]
    sx += [["start_time", round(d.start_time, 2)], ["cpu_time", d.cpu_time_now(now)],
           ["online_vcpus", d.online_vcpus]]
    linux: list = ["linux", ["kernel", b_info.get("kernel", "")]]
    if b_info.get("ramdisk"):
        linux.append(["ramdisk", b_info["ramdisk"]])
    if b_info.get("cmdline"):
        linux.append(["args", b_info["cmdline"]])
    sx += [["image", linux], ["status", 2], ["state", xm_state(d.flags)]]
    if d.domid != 0:
        sx += [["store_mfn", 1234567 + 2 * d.domid], ["console_mfn", 1234566 + 2 * d.domid]]
        for disk in cfg.get("disks", []):
            mode = "w" if disk.get("readwrite") else "r"
            sx.append(["device", ["vbd", ["uname", "phy:" + str(disk.get("pdev_path", ""))],
                                  ["dev", disk.get("vdev", "")], ["mode", mode]]])
        for nic in cfg.get("nics", []):
            vif: list = ["vif"]
            for key in ("mac", "bridge"):
                if key in nic:
                    vif.append([key, nic[key]])
            sx.append(["device", vif])
    return sx


def vm_sxp(config: dict) -> list:
    """`xm create --dryrun`: the (vm …) form of a domain config."""
    c_info, b_info = config["c_info"], config["b_info"]
    sx: list = ["vm", ["name", c_info["name"]], ["memory", b_info.get("target_memkb", 32768) // 1024]]
    if b_info.get("max_memkb", 0) != b_info.get("target_memkb", 0):
        sx.append(["maxmem", b_info.get("max_memkb", 0) // 1024])
    sx += [["vcpus", b_info.get("max_vcpus", 1)], ["uuid", c_info.get("uuid")]]
    sx += [["on_poweroff", config.get("on_poweroff", "destroy")],
           ["on_reboot", config.get("on_reboot", "restart")], ["on_crash", config.get("on_crash", "destroy")]]
    linux: list = ["linux", ["kernel", b_info.get("kernel", "")]]
    if b_info.get("ramdisk"):
        linux.append(["ramdisk", b_info["ramdisk"]])
    if b_info.get("cmdline"):
        linux.append(["args", b_info["cmdline"]])
    sx.append(["image", linux])
    for disk in config.get("disks", []):
        sx.append(["device", ["vbd", ["uname", "phy:" + str(disk.get("pdev_path", ""))],
                              ["dev", disk.get("vdev", "")], ["mode", "w" if disk.get("readwrite") else "r"]]])
    for nic in config.get("nics", []):
        sx.append(["device", ["vif"] + [[k, nic[k]] for k in ("mac", "bridge") if k in nic]])
    return sx


def _sxp_value(form: list, key: str, default=None):
    for item in form[1:]:
        if isinstance(item, list) and item and item[0] == key and len(item) > 1:
            return item[1]
    return default


def parse_sxp(text: str):
    """A small SXP reader (for configs inside xm save images)."""
    import shlex

    lex = shlex.shlex(text, posix=True)
    lex.wordchars += ".-_:/~@=,+"
    lex.commenters = ""
    stack: list[list] = [[]]
    for tok in lex:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            item = stack.pop()
            stack[-1].append(item)
        else:
            stack[-1].append(int(tok) if tok.isdigit() else tok)
    return stack[0][0] if stack[0] else []


def config_from_vm(form: list) -> dict:
    """Back from (vm …) to the libxl-shaped config the host model keeps."""
    image = _sxp_value(form, "image", ["linux"])
    linux = image if isinstance(image, list) else ["linux"]
    mem = int(_sxp_value(form, "memory", 32))
    b_info: dict = {"max_vcpus": int(_sxp_value(form, "vcpus", 1)),
                    "avail_vcpus": list(range(int(_sxp_value(form, "vcpus", 1)))),
                    "max_memkb": int(_sxp_value(form, "maxmem", mem)) * 1024, "target_memkb": mem * 1024,
                    "sched_params": {}, "claim_mode": "True"}
    for key, name in (("kernel", "kernel"), ("args", "cmdline"), ("ramdisk", "ramdisk")):
        val = _sxp_value(linux, key)
        if val:
            b_info[name] = val
    b_info.update({"type.pv": {}, "arch_arm": {}, "arch_x86": {}})
    c_info = {"type": "pv", "name": str(_sxp_value(form, "name")), "uuid": _sxp_value(form, "uuid"),
              "run_hotplug_scripts": "True"}
    return {"c_info": {k: v for k, v in c_info.items() if v}, "b_info": b_info}


def cmd_list(run: Run, args: list[str]) -> Command:
    got, rest = _opts(args, "l", {"long": ("l", False), "label": ("label", False), "state": ("state", True),
                                  "pool": ("pool", True)}, cmd="list")
    st = host.load(run.state_dir)
    now = time.time()
    doms = sorted(st.domains, key=lambda d: d.domid)
    if rest:
        doms = [_find(st, a) for a in rest]
    if "l" in got:
        from . import sxp

        run.stdout("".join(sxp.prettyprint(domain_sxp(d, now)) for d in doms))
        return 0
    lines = ["%-40s %5s %5s %5s %10s %9s" % ("Name", "ID", "Mem", "VCPUs", "State", "Time(s)")]
    for d in doms:
        lines.append("%-40s %5s %5d %5d %10s %8.1f" % (d.name, d.domid, d.memory_kib // 1024, d.online_vcpus,
                                                        xm_state(d.flags), d.cpu_time_now(now)))
    run.stdout("\n".join(lines) + "\n")
    return 0
    yield  # pragma: no cover


def _xm_config(run: Run, path: str, extra: list[str]) -> dict:
    from . import domconfig
    from .xlcfg import ConfigSyntaxError, parse

    text = read_config_text(path, extra)
    try:
        cfg = parse(text, path)
    except ConfigSyntaxError as exc:
        raise SimExit(1, f"Error: invalid syntax in {path}: {exc.lines[0]}\n") from None
    if not cfg.has("name"):
        base = os.path.basename(path)
        cfg = parse(text + f'\nname = "{base}"\n', path)
    try:
        return domconfig.build(cfg)
    except SimExit as exc:
        raise SimExit(1, f"Error: {exc.stderr.strip()}\n") from None


def cmd_create(run: Run, args: list[str]) -> Command:
    got, rest = _opts(args, "qncpf:F:", {"quiet": ("q", False), "dryrun": ("n", False),
                                         "console_autoconnect": ("c", False), "paused": ("p", False),
                                         "defconfig": ("f", True), "config": ("F", True)}, cmd="create")
    path = (got.get("f") or got.get("F") or [None])[-1]
    extra = [a for a in rest if "=" in a]
    files = [a for a in rest if "=" not in a]
    path = path or (files[0] if files else None)
    if path is None:
        raise SimExit(1, "Error: No config file given\n")
    if "q" not in got and "n" not in got:
        run.stdout(f'Using config file "{path}".\n')
    config = _xm_config(run, path, extra)
    if "n" in got:
        from . import sxp

        run.stdout(sxp.prettyprint(vm_sxp(config)))
        return 0
    now = time.time()
    with host.transaction(run.state_dir) as st:
        dom = domain_from_config(st, config, os.path.abspath(path), now)
        name = dom.name
        if st.by_name(name) is not None:
            raise SimExit(1, f"Error: Domain '{name}' already exists with ID '{st.by_name(name).domid}'\n")
        latency = st.lat("create") + st.delay("create", name)
        fault = st.fault("create", name)
        dom.ready_at, dom.ready_flags = now + latency, ("--p---" if "p" in got else "-b----")
        st.add(dom)
        domid = dom.domid
    if fault and fault.kind == "hang":
        yield HANG
    if latency > 0:
        yield latency
    if fault and fault.kind == "fail":
        with host.transaction(run.state_dir) as st:
            d = st.by_id(domid)
            if d is not None:
                st.remove(d)
        raise SimExit(1, "Error: Device 0 (vif) could not be connected. Hotplug scripts not working.\n")
    if "q" not in got:
        run.stdout(f"Started domain {name} (id={domid})\n")
    return 0


def cmd_save(run: Run, args: list[str]) -> Command:
    from . import images, sxp

    got, rest = _opts(args, "c", {"checkpoint": ("c", False)}, nargs=2, cmd="save")
    now = time.time()
    with host.transaction(run.state_dir) as st:
        dom = _find(st, rest[0])
        if dom.domid == 0:
            raise SimExit(1, "Error: Cannot save privileged domain 0\n")
        domid, mem = dom.domid, dom.memory_kib
        head, body = images.xm_image(sxp.prettyprint(domain_sxp(dom, now)), mem)
        fault = st.fault("save", dom.name, domid)
        seconds = st.transfer_time("save", mem) + st.delay("save", dom.name, domid)
        dom.busy = run.busy("save", prev_flags=dom.flags, prev_name=dom.name)
        dom.flags = "-b-ss-"

    def resume() -> None:
        with host.transaction(run.state_dir) as st2:
            d = st2.by_id(domid)
            if d is not None and d.busy and d.busy.get("pid") == run.pid:
                host.abort_busy(st2, d)

    run.on_abort(resume)
    try:
        with open(rest[1], "wb") as fh:
            fh.write(head)
    except OSError as exc:
        resume()
        raise SimExit(1, f"Error: [Errno {exc.errno}] {exc.strerror}: '{rest[1]}'\n") from None
    if fault and fault.kind == "hang":
        yield HANG
    if fault and fault.kind in ("fail", "enospc"):
        if seconds > 0:
            yield seconds / 2
        with open(rest[1], "ab") as fh:
            fh.write(body[: len(body) // 2])
        resume()
        run.done_with(resume)
        why = "[Errno 28] No space left on device" if fault.kind == "enospc" else "Suspend failed"
        raise SimExit(1, f"Error: {why}\n")
    if seconds > 0:
        yield seconds
    with open(rest[1], "ab") as fh:
        fh.write(body)
    with host.transaction(run.state_dir) as st:
        run.done_with(resume)
        d = st.by_id(domid)
        if d is not None:
            if "c" in got:
                host.abort_busy(st, d)
            else:
                st.remove(d)
    return 0


def cmd_restore(run: Run, args: list[str]) -> Command:
    from . import images

    got, rest = _opts(args, "p", {"paused": ("p", False)}, nargs=1, cmd="restore")
    image = images.read_xm(rest[0])
    config = config_from_vm(parse_sxp(image.config_sxp.replace("(domain", "(vm", 1)))
    now = time.time()
    with host.transaction(run.state_dir) as st:
        dom = domain_from_config(st, config, None, now)
        if st.by_name(dom.name) is not None:
            raise SimExit(1, f"Error: Domain '{dom.name}' already exists with ID '{st.by_name(dom.name).domid}'\n")
        latency = st.transfer_time("restore", dom.memory_kib) + st.delay("restore", dom.name)
        fault = st.fault("restore", dom.name)
        dom.ready_at, dom.ready_flags = now + latency, ("--p---" if "p" in got else "-b----")
        st.add(dom)
        domid = dom.domid
    if fault and fault.kind == "hang":
        yield HANG
    if latency > 0:
        yield latency
    if not image.complete or (fault and fault.kind == "fail"):
        with host.transaction(run.state_dir) as st:
            d = st.by_id(domid)
            if d is not None:
                st.remove(d)
        raise SimExit(1, "Error: Restore failed\n")
    return 0


def cmd_migrate(run: Run, args: list[str]) -> Command:
    got, rest = _opts(args, "lp:n:sc", {"live": ("l", False), "port": ("p", True), "node": ("n", True),
                                        "ssl": ("s", False), "change_home_server": ("c", False)},
                      nargs=2, cmd="migrate")
    with host.transaction(run.state_dir) as st:
        dom = _find(st, rest[0])
        domid, name, mem = dom.domid, dom.name, dom.memory_kib
        fault = st.fault("migrate", name, domid)
        seconds = st.transfer_time("migrate", mem) + st.delay("migrate", name, domid)
        record = {"name": name, "uuid": dom.uuid, "memory_mib": mem // 1024, "vcpus": dom.online_vcpus,
                  "from_domid": domid, "options": sorted(got), "config": dom.userdata}
        dom.busy = run.busy("migrate", prev_flags=dom.flags, prev_name=dom.name)
        dom.name = f"{name}--migratedaway"

    def resume() -> None:
        with host.transaction(run.state_dir) as st2:
            d = st2.by_id(domid)
            if d is not None and d.busy and d.busy.get("pid") == run.pid:
                host.abort_busy(st2, d)

    run.on_abort(resume)
    if fault and fault.kind == "hang":
        yield HANG
    if seconds > 0:
        yield seconds / (2 if fault and fault.kind != "delay" else 1)
    if fault and fault.kind in ("fail", "enospc", "ignore"):
        resume()
        run.done_with(resume)
        raise SimExit(1, "Error: can't connect: Connection refused\n")
    with host.transaction(run.state_dir) as st:
        run.done_with(resume)
        d = st.by_id(domid)
        if d is not None:
            st.remove(d)
        st.targets.setdefault(rest[1], []).append({**record, "received_at": time.time()})
    return 0


def cmd_shutdown(run: Run, args: list[str]) -> Command:
    got, rest = _opts(args, "awHR", {"all": ("a", False), "wait": ("w", False), "halt": ("H", False),
                                     "reboot": ("R", False)}, cmd="shutdown")
    mode = "reboot" if "R" in got else ("halt" if "H" in got else "poweroff")
    st = host.load(run.state_dir)
    if "a" in got:
        doms = [d for d in sorted(st.domains, key=lambda d: d.domid) if d.domid != 0]
    elif rest:
        doms = [_find(st, rest[0])]
    else:
        raise SimExit(1, "Error: 'xm shutdown' requires 1 argument.\n")
    from . import xsbridge

    waiting: list[tuple[int, str]] = []
    for d in doms:
        xsbridge.write_control(run.state_dir, d.domid, "shutdown", mode)
        with host.transaction(run.state_dir) as st2:
            dom = st2.by_id(d.domid)
            if dom is None:
                continue
            fault = st2.fault("shutdown", dom.name, dom.domid)
            if fault and fault.kind == "hang":
                pass
            elif dom.dying or (fault and fault.kind in ("ignore", "fail")):
                pass  # never goes away: -w waits forever, as xm did
            elif dom.gone_at is None:
                dom.gone_at = time.time() + st2.lat("shutdown") + st2.delay("shutdown", dom.name, dom.domid)
                dom.gone_as = "zombie" if fault and fault.kind == "zombie" else "destroy"
            waiting.append((dom.domid, dom.name))
        if fault and fault.kind == "hang":
            yield HANG
    if "w" not in got:
        return 0
    while waiting:
        cur = host.load(run.state_dir)
        for domid, name in list(waiting):
            dom = cur.by_id(domid)
            if dom is None or dom.dying:
                run.stdout(f"Domain {name} terminated\n")
                waiting.remove((domid, name))
        if waiting:
            yield 0.05
    if "a" in got:
        run.stdout("All domains terminated\n")
    return 0


def cmd_destroy(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(args, "", nargs=1, cmd="destroy")
    with host.transaction(run.state_dir) as st:
        dom = _find(st, rest[0])
        if dom.domid == 0:
            raise SimExit(1, "Error: Cannot destroy privileged domain 0\n")
        if not dom.dying:
            st.remove(dom)
    return 0
    yield  # pragma: no cover


def cmd_sysrq(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(args, "", nargs=2, cmd="sysrq")
    st = host.load(run.state_dir)
    dom = _find(st, rest[0])
    from . import xsbridge

    xsbridge.write_control(run.state_dir, dom.domid, "sysrq", rest[1])
    return 0
    yield  # pragma: no cover


def cmd_domid(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(args, "", nargs=1, cmd="domid")
    run.stdout(f"{_find(host.load(run.state_dir), rest[0]).domid}\n")
    return 0
    yield  # pragma: no cover


def cmd_domname(run: Run, args: list[str]) -> Command:
    _got, rest = _opts(args, "", nargs=1, cmd="domname")
    run.stdout(f"{_find(host.load(run.state_dir), rest[0]).name}\n")
    return 0
    yield  # pragma: no cover


def cmd_info(run: Run, args: list[str]) -> Command:
    from .xlcmd import info_lines

    st = host.load(run.state_dir)
    run.stdout("".join(f"{k:<23}: {v}\n" for k, v in info_lines(st)))
    return 0
    yield  # pragma: no cover


COMMANDS = {"list": cmd_list, "create": cmd_create, "save": cmd_save, "restore": cmd_restore,
            "migrate": cmd_migrate, "shutdown": cmd_shutdown, "destroy": cmd_destroy, "sysrq": cmd_sysrq,
            "domid": cmd_domid, "domname": cmd_domname, "info": cmd_info}


def lookup(name: str) -> str | None:
    return name if name in CMD_NAMES else None


def main(run: Run, argv: list[str]) -> Command:
    if not argv:
        raise SimExit(1, stdout="Usage: xm <subcommand> [args]\n")
    name = lookup(argv[0])
    if name is None:
        raise SimExit(1, f"Error: Subcommand {argv[0]} not found!\n")
    fn = COMMANDS.get(name)
    if fn is None:
        raise SimExit(1, f"xdsim: `xm {name}' is not simulated\n")
    rc = yield from fn(run, argv[1:])
    return rc
