"""Small helpers for the simulator tests: run the shims, build the reference host, wait."""

from __future__ import annotations

import subprocess
from pathlib import Path

from xdcore.sim import host
from xdcore.sim.testing import add_domain, config_of, guest_config_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xen"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def run(tool: str, *args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the shim `tool` (found on PATH) and capture bytes."""
    return subprocess.run([tool, *args], capture_output=True, timeout=timeout, env=env)


def reference_host(state: Path, *, all_states: bool = True, debian_userdata: str = "created") -> None:
    """The host of xen-reference §1.3: dom0 + debian12 (id 3) [+ the guests in odd states]."""
    with host.transaction(state) as st:
        dom0 = st.by_id(0)
        dom0.cpu_time, dom0.cpu_rate = 11794.3, 0.0
        st.next_domid = 3
    cfg = config_of(FIXTURES / "debian12.cfg")
    add_domain(state, cfg, config_path=str(FIXTURES / "debian12.cfg"), domid=3, cpu_time=5624.2,
               cpu_rate=0.0, devices_in_xenstore=False, userdata=debian_userdata)
    if not all_states:
        return
    cfgdir = state / "configs"
    cfgdir.mkdir(exist_ok=True)
    for domid, name, flags, cpu in [(4, "paused-vm", "--p---", 12.3), (5, "shutdown-poweroff", "---s--", 99.0),
                                    (7, "suspended", "-b-ss-", 99.0), (8, "crashed", "---sc-", 99.0),
                                    (9, "zombie-blocked-dying", "-b---d", 99.0)]:
        path = cfgdir / f"{name}.cfg"
        path.write_text(guest_config_text(name, 512, 1, uuid=f"11111111-0000-0000-0000-{domid:012d}"))
        add_domain(state, config_of(path), config_path=str(path), domid=domid, flags=flags, cpu_time=cpu,
                   cpu_rate=0.0, userdata="none")
