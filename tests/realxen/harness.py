"""Boot a real Xen host in QEMU and run the project's scenarios in its dom0.

Debian 12's Xen 4.17 hypervisor, Debian's 6.1 kernel as a PV dom0 and Debian's
own `xl` run inside `qemu-system-x86_64` under TCG (KVM does not work on the
machines we run on).  Nothing Xen is installed on the host: the packages are
`apt-get download`ed and `dpkg-deb -x`tracted into the cache.  dom0 gets
Debian's python3.11 and the project's dependencies (installed for it into a
cached target directory) in its initramfs, and this checkout (byte-compiled,
packed as project.tar) through the writable 9p share of the run's directory
(the checkout itself is also shared read-only at /mnt/src); it runs
tests/realxen/dom0/scenarios.py, which writes one result.json per scenario (and
the logs they looked at) back into that share.

Everything downloaded or built is cached under ~/.cache/xendomains-realxen
($XENDOMAINS_REALXEN_CACHE): a second run costs only the QEMU time.

    python -m tests.realxen.harness [SCENARIO ...]     # boot once, print where the results are
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
DOM0_FILES = HERE / "dom0"
#: the files of DOM0_FILES built into the images (scenarios.py is read from the 9p share at each boot)
IMAGE_INPUTS = ("dom0-init", "guest-rcS", "guest-inittab")
CACHE = Path(os.environ.get("XENDOMAINS_REALXEN_CACHE", "~/.cache/xendomains-realxen")).expanduser()

XEN = "4.17"
XEN_PACKAGES = (
    f"xen-hypervisor-{XEN}-amd64", f"xen-utils-{XEN}", "xen-utils-common", "xenstore-utils",
    "libxencall1", "libxendevicemodel1", "libxenevtchn1", "libxenforeignmemory1", "libxengnttab1",
    "libxenhypfs1", f"libxenmisc{XEN}", "libxenstore4", "libxentoolcore1", "libxentoollog1", "libyajl2",
)
#: host packages the harness uses (.ci/run installs them)
HOST_PACKAGES = ("qemu-system-x86", "busybox-static", "cpio", "xz-utils", "python3.11", "tmux")
#: the project's runtime dependencies, installed for dom0's python3.11
DOM0_PYTHON_DEPS = ("psutil>=5.9", "textual==8.2.8")
DOM0_PYTHON = Path("/usr/bin/python3.11")  # Debian's: dom0 gets this very binary and stdlib
DOM0_MODULES = ("xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc virtio_ring virtio virtio_pci_legacy_dev "
                "virtio_pci_modern_dev virtio_pci virtio-rng netfs fscache 9pnet 9pnet_virtio 9p").split()
#: bump when the image layout changes in a way the content hash below does not see
BUILD_VERSION = "1"

QEMU_MEM_MIB = 4096
DOM0_MEM = "1536M"
BOOT_TIMEOUT_S = float(os.environ.get("XENDOMAINS_REALXEN_TIMEOUT", "2700"))
END_MARKER = "XDREALXEN-DONE"


class Unavailable(Exception):
    """QEMU cannot run here at all (the only reason the real-Xen tests skip)."""


def log(msg: str) -> None:
    print(f"[realxen] {msg}", file=sys.stderr, flush=True)


def _run(*argv: str | Path, cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def qemu_unavailable() -> str | None:
    """Why QEMU cannot run on this machine, or None."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; .ci/run does it)"
    done = subprocess.run([qemu, "-machine", "none", "-accel", "tcg", "-display", "none", "-S", "-monitor", "none",
                           "-serial", "none", "-no-user-config", "-nodefaults", "-version"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"qemu-system-x86_64 cannot run: {done.stderr.strip()[:300]}"
    return None


def missing_host_tools() -> list[str]:
    need = {"busybox-static": "/bin/busybox", "cpio": "cpio", "xz-utils": "xz", "python3.11": str(DOM0_PYTHON),
            "tmux": "tmux", "apt-get": "apt-get", "dpkg-deb": "dpkg-deb"}
    return [pkg for pkg, tool in need.items() if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool))]


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- downloads


