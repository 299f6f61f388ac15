"""Shared bandwidth: concurrent saves, restores and migrations share the disk and the links fairly."""

from __future__ import annotations

import json
import subprocess

import pytest

from xdcore.sim import physics
from xdcore.sim import host
from xdcore.sim.cli import main as xdsim
from xdcore.sim.testing import add_domain, config_of, guest_config_text


def _guest(state, name: str, mib: int) -> None:
    path = state / f"{name}.cfg"
    path.write_text(guest_config_text(name, mib, 1))
    add_domain(state, config_of(path), config_path=str(path))


def _log(state) -> dict[str, dict]:
    return {e["guest"]: e for e in host.load(state).transfer_log}


def _set(state, *argv: str) -> None:
    assert xdsim(["--state", str(state), *argv]) == 0


# -- the rules, without processes ------------------------------------------------------------------


def test_two_transfers_on_one_resource_share_it_whatever_the_gap_between_their_starts():
    for gap in (0.0, 0.3, 1.7):
        ts = [physics.new_transfer("a", "disk", 200, 0.0), physics.new_transfer("b", "disk", 200, gap)]
        physics.advance(ts[:1], {"disk": 100}, 0.0, gap)  # a ran alone until b joined
        physics.advance(ts, {"disk": 100}, gap, 100.0)
        assert ts[1]["done"] == pytest.approx(4.0)  # both together: 400 MB at 100 MB/s
        assert ts[0]["done"] == pytest.approx(4.0 - gap)


def test_transfers_on_different_resources_do_not_slow_each_other():
    ts = [physics.new_transfer("s", "disk", 300, 0.0), physics.new_transfer("m", "link:b", 300, 0.0)]
    physics.advance(ts, {"disk": 100, "link:b": 300}, 0.0, 10.0)
    assert (ts[0]["done"], ts[1]["done"]) == (pytest.approx(3.0), pytest.approx(1.0))


def test_a_live_migration_resends_dirty_pages_and_sharing_the_link_makes_that_worse():
    alone = [physics.new_transfer("m", "link:b", 1000, 0.0, dirty=20)]
    physics.advance(alone, {"link:b": 100}, 0.0, 1e9)
    assert alone[0]["done"] == pytest.approx(1000 / 80)  # memory at 100 MB/s less the 20 re-dirtied
    two = {"link:b": 100}
    jobs = [dict(id=n, res="link:b", mb=1000, dirty=20) for n in "ab"]
    one_at_a_time = physics.makespan(physics.simulate(jobs, two, {"link:b": 1}))
    together = physics.makespan(physics.simulate(jobs, two, {"link:b": 2}))
    assert one_at_a_time == pytest.approx(2 * 1000 / 80)
    assert together > one_at_a_time * 1.2


def test_a_schedule_overlaps_fixed_costs_with_transfers_when_two_run_at_once():
    jobs = [dict(id=str(i), res="disk", mb=100, fixed=0.5) for i in range(4)]
    assert physics.makespan(physics.simulate(jobs, {"disk": 100}, {"disk": 1})) == pytest.approx(6.0)
    assert physics.makespan(physics.simulate(jobs, {"disk": 100}, {"disk": 2})) == pytest.approx(5.0)


# -- the simulated xl: separate processes see each other through the ledger ------------------------------


