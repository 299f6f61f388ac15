"""SimToolstack: the Toolstack port on the simulated host, no processes."""

from __future__ import annotations

import asyncio

import pytest

from xdcore.errors import CommandFailed, CommandTimedOut
from xdcore.sim import host
from xdcore.sim.inprocess import SimToolstack
from xdcore.sim.testing import make_host


async def test_list_and_info_reflect_the_host(sim_state):
    make_host(sim_state, [("web01", 1024, 2)])
    ts = SimToolstack(sim_state)
    doms = await ts.list_domains()
    assert [(d.domid, d.name, d.memory_mib, d.vcpus) for d in doms] == [(0, "Domain-0", 2048, 4), (1, "web01", 1024, 2)]
    assert doms[1].state.blocked and doms[1].domain_type == "pvh"
    info = await ts.host_info()
    assert info.total_memory_mib == 16384 and info.free_memory_mib == 16384 - 3072


async def test_failures_carry_the_argv_and_stderr_of_the_real_adapter(sim_state, tmp_path):
    make_host(sim_state, [("web01", 1024, 2)])
    with host.transaction(sim_state) as st:
        st.faults.append(host.Fault("save", "web01", "enospc"))
    ts = SimToolstack(sim_state)
    with pytest.raises(CommandFailed) as info:
        await ts.save(1, tmp_path / "web01")
    assert info.value.argv == ("xl", "save", "1", str(tmp_path / "web01"))
    assert info.value.returncode == 1
    assert info.value.stderr.endswith("Failed to save domain, resuming domain\n")


async def test_timeout_raises_command_timed_out_and_leaves_the_guest_suspended_as_killed_xl_does(sim_state, tmp_path):
    make_host(sim_state, [("backup", 1024, 2)])
    with host.transaction(sim_state) as st:
        st.faults.append(host.Fault("save", "backup", "hang"))
    ts = SimToolstack(sim_state)
    with pytest.raises(CommandTimedOut):
        await ts.save(1, tmp_path / "backup", timeout=0.2)
    # process.run SIGKILLs a real xl on timeout: past the suspend point the guest stays suspended (Xen 4.17)
    dom = host.load(sim_state).by_id(1)
    assert dom.flags == "---ss-" and dom.busy is None


async def test_cancellation_propagates_and_leaves_the_guest_suspended_as_killed_xl_does(sim_state, tmp_path):
    make_host(sim_state, [("backup", 1024, 2)])
    with host.transaction(sim_state) as st:
        st.faults.append(host.Fault("save", "backup", "hang"))
    ts = SimToolstack(sim_state)
    task = asyncio.ensure_future(ts.save(1, tmp_path / "backup"))
    while host.load(sim_state).by_id(1).flags != "---ss-":
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    dom = host.load(sim_state).by_id(1)
    assert dom.flags == "---ss-" and dom.busy is None  # nothing resumes it: `xendomains resume` is the way out


async def test_cancelling_a_restore_removes_the_half_built_domain(sim_state, tmp_path):
    make_host(sim_state, [("backup", 1024, 2)])
    ts = SimToolstack(sim_state)
    await ts.save(1, tmp_path / "backup")
    with host.transaction(sim_state) as st:
        st.faults.append(host.Fault("restore", "backup", "hang"))
    task = asyncio.ensure_future(ts.restore(tmp_path / "backup"))
    while not [d for d in host.load(sim_state).domains if d.domid != 0]:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d.domid for d in host.load(sim_state).domains] == [0]


async def test_stop_sequence_in_process(sim_state, tmp_path):
    layout = make_host(sim_state, [("a", 512, 1), ("b", 512, 1), ("c", 512, 1)], auto=["a"])
    ts = SimToolstack(sim_state)
    await ts.save(1, tmp_path / "a")
    await ts.migrate(2, ["--live", "otherhost"])
    await ts.shutdown_all(["--halt", "--wait"])
    assert [d.name for d in await ts.list_domains()] == ["Domain-0"]
    await ts.restore(tmp_path / "a")
    names = await ts.config_names([layout.auto_dir / "a.cfg", tmp_path / "missing.cfg"])
    assert names[0].name == "a" and names[1].error
    assert host.load_snapshot(sim_state).targets == (("otherhost", ("b",)),)
