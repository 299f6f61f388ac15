"""xdsim commands, the shims' cheap start, and the hooks the XenStore side relies on."""

from __future__ import annotations

import subprocess
import sys

from xdcore.sim import host, xsbridge
from xdcore.sim.cli import main as xdsim
from xdcore.sim.inprocess import SimToolstack
from xdcore.sim.testing import make_host

from .helpers import run


def test_the_shim_path_imports_no_asyncio_psutil_or_ui(sim_state):
    code = ("import sys; from xdcore.sim.tool import main; rc = main(['xl', '--state', %r, 'list']);"
            "bad = [m for m in ('asyncio', 'psutil', 'textual', 'rich') if m in sys.modules];"
            "print(bad, file=sys.stderr); sys.exit(9 if bad else rc)") % str(sim_state)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_shims_are_small_scripts_with_an_absolute_interpreter_that_ps_shows_as_bindir_xl(sim_bin, sim_state, tmp_path):
    import time

    text = (sim_bin / "xl").read_text()
    assert text.startswith(f"#!{sys.executable} -SE\n")
    assert repr(str(sim_state.resolve())) in text
    make_host(sim_state, [("web01", 256, 1)])
    assert xdsim(["--state", str(sim_state), "fault", "save", "web01", "hang"]) == 0
    proc = subprocess.Popen([str(sim_bin / "xl"), "save", "web01", str(tmp_path / "img")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cmdline = b""
        for _ in range(200):  # until the interpreter has exec'd and is hanging in the save
            cmdline = b" ".join(open(f"/proc/{proc.pid}/cmdline", "rb").read().split(b"\0"))
            if b"save" in cmdline:
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    # the classic script's watchdog finds a running command with `ps axlw | grep "$CMD save"`
    assert f"{sim_bin}/xl save".encode() in cmdline


def test_xdsim_add_faults_latency_and_listing(sim_state, capsys):
    assert xdsim(["--state", str(sim_state), "add", "web01", "--mem", "2048", "--vcpus", "2"]) == 0
    assert xdsim(["--state", str(sim_state), "add", "ghost", "--mem", "512", "--state-flags", "-----d"]) == 0
    assert xdsim(["--state", str(sim_state), "fault", "save", "web01", "delay:1.5"]) == 0
    assert xdsim(["--state", str(sim_state), "rate", "save", "100"]) == 0
    capsys.readouterr()
    assert xdsim(["--state", str(sim_state), "list"]) == 0
    out = capsys.readouterr().out
    assert "web01" in out and "-----d" in out and "fault: save web01 delay:1.5" in out
    st = host.load(sim_state)
    assert st.transfer_time("save", st.by_name("web01").memory_kib) + st.delay("save", "web01") == (
        st.lat("save") + 20.48 + 1.5)
    assert xdsim(["--state", str(sim_state), "clear"]) == 0
    assert host.load(sim_state).faults == []


def test_load_snapshot_is_read_only_and_applies_due_transitions(sim_state):
    make_host(sim_state, [("a", 512, 1)])
    with host.transaction(sim_state) as st:
        st.by_name("a").gone_at = 1.0  # long past
    before = host.state_path(sim_state).stat()
    snap = host.load_snapshot(sim_state)
    assert [d.name for d in snap.domains] == ["Domain-0"]
    after = host.state_path(sim_state).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    dom0 = snap.domains[0]
    assert (dom0.domid, dom0.name, dom0.flags, dom0.memory_kib) == (0, "Domain-0", "r-----", 2048 * 1024)


async def test_shutdown_and_sysrq_write_the_control_nodes(sim_state, monkeypatch):
    make_host(sim_state, [("a", 512, 1)])
    calls = []
    monkeypatch.setattr(xsbridge, "write_control", lambda d, domid, k, v: calls.append((domid, k, v)))
    ts = SimToolstack(sim_state)
    await ts.sysrq(1, "s")
    await ts.shutdown(1, ["--wait"])
    assert calls == [(1, "sysrq", "s"), (1, "shutdown", "poweroff")]


def test_targets_lists_migrated_guests(sim_env, sim_state, capsys):
    make_host(sim_state, [("mail", 1024, 1)])
    assert run("xl", "migrate", "-s", "ssh -p 2222", "mail", "dr-site").returncode == 0
    xdsim(["--state", str(sim_state), "targets"])
    assert capsys.readouterr().out.startswith("dr-site\tmail\t1024 MiB")