def debs() -> Path:
    """Xen's and the kernel's .debs, downloaded once (apt-get download)."""
    kpkg = next(line.split()[-1] for line in _run("apt-cache", "depends", "linux-image-amd64").splitlines()
                if line.strip().startswith("Depends: linux-image-"))
    d = CACHE / "debs"
    stamp = d / ".done"
    if stamp.exists():
        return d
    if d.exists():
        shutil.rmtree(d)
    tmp = CACHE / "debs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.chmod(tmp, 0o777)  # apt's _apt user downloads into it
    log(f"apt-get download {kpkg} and the Xen {XEN} packages")
    _run("apt-get", "download", *XEN_PACKAGES, kpkg, cwd=tmp)
    (tmp / ".done").write_text("\n".join(sorted(p.name for p in tmp.glob("*.deb"))) + "\n")
    tmp.rename(d)
    return d


def extracted() -> Path:
    """The .debs unpacked into one tree (dpkg-deb -x): nothing is installed on the host."""
    src = debs()
    x = CACHE / "root"
    key = (src / ".done").read_text()
    if (x / ".done").exists() and (x / ".done").read_text() == key:
        return x
    shutil.rmtree(x, ignore_errors=True)
    tmp = CACHE / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in sorted(src.glob("*.deb")):
        _run("dpkg-deb", "-x", deb, tmp)
    (tmp / ".done").write_text(key)
    tmp.rename(x)
    return x


def python_deps() -> Path:
    """The project's dependencies, installed for Debian's python3.11 (manylinux wheels) into a cached target."""
    key = _digest(*DOM0_PYTHON_DEPS)
    target = CACHE / f"pylib-{key}"
    if (target / ".done").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    tmp = CACHE / f"pylib-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"pip install --target for dom0's python3.11: {' '.join(DOM0_PYTHON_DEPS)}")
    _run(sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
         "--target", tmp, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "--only-binary=:all:",
         *DOM0_PYTHON_DEPS)
    shutil.rmtree(tmp / "bin", ignore_errors=True)
    # byte-compile with dom0's own interpreter so that no python in dom0 compiles anything
    _run(DOM0_PYTHON, "-m", "compileall", "-q", "-j", "0", tmp)
    (tmp / ".done").touch()
    tmp.rename(target)
    return target


# ---------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Images:
    xen: Path
    dom0_kernel: Path
    dom0_initrd: Path
    kver: str
    versions: dict


def _vmlinux(bzimage: Path, out: Path) -> None:
    """Cut the xz payload out of the bzImage (extract-vmlinux): each `xl create` then takes ~2 s, not ~15 s."""
    data = bzimage.read_bytes()
    off = data.find(b"\xfd7zXZ\x00")
    if off < 0:
        raise RuntimeError(f"{bzimage}: no xz payload")
    done = subprocess.run(["xz", "-dc"], input=data[off:], capture_output=True)
    if not done.stdout.startswith(b"\x7fELF"):
        raise RuntimeError(f"{bzimage}: the xz payload is not an ELF kernel")
    out.write_bytes(done.stdout)


def _busybox_root(root: Path) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    for applet in _run("/bin/busybox", "--list-full").split():
        p = root / applet
        if not p.exists() and not p.is_symlink():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to("/bin/busybox")


def _cpio(root: Path, out: Path, gzip: bool = False) -> None:
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    with open(out, "wb") as f:
        cp = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE if gzip else f)
        if gzip:
            gz = subprocess.Popen(["gzip", "-6"], stdin=cp.stdout, stdout=f)
            cp.stdout.close()
        cp.communicate(files)
        if gzip:
            gz.wait()
    if cp.returncode:
        raise RuntimeError(f"cpio of {root} failed")


def _needed_libs(binaries: list[Path], extra_lib_dir: Path) -> set[Path]:
    env = dict(os.environ, LD_LIBRARY_PATH=str(extra_lib_dir))
    libs: set[Path] = set()
    for b in binaries:
        done = subprocess.run(["ldd", str(b)], capture_output=True, text=True, env=env)
        for line in done.stdout.splitlines():
            parts = line.split("=>")
            if len(parts) == 2 and parts[1].strip().startswith("/"):
                libs.add(Path(parts[1].split()[0]))
    return libs


