"""Lay out a simulated host in a few lines, for tests and the demo.

    layout = make_host(tmp_path / "host", guests=[("web01", 1024, 2), ("db", 4096, 4)],
                       auto=["web01"], saved=[("wiki", 2048, 2)])
    env = {"PATH": f"{layout.bin_dir}:{os.environ['PATH']}", "XDSIM_STATE": str(layout.state_dir)}

Every guest gets a real xl config file in ``configs/`` and (unless saved)
runs, created from that file exactly as `xl create` would; `auto` names get
a symlink in ``auto/``; `saved` guests get a real xl save image in
``save/`` and do not run.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import domconfig, host, images, yajl
from .xlcfg import parse

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # the directory holding xdcore/


@dataclass(frozen=True)
class HostLayout:
    """Where things are on a laid-out simulated host."""

    state_dir: Path
    bin_dir: Path
    configs_dir: Path
    auto_dir: Path
    save_dir: Path
    configs: dict[str, Path] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment with the shims first on PATH and XDSIM_STATE set."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["XDSIM_STATE"] = str(self.state_dir)
        return env


def write_shims(state_dir: str | os.PathLike[str], bin_dir: str | os.PathLike[str]) -> list[Path]:
    """Write BINDIR/xl, BINDIR/xm and BINDIR/ssh acting on state_dir (absolute interpreter, PYTHONPATH to xdcore).

    The shims are Python scripts run by their shebang with ``-SE``: a simulated xl must start
    nearly as fast as the real C program.  -S skips site-packages and .pth processing (the
    simulator needs only the standard library and this package, whose root the shim puts on
    sys.path); -E ignores PYTHON* variables, so PYTHONDONTWRITEBYTECODE cannot stop the
    compiled bytecode being cached in __pycache__ (the first call writes it).
    """
    bdir = Path(bin_dir)
    bdir.mkdir(parents=True, exist_ok=True)
    state = shlex.quote(str(Path(state_dir).resolve()))
    root = shlex.quote(str(PACKAGE_ROOT))
    python = shlex.quote(sys.executable)
    written = []
    # Linux passes everything after the interpreter in a shebang as one argument, so "-SE" is one
    # option cluster; an interpreter path with spaces cannot be a shebang at all.
    direct = " " not in sys.executable and len(sys.executable) < 120
    for flavour in ("xl", "xm"):
        path = bdir / flavour
        if direct:
            # A Python script run by its shebang: `ps` shows "python -SE BINDIR/xl save 3 …", as the
            # classic script's watchdog (`ps axlw | grep "$CMD save"`) expects of a real xl.
            path.write_text(
                f"#!{sys.executable} -SE\n"
                f"# simulated {flavour} (xdsim): acts on the host in {state}\n"
                "import sys\n"
                f"sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
                "from xdcore.sim.tool import main\n"
                f"sys.exit(main([{flavour!r}, '--state', {str(Path(state_dir).resolve())!r}, *sys.argv[1:]]))\n"
            )
        else:
            path.write_text(
                "#!/bin/sh\n"
                f"# simulated {flavour} (xdsim): acts on the host in {state}\n"
                f"PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}\n"
                "export PYTHONPATH\n"
                f"exec {python} -S -m xdcore.sim.tool {flavour} --state {state} \"$@\"\n"
            )
        path.chmod(0o755)
        written.append(path)
    # ssh: reaches the other hosts of a simulated pool by name (sim/pool.py) and runs their xl
    path = bdir / "ssh"
    if direct:
        path.write_text(
            f"#!{sys.executable} -SE\n"
            f"# simulated ssh (xdsim): reaches the pool of the host in {state}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
            "from xdcore.sim.pool import main\n"
            f"sys.exit(main(['--state', {str(Path(state_dir).resolve())!r}, *sys.argv[1:]]))\n"
        )
    else:
        path.write_text(
            "#!/bin/sh\n"
            f"# simulated ssh (xdsim): reaches the pool of the host in {state}\n"
            f"PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}\n"
            "export PYTHONPATH\n"
            f"exec {python} -S -m xdcore.sim.pool --state {state} \"$@\"\n"
        )
    path.chmod(0o755)
    written.append(path)
    return written


def guest_config_text(name: str, memory_mib: int, vcpus: int, domain_type: str = "pvh",
                      maxmem_mib: int | None = None, uuid: str | None = None) -> str:
    """A plausible xl config for a guest."""
    lines = [
        f"# {name}: managed by xendomains (simulated host)",
        f'name = "{name}"',
        f'type = "{domain_type}"',
        'kernel = "/boot/vmlinuz-6.1.0-26-amd64"',
        'ramdisk = "/boot/initrd.img-6.1.0-26-amd64"',
        'extra = "root=/dev/xvda1 console=hvc0"',
        f"memory = {memory_mib}",
    ]
    if maxmem_mib:
        lines.append(f"maxmem = {maxmem_mib}")
    lines.append(f"vcpus = {vcpus}")
    if uuid:
        lines.append(f'uuid = "{uuid}"')
    lines += [
        f"disk = [ 'phy:/dev/vg0/{name}-disk,xvda,w' ]",
        "vif = [ 'bridge=xenbr0' ]",
        'on_reboot = "restart"',
        'on_crash = "restart"',
    ]
    return "\n".join(lines) + "\n"


def config_of(path: Path) -> dict:
    return domconfig.build(parse(path.read_text(), str(path)))


def add_domain(state_dir: str | os.PathLike[str], config: dict, *, config_path: str | None = None,
               flags: str = "-b----", domid: int | None = None, cpu_time: float = 0.0,
               cpu_rate: float | None = None, memory_mib: int | None = None, userdata: str = "created",
               devices_in_xenstore: bool = True, start_time: float | None = None) -> int:
    """Put a running domain on the host directly (no latency); returns its domid.

    userdata: "created" (what libxl stores at create), "dryrun" (the bare dry-run JSON, as in
    some of the reference captures) or "none" (no stored JSON: left out of `xl list -l`).
    """
    from .xlcmd import domain_from_config

    now = time.time()
    with host.transaction(state_dir) as st:
        dom = domain_from_config(st, config, config_path, now, devices_in_xenstore)
        if domid is not None:
            st.next_domid -= 1
            dom.domid = domid
        if st.by_id(dom.domid) is not None or st.by_name(dom.name) is not None:
            raise ValueError(f"domain {dom.name} (id {dom.domid}) already exists")
        if memory_mib is not None:
            dom.memory_kib = dom.current_kib = memory_mib * 1024
        dom.flags = flags
        dom.cpu_time = cpu_time
        dom.cpu_rate = dom.cpu_rate if cpu_rate is None else cpu_rate
        dom.start_time = now if start_time is None else start_time
        if userdata == "dryrun":
            dom.userdata = config
        elif userdata == "none":
            dom.userdata = None
        if flags[5] == "d":
            dom.current_kib = 0  # (a dying domain's memory is gone; xl still counts its vCPUs)
        st.add(dom)
        return dom.domid


def write_save_image(config: dict, path: Path) -> Path:
    """A complete xl save image of a guest with this config (as `xl save` writes it)."""
    b_info = config["b_info"]
    mem = int(b_info.get("target_memkb", 32768))
    retrieved = domconfig.retrieve(
        domconfig.userdata_from(config), domid=1, name=config["c_info"]["name"],
        uuid=config["c_info"].get("uuid", ""), online_vcpus=len(b_info.get("avail_vcpus", [0])),
        max_kib=int(b_info.get("max_memkb", mem)), target_kib=mem, devices_in_xenstore=True, warnings=[])
    header, _ = images.xl_header(yajl.dumps(domconfig.for_save_image(retrieved)) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + images.payload(mem))
    return path


def make_host(state_dir: str | os.PathLike[str], guests=(), *, configs_dir: str | os.PathLike[str] | None = None,
              auto=(), saved=(), fast: bool = True, bin_dir: str | os.PathLike[str] | None = None) -> HostLayout:
    """A host with `guests` running ((name, mem_mib, vcpus) or (name, mem, vcpus, flags)).

    `auto`: guest names whose config gets a symlink in auto/; `saved`: (name, mem, vcpus) guests
    that do not run but have an image in save/.  fast=True uses tiny latencies.
    """
    sdir = Path(state_dir)
    host.init_state(sdir, fast=fast)
    cdir = Path(configs_dir) if configs_dir else sdir / "configs"
    layout = HostLayout(sdir, Path(bin_dir) if bin_dir else sdir / "bin", cdir, sdir / "auto", sdir / "save")
    for d in (cdir, layout.auto_dir, layout.save_dir):
        d.mkdir(parents=True, exist_ok=True)
    write_shims(sdir, layout.bin_dir)
    for spec in guests:
        name, mem, vcpus = spec[0], spec[1], spec[2]
        flags = spec[3] if len(spec) > 3 else "-b----"
        path = cdir / f"{name}.cfg"
        path.write_text(guest_config_text(name, mem, vcpus))
        layout.configs[name] = path
        add_domain(sdir, config_of(path), config_path=str(path), flags=flags)
    for name, mem, vcpus in saved:
        path = cdir / f"{name}.cfg"
        path.write_text(guest_config_text(name, mem, vcpus))
        layout.configs[name] = path
        layout.images[name] = write_save_image(config_of(path), layout.save_dir / name)
    for name in auto:
        link = layout.auto_dir / f"{name}.cfg"
        if not link.exists():
            link.symlink_to(layout.configs[name])
    return layout
