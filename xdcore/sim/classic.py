"""The classic upstream `xendomains` shell script, run against a simulated host.

Debian's xen-utils-4.17 ships the upstream script as
/usr/lib/xen-4.17/bin/xendomains.  `fetch_classic()` gets it the way an
administrator would (`apt-get download` + `dpkg -x`, cached), and
`prepare_classic()` points its few hard-wired paths at a simulated host:
`. /etc/xen/scripts/hotplugpath.sh` becomes the definitions of `sbindir`,
`bindir` and `XEN_LOCK_DIR`; `/etc/default/xendomains` becomes the given
config; the /proc/xen/privcmd probe is dropped (there is no hypervisor).
Nothing else is changed, so its greps of `xl list -l` and
`xl create --dryrun` output run unmodified against the simulator's xl —
the proof that the simulator prints what the real xl prints — and it is
the baseline of the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "xen-utils-4.17"
SCRIPT_IN_PACKAGE = "usr/lib/xen-4.17/bin/xendomains"


class ClassicUnavailable(RuntimeError):
    """The Debian package could not be fetched (no apt-get, no network, …)."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDSIM_CLASSIC_CACHE", Path.home() / ".cache" / "xendomains-classic"))


def fetch_classic(cache: Path | None = None) -> Path:
    """Path of the pristine upstream script, downloading the Debian package once.

    $XDSIM_CLASSIC_DEB names an already downloaded xen-utils .deb to extract
    instead (offline machines); the result is cached like a download.
    """
    cache = cache or cache_dir()
    script = cache / "x" / SCRIPT_IN_PACKAGE
    if script.is_file():
        return script
    local = os.environ.get("XDSIM_CLASSIC_DEB")
    if local:
        return _extract(Path(local), cache, script)
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise ClassicUnavailable("apt-get and dpkg are needed to fetch the classic script")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # as root, apt drops privileges to _apt for downloads: give it a directory it may write
        os.chmod(tmp, 0o777)
        r = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            u = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            r = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                raise ClassicUnavailable(f"apt-get download {PACKAGE} failed: {r.stderr.strip() or u.stderr.strip()}")
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise ClassicUnavailable(f"apt-get download {PACKAGE} produced no .deb")
        return _extract(debs[0], cache, script)


def _extract(deb: Path, cache: Path, script: Path) -> Path:
    if not shutil.which("dpkg"):
        raise ClassicUnavailable("dpkg is needed to unpack the classic script")
    if not deb.is_file():
        raise ClassicUnavailable(f"{deb}: no such package file")
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dpkg", "-x", str(deb), str(cache / "x")], capture_output=True, text=True)
    if r.returncode != 0:
        raise ClassicUnavailable(f"dpkg -x {deb} failed: {r.stderr.strip()}")
    if not script.is_file():
        raise ClassicUnavailable(f"{SCRIPT_IN_PACKAGE} not found in {deb.name}")
    return script


def prepare_classic(original: Path, dest: Path, *, bindir: Path, config: Path, lock_dir: Path) -> Path:
    """Write a copy of the classic script whose hard-wired paths point at the simulated host."""
    text = original.read_text()
    hotplug = ". /etc/xen/scripts/hotplugpath.sh"
    privcmd = "if [ ! -e /dev/xen/privcmd ] && [ ! -e /proc/xen/privcmd ]; then"
    for needle in (hotplug, "XENDOM_CONFIG=/etc/default/xendomains", privcmd):
        if needle not in text:
            raise ClassicUnavailable(f"the classic script changed: {needle!r} not found")
    text = text.replace(hotplug, f'sbindir="{bindir}"\nbindir="{bindir}"\nXEN_LOCK_DIR="{lock_dir}"')
    text = text.replace("XENDOM_CONFIG=/etc/default/xendomains", f'XENDOM_CONFIG="{config}"')
    text = text.replace(privcmd, "if false; then")
    dest.write_text(text)
    dest.chmod(0o755)
    return dest


def classic_env(bindir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    return env