def images() -> Images:
    """Xen, dom0's kernel and dom0's initramfs (with the guests' kernel and initrd inside), built once."""
    x = extracted()
    pylib = python_deps()
    kver = sorted(p.name for p in (x / "lib/modules").iterdir())[0]
    inputs = [DOM0_FILES / n for n in IMAGE_INPUTS]
    key = _digest(BUILD_VERSION, (x / ".done").read_text(), pylib.name, DOM0_MEM,
                  *(p.name + p.read_text() for p in inputs), Path(__file__).read_text())
    b = CACHE / f"build-{key}"
    if (b / "images.json").exists():
        meta = json.loads((b / "images.json").read_text())
        return Images(b / "xen.bin", b / "vmlinux", b / "dom0.cpio", kver, meta["versions"])
    for old in CACHE.glob("build-*"):  # never one another run may be booting from (CI may share the cache)
        if old.is_dir() and time.time() - old.stat().st_mtime > 2 * 86400:
            shutil.rmtree(old, ignore_errors=True)
    t0 = time.monotonic()
    tmp = CACHE / f"build-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    xen_gz = x / f"boot/xen-{XEN}-amd64.gz"
    import gzip

    (tmp / "xen.bin").write_bytes(gzip.decompress(xen_gz.read_bytes()))  # ELF32 multiboot: QEMU -kernel boots it
    _vmlinux(x / f"boot/vmlinuz-{kver}", tmp / "vmlinux")

    # the guests: busybox init, a heartbeat on the console, modes chosen on the kernel command line
    g = tmp / "guestroot"
    _busybox_root(g)
    (g / "init").symlink_to("/bin/busybox")
    shutil.copy(DOM0_FILES / "guest-rcS", g / "etc/rcS")
    os.chmod(g / "etc/rcS", 0o755)
    shutil.copy(DOM0_FILES / "guest-inittab", g / "etc/inittab")
    _cpio(g, tmp / "guest-initrd.gz", gzip=True)

    r = tmp / "dom0root"
    _busybox_root(r)
    shutil.copy(DOM0_FILES / "dom0-init", r / "init")
    os.chmod(r / "init", 0o755)
    xbin = r / f"usr/lib/xen-{XEN}/bin"
    xbin.mkdir(parents=True)
    lib = r / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in ("xl", "xenstored", "xenconsoled", "libxl-save-helper", "xen-init-dom0", "xenstore-control"):
        shutil.copy2(x / f"usr/lib/xen-{XEN}/bin/{name}", xbin / name)
    for p in (x / "usr/bin").glob("xenstore*"):
        dst = r / "usr/bin" / p.name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if p.is_symlink():
            dst.symlink_to(os.readlink(p))
        else:
            shutil.copy2(p, dst)
    # as on Debian: /usr/sbin/xl -> xen-utils-wrapper -> /usr/lib/xen-4.17/bin/xl
    shutil.copy2(x / "usr/lib/xen-common/bin/xen-utils-wrapper", r / "usr/sbin/xen-utils-wrapper")
    for name in ("xl", "xenstored", "xenconsoled", "xen-init-dom0"):
        (r / "usr/sbin" / name).symlink_to("xen-utils-wrapper")
    for p in (x / "usr/lib/x86_64-linux-gnu").iterdir():
        if p.name.startswith(("libxen", "libxl", "libyajl")) and ".so." in p.name:
            shutil.copy2(p, lib / p.name, follow_symlinks=True)
    # Debian's python3.11 and its stdlib (with Debian's byte-compiled caches), the deps, tmux
    (r / "usr/bin/python3.11").write_bytes(DOM0_PYTHON.read_bytes())
    os.chmod(r / "usr/bin/python3.11", 0o755)
    (r / "usr/bin/python3").symlink_to("python3.11")
    skip = {"test", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo", "pydoc_data", "dist-packages",
            "site-packages"}
    shutil.copytree("/usr/lib/python3.11", r / "usr/lib/python3.11", symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in skip or n.startswith("config-")])
    site = r / "usr/local/lib/python3.11/dist-packages"
    shutil.copytree(pylib, site, symlinks=True, ignore=shutil.ignore_patterns(".done"))
    (site / "xendomains-checkout.pth").write_text("/opt/xendomains/src\n")  # dom0-init copies the checkout there
    for script, module in (("xendomains", "xdcore.cli"), ("xdtui", "xdtui.cli"), ("xdsim", "xdcore.sim.cli")):
        p = r / "usr/local/bin" / script
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"#!/usr/bin/python3.11\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        os.chmod(p, 0o755)
    shutil.copy2(shutil.which("tmux"), r / "usr/bin/tmux")
    for tdir in ("/lib/terminfo", "/usr/share/terminfo"):
        for name in ("x/xterm", "x/xterm-256color", "s/screen", "s/screen-256color", "t/tmux", "t/tmux-256color",
                     "l/linux", "v/vt100", "d/dumb"):
            src = Path(tdir) / name
            if src.exists():
                dst = r / "usr/share/terminfo" / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst, follow_symlinks=True)
    # the host's glibc & co (Debian 12 as well: the same ABI as Debian's xl and python3.11)
    bins = [p for p in xbin.iterdir()] + [r / "usr/bin/xenstore", r / "usr/bin/python3.11", r / "usr/bin/tmux"]
    bins += list((r / "usr/lib/python3.11/lib-dynload").glob("*.so")) + list(site.rglob("*.so"))
    for so in _needed_libs(bins, x / "usr/lib/x86_64-linux-gnu"):
        if not str(so).startswith(str(x)) and not (lib / so.name).exists():
            shutil.copy2(so, lib / so.name, follow_symlinks=True)
    # dlopen()ed, so ldd does not list them: glibc's pthread_cancel needs libgcc_s (xl aborts at exit without);
    # psutil's C extension wants libpthread
    for name in ("libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1"):
        src = Path("/lib/x86_64-linux-gnu") / name
        if src.exists() and not (lib / name).exists():
            shutil.copy2(src, lib / name, follow_symlinks=True)
    (r / "lib64").mkdir()
    shutil.copy2("/lib64/ld-linux-x86-64.so.2", r / "lib64/ld-linux-x86-64.so.2", follow_symlinks=True)
    (r / "lib").mkdir(exist_ok=True)
    (r / "lib/x86_64-linux-gnu").symlink_to("/usr/lib/x86_64-linux-gnu")
    mods = r / "lib/modules"
    mods.mkdir(parents=True)
    for m in DOM0_MODULES:
        found = next((x / "lib/modules" / kver).rglob(f"{m}.ko"), None)
        if found is None:
            raise RuntimeError(f"kernel module {m}.ko not found in {kver}")
        shutil.copy2(found, mods / found.name)
    (mods / "load-order").write_text(" ".join(DOM0_MODULES) + "\n")
    (r / "etc/xen").mkdir(parents=True)
    shutil.copy2(x / "etc/xen/xl.conf", r / "etc/xen/xl.conf")
    shutil.copytree(x / "etc/xen/scripts", r / "etc/xen/scripts", symlinks=True)
    (r / "guest").mkdir()
    shutil.copy2(tmp / "vmlinux", r / "guest/kernel")
    shutil.copy2(tmp / "guest-initrd.gz", r / "guest/initrd.gz")
    shutil.copytree("/usr/lib/locale/C.utf8", r / "usr/lib/locale/C.utf8")  # tmux wants a UTF-8 locale
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "etc/group").write_text("root:x:0:\n")
    (r / "etc/hosts").write_text("127.0.0.1 localhost\n")
    # uncompressed: gunzip inside the emulated dom0 is slower than Xen copying a bigger module
    _cpio(r, tmp / "dom0.cpio")
    shutil.rmtree(r)
    shutil.rmtree(g)
    versions = {
        "xen_package": _deb_version(x, f"xen-hypervisor-{XEN}-amd64"),
        "xl_package": _deb_version(x, f"xen-utils-{XEN}"),
        "kernel": kver,
        "kernel_package": _deb_version(x, f"linux-image-{kver}"),
        "python": _run(DOM0_PYTHON, "-c", "import platform; print(platform.python_version())").strip(),
        "deps": sorted(p.name for p in pylib.glob("*.dist-info")),
    }
    (tmp / "images.json").write_text(json.dumps({"versions": versions}, indent=1))
    tmp.rename(b)
    log(f"images built in {time.monotonic() - t0:.1f}s: {b}")
    return Images(b / "xen.bin", b / "vmlinux", b / "dom0.cpio", kver, versions)


