"""From a parsed xl config to libxl's `libxl_domain_config`, and back out as libxl shows it.

Three views of one guest's config exist on a real host and the simulator
keeps them apart because tools (and our parsers) see each of them:

* the dry-run object (`xl create -n`): what xl's parse_config_data built;
* the stored "userdata" JSON libxl writes at create time (adds
  `c_info.domid = 4294967295` and `b_info.video_memkb = 0`);
* the retrieved config (`xl list -l`, and the JSON inside `xl save`
  images): userdata with live values merged in — name, uuid, vCPUs,
  `max_memkb`, `target_memkb = xenstore target + stored video_memkb (or -1
  when the stored JSON has none, libxl's LIBXL_MEMKB_DEFAULT wrapping)`,
  scheduler parameters — and devices dropped when they are not in xenstore.

Only fields that differ from libxl's defaults are present, in IDL order
(tools/libs/light/libxl_types.idl, Xen 4.17).
"""

from __future__ import annotations

from .simerrors import SimExit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .xlcfg import Config

INVALID_DOMID = 4294967295
NIL_UUID = "00000000-0000-0000-0000-000000000000"

TOP_ORDER = [
    "c_info", "b_info", "disks", "nics", "pcidevs", "rdms", "dtdevs", "vfbs", "vkbs", "vtpms", "p9s",
    "pvcallsifs", "vdispls", "vsnds", "channels", "usbctrls", "usbdevs", "on_poweroff", "on_reboot",
    "on_watchdog", "on_crash", "on_soft_reset",
]
DEVICE_KEYS = TOP_ORDER[2:17]
C_INFO_ORDER = [
    "type", "hap", "oos", "ssidref", "ssid_label", "name", "domid", "uuid", "xsdata", "platformdata",
    "poolid", "pool_name", "run_hotplug_scripts", "driver_domain", "passthrough", "xend_suspend_evtchn_compat",
]
B_INFO_ORDER = [
    "max_vcpus", "avail_vcpus", "cpumap", "nodemap", "vcpu_hard_affinity", "vcpu_soft_affinity",
    "numa_placement", "tsc_mode", "max_memkb", "target_memkb", "video_memkb", "shadow_memkb", "iommu_memkb",
    "rtc_timeoffset", "exec_ssidref", "exec_ssid_label", "localtime", "disable_migrate", "cpuid",
    "blkdev_start", "vnuma_nodes", "max_grant_frames", "max_maptrack_frames", "max_grant_version",
    "device_model_version", "device_model_stubdomain", "stubdomain_memkb", "stubdomain_kernel",
    "stubdomain_cmdline", "stubdomain_ramdisk", "device_model", "device_model_ssidref",
    "device_model_ssid_label", "device_model_user", "extra", "extra_pv", "extra_hvm", "sched_params",
    "ioports", "irqs", "iomem", "claim_mode", "event_channels", "kernel", "cmdline", "ramdisk",
    "device_tree", "acpi", "bootloader", "bootloader_args", "timer_mode", "nested_hvm", "apic",
    "dm_restrict", "tee", "type.hvm", "type.pv", "type.pvh", "arch_arm", "arch_x86",
]
DISK_ORDER = [
    "backend_domid", "backend_domname", "pdev_path", "vdev", "backend", "format", "script", "removable",
    "readwrite", "is_cdrom", "direct_io_safe", "discard_enable",
]
NIC_ORDER = [
    "backend_domid", "backend_domname", "devid", "mtu", "model", "mac", "ip", "bridge", "ifname", "script",
    "nictype", "rate_bytes_per_interval", "rate_interval_usecs", "gatewaydev",
]
ACTIONS = {
    "destroy": "destroy", "restart": "restart", "rename-restart": "rename_restart", "preserve": "preserve",
    "coredump-destroy": "coredump_destroy", "coredump-restart": "coredump_restart", "soft-reset": "soft_reset",
}
SCHED_CREDIT2 = {"sched": "credit2", "weight": 256, "cap": 0}


_RANKS: dict[int, tuple[list[str], dict[str, int]]] = {}


def ordered(d: dict, order: list[str]) -> dict:
    """d with its keys in IDL order (unknown keys after, in their own order: the sort is stable)."""
    cached = _RANKS.get(id(order))
    if cached is None or cached[0] is not order:
        cached = _RANKS[id(order)] = (order, {k: i for i, k in enumerate(order)})
    rank = cached[1]
    last = len(order)
    return {k: d[k] for k in sorted(d, key=lambda k: rank.get(k, last))}


