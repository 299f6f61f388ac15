"""A simulated host laid out for a benchmark, with shims that count every `xl` they run.

Why not `xdcore.sim.testing.make_host` as is: it adds guests one state
transaction each (fine for a test's handful, O(N²) for 200), and its shims
count nothing.  `build_host` lays out the same host — a real xl config per
guest, created from that file exactly as `add_domain` does, auto/ symlinks —
in one transaction, then sets the latencies with `xdsim latency`.

`write_counting_shims` writes BINDIR/xl and BINDIR/xm like `write_shims`
(a Python script run by its shebang, so `ps` shows "BINDIR/xl save …" as the
classic watchdog expects) that first append their argv as one line to a
count file (one O_APPEND write: atomic between concurrent shims), so reads
(`xl list -l`, `xl create --dryrun`) are counted as well as the
state-changing commands the sim's history records.  They run the interpreter
with -S: the simulator needs only the standard library, and skipping
site-packages (.pth files, the editable-install finder) halves the start-up
of every simulated `xl` — a real xl is a C program that starts in a few
milliseconds, and both the classic script and ours pay this per process.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xdcore.sim import host
from xdcore.sim.cli import main as xdsim
from xdcore.sim.testing import PACKAGE_ROOT, config_of, guest_config_text
from xdcore.sim.xlcmd import domain_from_config

#: latency of every operation but the one under test: "~0"
NEAR_ZERO = {"create": 0.0, "restore": 0.0, "save": 0.0, "migrate": 0.0, "shutdown": 0.0, "ack": 0.0,
             "destroy": 0.0, "sysrq": 0.0, "list": 0.0}


@dataclass(frozen=True)
class BenchHost:
    root: Path
    state_dir: Path
    bin_dir: Path
    auto_dir: Path
    save_dir: Path
    count_file: Path
    names: tuple[str, ...]

    def xl_calls(self) -> list[list[str]]:
        """argv (without "xl") of every xl/xm run so far."""
        try:
            lines = self.count_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split("\t")[1:] for line in lines if line]

    def reset_count(self) -> None:
        self.count_file.write_text("")

    def running(self) -> list[str]:
        """Names of the guests that run now (Domain-0 excluded)."""
        return [d.name for d in host.load_snapshot(self.state_dir).domains if d.domid != 0]


def write_counting_shims(state_dir: Path, bin_dir: Path, count_file: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for flavour in ("xl", "xm"):
        path = bin_dir / flavour
        path.write_text(
            f"#!{sys.executable} -S\n"
            f"# simulated {flavour} (xdsim) that counts its invocations in {count_file}\n"
            "import os, sys\n"
            f"_fd = os.open({str(count_file)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
            f"os.write(_fd, '\\t'.join([{flavour!r}, *sys.argv[1:]]).replace('\\n', ' ').encode() + b'\\n')\n"
            "os.close(_fd)\n"
            f"sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
            "from xdcore.sim.tool import main\n"
            f"sys.exit(main([{flavour!r}, '--state', {str(state_dir.resolve())!r}, *sys.argv[1:]]))\n"
        )
        path.chmod(0o755)


def build_host(root: Path, guests: int, *, auto: bool, latency: dict[str, float], mem_mib: int = 128,
               prefix: str = "vm") -> BenchHost:
    """A fresh host under root with `guests` running guests (all in auto/ if `auto`)."""
    state = root / "host"
    host.init_state(state, fast=True)
    configs, auto_dir, save_dir, bin_dir = state / "configs", state / "auto", state / "save", root / "bin"
    for d in (configs, auto_dir, save_dir):
        d.mkdir(parents=True, exist_ok=True)
    names = tuple(f"{prefix}{i:03d}" for i in range(guests))
    paths = []
    for name in names:
        p = configs / f"{name}.cfg"
        p.write_text(guest_config_text(name, mem_mib, 1))
        paths.append(p)
        if auto:
            (auto_dir / p.name).symlink_to(p)
    built = [config_of(p) for p in paths]
    now = time.time()
    with host.transaction(state) as st:
        st.total_memory_mib = max(st.total_memory_mib, 4096 + guests * mem_mib)
        for p, config in zip(paths, built):
            dom = domain_from_config(st, config, str(p), now, True)
            dom.flags = "-b----"
            dom.start_time = now
            st.add(dom)
    for op, seconds in {**NEAR_ZERO, **latency}.items():
        xdsim(["--state", str(state), "latency", op, repr(float(seconds))])
    count = root / "xl-calls.txt"
    write_counting_shims(state, bin_dir, count)
    count.write_text("")
    return BenchHost(root, state, bin_dir, auto_dir, save_dir, count, names)


def bench_env(h: BenchHost, pycache: Path | None) -> dict[str, str]:
    """The environment every benchmarked process runs in: shims first on PATH.

    pycache: keep compiled bytecode there (PYTHONPYCACHEPREFIX), as an installed
    package has its .pyc files; None leaves the caller's bytecode settings.
    """
    env = dict(os.environ)
    env["PATH"] = f"{h.bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["XDSIM_STATE"] = str(h.state_dir)
    env.pop("XENDOMAINS_CONFIG", None)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env