def _deb_version(x: Path, pkg: str) -> str:
    for deb in (CACHE / "debs").glob(f"{pkg}_*.deb"):
        return deb.name.split("_")[1].replace("%3a", ":")
    return "?"


# ---------------------------------------------------------------------------------- boot


@dataclass
class Boot:
    out: Path  # the 9p output share: request.json, one directory per scenario, runner.log
    serial: Path
    seconds: float
    qemu_rc: int | None
    finished: bool  # the end marker was seen
    versions: dict

    def tail(self, n: int = 60) -> str:
        try:
            lines = self.serial.read_text(errors="replace").splitlines()
        except OSError:
            return "(no serial log)"
        return "\n".join(lines[-n:])

    def result(self, scenario: str) -> dict | None:
        p = self.out / scenario / "result.json"
        return json.loads(p.read_text()) if p.exists() else None


#: what dom0 gets of the checkout (dom0-init unpacks it into /opt/xendomains/src, on sys.path there)
PROJECT_DIRS = ("xdcore", "xdtui", "tests/realxen/dom0")


def _pack_checkout(out: Path) -> None:
    """Byte-compile the checkout with dom0's python3.11 (on the host: fast; in dom0: seconds per module) and
    pack it for dom0 into the output share."""
    subprocess.run([str(DOM0_PYTHON), "-m", "compileall", "-q", "-j", "0", *PROJECT_DIRS], cwd=CHECKOUT,
                   capture_output=True)
    import tarfile

    with tarfile.open(out / "project.tar", "w") as tar:
        for d in PROJECT_DIRS:
            tar.add(CHECKOUT / d, arcname=d)