def copy_json(value):
    """A deep copy of a JSON value (dicts, lists, tuples and atoms): copy.deepcopy without its cost."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    if isinstance(value, tuple):
        return tuple(copy_json(v) for v in value)
    return value


def _fail(msg: str, code: int = 1) -> SimExit:
    return SimExit(code, msg + "\n")


def _parse_disk(spec: str) -> dict:
    disk: dict = {}
    positional: list[str] = []
    for word in spec.split(","):
        word = word.strip()
        key, eq, val = word.partition("=")
        if eq and key in ("target", "vdev", "access", "format", "devtype", "backendtype", "script", "backend"):
            if key == "backend":
                disk["backend_domname"] = val
            elif key == "target":
                disk["pdev_path"] = val
            elif key == "access":
                disk["_access"] = val
            elif key == "devtype":
                disk["_devtype"] = val
            elif key == "backendtype":
                disk["backend"] = val
            else:
                disk[key] = val
        else:
            positional.append(word)
    names = ["_target", "vdev", "_access", "_devtype"]
    for name, val in zip(names, positional):
        disk[name] = val
    fmt = disk.get("format", "raw")
    target = disk.pop("_target", None)
    if target is not None:
        for prefix, f in (("phy:", "raw"), ("file:", "raw"), ("tap:aio:", "raw"), ("tap2:aio:", "raw"),
                          ("aio:", "raw"), ("raw:", "raw"), ("qcow:", "qcow"), ("qcow2:", "qcow2"),
                          ("vhd:", "vhd"), ("tap:qcow2:", "qcow2")):
            if target.startswith(prefix):
                target, fmt = target[len(prefix):], f
                break
        disk["pdev_path"] = target
    disk["format"] = fmt
    access = disk.pop("_access", "r")
    if access in ("w", "rw", "w!"):
        disk["readwrite"] = 1
    if disk.pop("_devtype", "") == "cdrom" or str(disk.get("vdev", "")).endswith(":cdrom"):
        disk["vdev"] = str(disk.get("vdev", "")).removesuffix(":cdrom")
        disk["removable"] = 1
        disk["is_cdrom"] = 1
    return ordered(disk, DISK_ORDER)


def _parse_nic(spec: str, devid: int) -> dict:
    nic: dict = {"devid": devid}
    names = {"mac": "mac", "bridge": "bridge", "ip": "ip", "script": "script", "model": "model",
             "vifname": "ifname", "type": "nictype", "gatewaydev": "gatewaydev", "mtu": "mtu",
             "backend": "backend_domname"}
    for word in spec.split(","):
        key, eq, val = word.strip().partition("=")
        if eq and key in names:
            nic[names[key]] = int(val) if key == "mtu" and val.isdigit() else val
    return ordered(nic, NIC_ORDER)


def build(cfg: Config) -> dict:
    """libxl_domain_config as `xl create --dryrun` prints it; raise SimExit like xl's parse_config_data."""
    dtype = cfg.get_string("type")
    if dtype is None:
        builder = cfg.get_string("builder")
        dtype = "hvm" if builder == "hvm" else "pv"
    if dtype not in ("pv", "pvh", "hvm"):
        raise _fail(f"Invalid domain type {dtype}.")
    name = cfg.get_string("name")
    if not name:
        raise _fail("Domain name must be specified.")
    c_info: dict = {"type": dtype, "name": name}
    uuid_text = cfg.get_string("uuid")
    if uuid_text is not None:
        import uuid as uuidlib  # only configs that name their UUID need the parser

        try:
            c_info["uuid"] = str(uuidlib.UUID(uuid_text))
        except ValueError:
            raise _fail(f"Failed to parse UUID: {uuid_text}") from None
    else:
        from .host import new_uuid

        c_info["uuid"] = new_uuid()
    pool = cfg.get_string("pool")
    if pool:
        c_info["pool_name"] = pool
    c_info["run_hotplug_scripts"] = "True"

    b_info: dict = {}
    vcpus = cfg.get_long("vcpus")
    maxvcpus = cfg.get_long("maxvcpus")
    if vcpus is not None or maxvcpus is not None:
        online = vcpus if vcpus is not None else maxvcpus
        b_info["max_vcpus"] = maxvcpus if maxvcpus is not None else online
        b_info["avail_vcpus"] = list(range(online or 0))
    memory = cfg.get_long("memory")
    maxmem = cfg.get_long("maxmem")
    if maxmem is not None:
        b_info["max_memkb"] = maxmem * 1024
    elif memory is not None:
        b_info["max_memkb"] = memory * 1024
    if memory is not None:
        b_info["target_memkb"] = memory * 1024
    b_info["sched_params"] = {}
    b_info["claim_mode"] = "True"
    kernel = cfg.get_string("kernel")
    if kernel:
        b_info["kernel"] = kernel
    cmdline = cfg.get_string("cmdline")
    if cmdline is None:
        root = cfg.get_string("root")
        extra = cfg.get_string("extra")
        parts = ([f"root={root}"] if root else []) + ([extra] if extra else [])
        cmdline = " ".join(parts) if parts else None
    if cmdline:
        b_info["cmdline"] = cmdline
    ramdisk = cfg.get_string("ramdisk")
    if ramdisk:
        b_info["ramdisk"] = ramdisk
    bootloader = cfg.get_string("bootloader")
    if bootloader:
        b_info["bootloader"] = bootloader
    if dtype == "pv" and not kernel and not bootloader:
        raise _fail("Neither kernel nor bootloader specified")
    b_info[f"type.{dtype}"] = {}
    b_info["arch_arm"] = {}
    b_info["arch_x86"] = {}

    config: dict = {"c_info": ordered(c_info, C_INFO_ORDER), "b_info": ordered(b_info, B_INFO_ORDER)}
    disks = [_parse_disk(s) for s in (cfg.get_list("disk") or []) if s.strip()]
    if disks:
        config["disks"] = disks
    nics = [_parse_nic(s, i) for i, s in enumerate(cfg.get_list("vif") or [])]
    if nics:
        config["nics"] = nics
    defaults = {"on_poweroff": "destroy", "on_reboot": "restart", "on_watchdog": "destroy",
                "on_crash": "destroy", "on_soft_reset": "soft-reset"}
    for key, default in defaults.items():
        text = cfg.get_string(key) or default
        action = ACTIONS.get(text)
        if action is None:
            raise _fail(f"Unknown {key} action \"{text}\" specified")
        if action != "destroy":
            config[key] = action
    return config