def test_two_concurrent_saves_take_twice_as_long_as_one(sim_env, sim_state, tmp_path):
    _set(sim_state, "resource", "disk", "100")
    for name in ("alone", "a", "b"):
        _guest(sim_state, name, 200)
    done = subprocess.run(["xl", "save", "alone", str(tmp_path / "alone.img")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"Saving to {tmp_path / 'alone.img'} new xl format (info 0x3/0x0/")
    procs = [subprocess.Popen(["xl", "save", n, str(tmp_path / f"{n}.img")], stderr=subprocess.PIPE, text=True)
             for n in ("a", "b")]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    log = _log(sim_state)
    single = log["alone"]["end"] - log["alone"]["start"]
    assert single == pytest.approx(2.0, abs=1e-6)  # 200 MB at 100 MB/s, simulated time
    first, second = sorted((log["a"], log["b"]), key=lambda e: e["start"])
    assert second["start"] < first["end"], "the two saves did not overlap"
    assert second["end"] - first["start"] == pytest.approx(2 * single, abs=1e-6)
    assert first["end"] - first["start"] == pytest.approx(2 * single - (second["start"] - first["start"]), abs=1e-6)
    assert all(not host.load(sim_state).by_name(n) for n in ("a", "b"))
    assert all((tmp_path / f"{n}.img").read_bytes().startswith(b"Xen saved domain") for n in ("a", "b"))


def test_a_save_and_a_migration_use_disk_and_link_at_once(sim_env, sim_state, tmp_path):
    _set(sim_state, "resource", "disk", "100")
    _set(sim_state, "resource", "link", "peer", "200")
    _guest(sim_state, "s", 200)
    _guest(sim_state, "m", 200)
    procs = [subprocess.Popen(["xl", "save", "s", str(tmp_path / "s.img")], stderr=subprocess.PIPE),
             subprocess.Popen(["xl", "migrate", "m", "peer"], stderr=subprocess.PIPE, text=True)]
    outs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[1].endswith("Migration successful.\n")
    log = _log(sim_state)
    assert log["s"]["res"] == "disk" and log["m"]["res"] == "link:peer"
    assert log["s"]["end"] - log["s"]["start"] == pytest.approx(2.0, abs=1e-6)
    assert log["m"]["end"] - log["m"]["start"] == pytest.approx(1.0, abs=1e-6)


def test_restores_read_the_shared_disk(sim_env, sim_state, tmp_path):
    for n in ("a", "b"):
        _guest(sim_state, n, 100)
        assert subprocess.run(["xl", "save", n, str(tmp_path / f"{n}.img")], capture_output=True).returncode == 0
    _set(sim_state, "resource", "disk", "100")
    procs = [subprocess.Popen(["xl", "restore", str(tmp_path / f"{n}.img")], stderr=subprocess.PIPE) for n in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = _log(sim_state)
    first, second = sorted((log["a"], log["b"]), key=lambda e: e["start"])
    assert log["a"]["op"] == "restore"
    assert second["end"] - first["start"] == pytest.approx(2.0, abs=1e-6)
    st = host.load(sim_state)
    assert all(st.by_name(n) is not None and not st.by_name(n).busy for n in "ab")


def test_a_killed_save_leaves_the_ledger_and_its_guest_suspended_as_real_xl_does(sim_env, sim_state, tmp_path):
    _set(sim_state, "resource", "disk", "1")
    _guest(sim_state, "slow", 1000)
    proc = subprocess.Popen(["xl", "save", "slow", str(tmp_path / "slow.img")], stderr=subprocess.PIPE)
    from tests.support import wait_for

    wait_for(lambda: host.load(sim_state).transfers, what="the save's transfer in the ledger")
    proc.kill()
    proc.wait(timeout=30)
    st = host.load(sim_state)
    assert st.transfers == []
    assert st.by_name("slow").flags == "---ss-"  # nothing resumes it (real-4.17: xl killed mid-save)


def test_xdsim_resource_and_dirty_set_and_show_the_figures(sim_state, capsys):
    _set(sim_state, "resource", "disk", "500")
    _set(sim_state, "resource", "link", "xen02", "1250")
    _set(sim_state, "dirty", "db", "80")
    st = host.load(sim_state)
    assert st.resources == {"disk": 500.0, "link:xen02": 1250.0} and st.dirty == {"db": 80.0}
    _set(sim_state, "list")
    out = capsys.readouterr().out
    assert "shared: disk=500MB/s, link:xen02=1250MB/s" in out
    assert xdsim(["--state", str(sim_state), "resource", "link", "500"]) == 2
    assert "expected HOST MBPS" in capsys.readouterr().err
    _set(sim_state, "resource", "disk", "0")
    assert host.load(sim_state).resources == {"link:xen02": 1250.0}
    json.dumps(host.load(sim_state).to_dict())