def boot(scenarios: list[str], out: Path | None = None, timeout: float = BOOT_TIMEOUT_S,
         options: dict | None = None) -> Boot:
    """Boot Xen in QEMU once and run `scenarios` (in that order) in dom0; return where the results are."""
    why = qemu_unavailable()
    if why:
        raise Unavailable(why)
    missing = missing_host_tools()
    if missing:
        raise RuntimeError(f"missing host packages: {' '.join(missing)} (.ci/run installs them with apt-get)")
    img = images()
    out = out or CACHE / "runs" / time.strftime("%Y%m%dT%H%M%S")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _pack_checkout(out)
    latest = CACHE / "runs" / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out.name)
    (out / "request.json").write_text(json.dumps({"scenarios": scenarios, "options": options or {},
                                                       "versions": img.versions}, indent=1))
    xen_cmdline = (f"console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem={DOM0_MEM},max:{DOM0_MEM} "
                   "noreboot")
    dom0_cmdline = "console=hvc0 earlyprintk=xen loglevel=6"
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "qemu64", "-smp", "2",
            "-m", str(QEMU_MEM_MIB), "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "virtio-rng-pci",
            "-virtfs", f"local,path={CHECKOUT},mount_tag=src,security_model=none,readonly=on",
            "-virtfs", f"local,path={out},mount_tag=out,security_model=none",
            "-kernel", str(img.xen), "-append", xen_cmdline,
            "-initrd", f"{img.dom0_kernel} {dom0_cmdline},{img.dom0_initrd}",
            "-serial", "stdio"]
    serial = out / "serial.log"
    log(f"booting Xen in QEMU for {', '.join(scenarios)} (results: {out})")
    t0 = time.monotonic()
    finished = threading.Event()
    with open(serial, "w") as slog:
        q = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def pump() -> None:
            assert q.stdout is not None
            for raw in q.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                slog.write(f"[{time.monotonic() - t0:7.2f}] {line}\n")
                slog.flush()
                if END_MARKER in line:
                    finished.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = q.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            log(f"QEMU still running after {timeout:.0f}s: killed")
        finally:
            if q.poll() is None:
                q.kill()
                q.wait()
        reader.join(timeout=10)
    secs = time.monotonic() - t0
    (out / "boot.json").write_text(json.dumps({"seconds": round(secs, 1), "qemu_rc": rc,
                                               "finished": finished.is_set(), "versions": img.versions}, indent=1))
    log(f"QEMU ran {secs:.1f}s (exit {rc}, end marker {'seen' if finished.is_set() else 'MISSING'})")
    return Boot(out, serial, secs, rc, finished.is_set(), img.versions)


def main(argv: list[str]) -> int:
    from tests.realxen.dom0.scenarios import ORDER  # noqa: PLC0415  the order lives with the dom0 runner

    opts = {"tui": os.environ.get("XDREALXEN_TUI", "1") == "1"}
    wanted = argv or list(ORDER)
    b = boot(wanted, options=opts)
    for s in wanted:
        r = b.result(s)
        print(f"{s:12} {'(no result)' if r is None else ('ok' if not r.get('error') else 'ERROR ' + r['error'][:200])}")
    print(f"serial log: {b.serial}\nresults: {b.out}\nQEMU {b.seconds:.1f}s")
    return 0 if b.finished else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