def userdata_from(config: dict) -> dict:
    """What libxl stores at create time: the config plus c_info.domid and b_info.video_memkb."""
    data = copy_json(config)
    data["c_info"]["domid"] = INVALID_DOMID
    data["c_info"] = ordered(data["c_info"], C_INFO_ORDER)
    data["b_info"].setdefault("video_memkb", 0)
    data["b_info"] = ordered(data["b_info"], B_INFO_ORDER)
    return data


def dom0_userdata(max_kib: int, dtype: str = "pv") -> dict:
    """The stub xen-init-dom0 writes (c_info type and name only)."""
    return {
        "c_info": {"type": dtype, "name": "Domain-0"},
        "b_info": {"max_memkb": max_kib, "sched_params": {}, f"type.{dtype}": {}, "arch_arm": {}, "arch_x86": {}},
    }


def retrieve(userdata: dict, *, domid: int, name: str, uuid: str, online_vcpus: int, max_kib: int,
             target_kib: int, devices_in_xenstore: bool, warnings: list[str]) -> dict:
    """libxl_retrieve_domain_configuration: userdata with live values merged in."""
    cfg = copy_json(userdata)
    c_info = cfg.setdefault("c_info", {})
    c_info["name"] = name
    if uuid and uuid != NIL_UUID:
        c_info["uuid"] = uuid
    else:
        c_info.pop("uuid", None)
    cfg["c_info"] = ordered(c_info, C_INFO_ORDER)
    b_info = cfg.setdefault("b_info", {})
    if domid != 0 and "max_vcpus" in b_info:
        b_info["avail_vcpus"] = list(range(online_vcpus))
    b_info["max_memkb"] = max_kib
    video = b_info.get("video_memkb")
    b_info["target_memkb"] = target_kib + (video if isinstance(video, int) else -1)
    b_info["sched_params"] = dict(SCHED_CREDIT2)
    cfg["b_info"] = ordered(b_info, B_INFO_ORDER)
    if not devices_in_xenstore:
        for key in DEVICE_KEYS:
            for _dev in cfg.pop(key, []) or []:
                warnings.append(
                    "libxl: warning: libxl_domain.c:2603:retrieve_domain_configuration_end: "
                    f"Domain {domid}:Device present in JSON but not in xenstore, ignored"
                )
    return ordered(cfg, TOP_ORDER)


def for_save_image(retrieved: dict, keep_domid: bool = False, domid: int = 0) -> dict:
    """The config xl save writes into the image: c_info.domid is 0 (omitted) unless -D."""
    cfg = copy_json(retrieved)
    if keep_domid:
        cfg["c_info"]["domid"] = domid
        cfg["c_info"] = ordered(cfg["c_info"], C_INFO_ORDER)
    else:
        cfg["c_info"].pop("domid", None)
    return cfg
