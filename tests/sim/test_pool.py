"""A simulated pool: hosts beside the first, reached by name through the ssh shim and `xl migrate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xdcore.sim import host, pool
from xdcore.sim.testing import make_host

from tests.support import wait_for

from .helpers import run


@pytest.fixture
def two_hosts(tmp_path: Path):
    layout = make_host(tmp_path / "xen01", [("web01", 1024, 2), ("db", 4096, 2)])
    pool.rename_self(layout.state_dir, "xen01")
    peer = Path(pool.add_member(layout.state_dir, "xen02", 8192))
    env = layout.env()
    return layout, peer, env


def names(state: Path) -> dict[str, host.DomainView]:
    return {d.name: d for d in host.load_snapshot(state).domains if d.domid}


def test_migrate_moves_the_guest_into_the_peer_with_its_uuid_and_a_new_domid(two_hosts):
    layout, peer, env = two_hosts
    before = names(layout.state_dir)["web01"]
    done = run("xl", "migrate", "web01", "xen02", env=env)
    assert done.returncode == 0, done.stderr
    assert "web01" not in names(layout.state_dir)
    moved = names(peer)["web01"]
    assert moved.uuid == before.uuid and moved.flags == "-b----"
    assert moved.domid == 1  # the receiver's first domid, not the sender's
    assert host.load_snapshot(peer).free_memory_mib == 8192 - 2048 - 1024


def test_a_peer_without_the_memory_refuses_and_the_guest_resumes_at_the_sender(two_hosts):
    layout, peer, env = two_hosts
    with host.transaction(peer) as st:
        st.total_memory_mib = 2048 + 1024  # dom0 + 1 GiB free: db (4 GiB) does not fit
    done = run("xl", "migrate", "db", "xen02", env=env)
    assert done.returncode == 1
    assert b"Out of memory" in done.stderr and b"resuming at sender" in done.stderr
    assert names(layout.state_dir)["db"].flags == "-b----"
    assert "db" not in names(peer) and "db--incoming" not in names(peer)


def test_the_ssh_shim_runs_the_peers_xl_and_fails_like_ssh_for_unknown_or_unreachable_hosts(two_hosts):
    layout, peer, env = two_hosts
    info = run("ssh", "-p", "2222", "-o", "BatchMode=yes", "root@xen02", "xl", "info", env=env)
    assert info.returncode == 0 and b"host                   : xen02" in info.stdout
    assert b"total_memory           : 8192" in info.stdout
    unknown = run("ssh", "xen09", "xl", "info", env=env)
    assert unknown.returncode == 255 and b"Could not resolve hostname xen09" in unknown.stderr
    pool.set_reach(layout.state_dir, "xen02", "down")
    down = run("ssh", "xen02", "xl", "info", env=env)
    assert down.returncode == 255 and b"No route to host" in down.stderr
    refused = run("xl", "migrate", "web01", "xen02", env=env)
    assert refused.returncode == 1 and "web01" in names(layout.state_dir)


def test_a_peer_can_migrate_back_onto_the_first_host(two_hosts):
    layout, peer, env = two_hosts
    assert run("xl", "migrate", "web01", "xen02", env=env).returncode == 0
    peer_env = {**env, "PATH": f"{peer / 'bin'}:{env['PATH']}", "XDSIM_STATE": str(peer)}
    back = run("xl", "migrate", "web01", "xen01", env=peer_env)
    assert back.returncode == 0, back.stderr
    assert "web01" in names(layout.state_dir) and "web01" not in names(peer)


def test_xdsim_pool_lists_each_host_with_its_guests(two_hosts, tmp_path):
    layout, peer, env = two_hosts
    done = subprocess.run([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), "pool"], capture_output=True, text=True,
                          env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("\t", 1) for line in done.stdout.splitlines())
    assert "web01 db" in lines["xen01"] and "0 guests" in lines["xen02"]
    assert run("xl", "migrate", "web01", "xen02", env=env).returncode == 0
    done = subprocess.run([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), "pool"],
                          capture_output=True, text=True, env=env, timeout=30)
    lines = dict(line.split("\t", 1) for line in done.stdout.splitlines())
    assert "\t1 guest: db" in lines["xen01"] and "\t1 guest: web01" in lines["xen02"]  # one guest is one guest


def test_a_killed_migration_leaves_no_incoming_domain_on_the_peer(two_hosts):
    layout, peer, env = two_hosts
    with host.transaction(layout.state_dir) as st:
        st.faults.append(host.Fault("migrate", "web01", "hang"))
    proc = subprocess.Popen(["xl", "migrate", "web01", "xen02"], env=env)

    wait_for(lambda: "web01--incoming" in names(peer), what="the receiver to build the incoming domain")
    proc.kill()
    proc.wait()
    wait_for(lambda: "web01--incoming" not in names(peer), what="the dead sender's incoming domain to go")
    assert names(layout.state_dir)["web01"].flags == "-b----"


def test_a_pool_member_runs_the_xen_version_it_was_added_with(two_hosts):
    layout, peer, env = two_hosts
    done = subprocess.run([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), "pool", "add",
                           "xen03", "--memory-mib", "8192", "--xen-version", "4.16.5"], capture_output=True, text=True,
                          env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    info = run("ssh", "xen03", "xl", "info", env=env).stdout.decode()
    assert "xen_major              : 4\nxen_minor              : 16\nxen_extra              : .5\n" in info
    assert "xen_version            : 4.16.5\n" in info
    assert "xen_minor              : 17\n" in run("ssh", "xen02", "xl", "info", env=env).stdout.decode()  # the first's
    listing = subprocess.run([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), "pool"],
                             capture_output=True, text=True, env=env, timeout=30).stdout
    assert "Xen 4.16.5" in next(ln for ln in listing.splitlines() if ln.startswith("xen03"))
    bad = subprocess.run([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), "pool", "add",
                          "xen04", "--xen-version", "four"], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 2 and "not 'four'" in bad.stderr
