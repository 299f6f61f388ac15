"""The simulated xenstored mirrors the simulated host: trees, @introduceDomain/@releaseDomain, control nodes."""

from __future__ import annotations

import subprocess
import time
from types import SimpleNamespace

import pytest

import xdcore.xenstore as xs
from xdcore.sim import xsbridge
from xdcore.sim.xenstored import HostMirror
from xdcore.sim import host
from xdcore.xenstore.store import Store
from xdcore.xenstore.wire import Framer, Message, Op

from .conftest import needs_lib, needs_utils, start_server, wait_for



def guest(domid, name, uuid=None, mem=524288, vcpus=2, flags="-b----", online=None):
    return SimpleNamespace(
        domid=domid, name=name, uuid=uuid or f"00000000-0000-0000-0000-{domid:012d}", memory_kib=mem,
        maxmem_kib=mem, vcpus=vcpus, online_vcpus=vcpus if online is None else online, flags=flags,
        start_time=1700000000.25, domain_type="pvh",
    )  # fmt: skip


def watching(store, *paths):
    cid = store.connect()
    for p in paths:
        store.handle(cid, Message(Op.WATCH, 0, 0, p.encode() + b"\0t\0"))
    return cid


def events_for(out, cid):
    paths = []
    for to, data in out:
        (msg,) = Framer().feed(data)
        if to == cid and msg.op == Op.WATCH_EVENT:
            paths.append(msg.payload.split(b"\0")[0].decode())
    return paths


def test_a_new_guest_gets_its_libxl_nodes_and_fires_introduce_domain():
    store = Store()
    mirror = HostMirror(store)
    cid = watching(store, "@introduceDomain", "/local/domain")
    out = mirror.sync([guest(0, "Domain-0"), guest(3, "web", online=1)])
    assert store.read("/local/domain/3/name") == b"web"
    assert store.read("/local/domain/3/domid") == b"3"
    assert store.read("/local/domain/3/vm") == b"/vm/00000000-0000-0000-0000-000000000003"
    assert store.read("/local/domain/3/memory/target") == b"524288"
    assert store.read("/local/domain/3/memory/static-max") == b"524288"
    assert store.read("/local/domain/3/cpu/0/availability") == b"online"
    assert store.read("/local/domain/3/cpu/1/availability") == b"offline"
    assert store.read("/local/domain/3/control/shutdown") == b""
    assert store.read("/local/domain/3/control/sysrq") == b""
    assert store.read("/vm/00000000-0000-0000-0000-000000000003/name") == b"web"
    assert store.read("/vm/00000000-0000-0000-0000-000000000003/start_time") == b"1700000000.25"
    assert store.read("/libxl/3/type") == b"pvh"
    assert store.nodes["/local/domain/3"].perms == ("n0", "r3")
    paths = events_for(out, cid)
    assert paths.count("@introduceDomain") == 1 and "/local/domain/3/name" in paths
    assert paths.index("/local/domain/3/name") < paths.index("@introduceDomain")


def test_a_vanished_guest_is_removed_and_fires_release_domain():
    store = Store()
    mirror = HostMirror(store)
    mirror.sync([guest(0, "Domain-0"), guest(3, "web")])
    cid = watching(store, "@releaseDomain")
    out = mirror.sync([guest(0, "Domain-0")])
    assert "/local/domain/3" not in store.nodes and "/vm/00000000-0000-0000-0000-000000000003" not in store.nodes
    assert events_for(out, cid) == ["@releaseDomain"]


def test_a_guest_that_shuts_down_fires_release_domain_once_while_still_listed():
    store = Store()
    mirror = HostMirror(store)
    mirror.sync([guest(4, "db")])
    cid = watching(store, "@releaseDomain")
    assert events_for(mirror.sync([guest(4, "db", flags="---s--")]), cid) == ["@releaseDomain"]
    assert events_for(mirror.sync([guest(4, "db", flags="---s--")]), cid) == []
    assert store.read("/local/domain/4/name") == b"db"


def test_what_a_client_writes_to_control_persists_while_host_values_follow_the_host():
    store = Store()
    mirror = HostMirror(store)
    mirror.sync([guest(5, "app")])
    store.put("/local/domain/5/control/shutdown", b"poweroff")
    mirror.sync([guest(5, "app", mem=1048576, vcpus=3)])
    assert store.read("/local/domain/5/control/shutdown") == b"poweroff"
    assert store.read("/local/domain/5/memory/target") == b"1048576"
    assert store.read("/local/domain/5/cpu/2/availability") == b"online"
    mirror.sync([guest(5, "app", vcpus=1)])
    assert "/local/domain/5/cpu/1/availability" not in store.nodes


def test_a_reused_domid_with_a_new_uuid_is_a_release_then_an_introduce():
    store = Store()
    mirror = HostMirror(store)
    mirror.sync([guest(6, "old", uuid="11111111-1111-1111-1111-111111111111")])
    cid = watching(store, "@releaseDomain", "@introduceDomain")
    out = mirror.sync([guest(6, "new", uuid="22222222-2222-2222-2222-222222222222")])
    assert [p for p in events_for(out, cid) if p.startswith("@")] == ["@releaseDomain", "@introduceDomain"]
    assert "/vm/11111111-1111-1111-1111-111111111111" not in store.nodes


def test_a_stub_domain_is_announced_at_tool_xenstored_domid():
    store = Store()
    mirror = HostMirror(store)
    mirror.sync([guest(0, "Domain-0"), guest(1, "xenstore")], stub_domid=1)
    assert store.read("/tool/xenstored/domid") == b"1"
    mirror.sync([guest(0, "Domain-0")], stub_domid=None)
    assert store.read("/tool/xenstored/domid") is None


# -- against a running server on a simulated host ---------------------------------------


@pytest.fixture
def sim_server(tmp_path):
    state = tmp_path / "host"
    host.init_state(state, fast=True)
    server = start_server(state)
    yield server
    server.stop()


def add_guest(state, name, domid=None, **kw):
    with host.transaction(state) as st:
        dom = host.SimDomain(
            domid=domid or st.new_domid(), name=name, uuid=host.new_uuid(), memory_kib=262144, maxmem_kib=262144,
            current_kib=262144, vcpus=1, online_vcpus=1, flags="-b----", start_time=time.time(), **kw,
        )  # fmt: skip
        st.add(dom)
        return dom.domid


def remove_guest(state, name):
    with host.transaction(state) as st:
        st.remove(st.by_name(name))


@needs_lib
def test_guests_created_and_destroyed_on_the_host_appear_in_and_leave_xenstore(sim_server):
    with xs.Handle(path=str(sim_server.socket)) as h:
        assert h.read("/local/domain/0/name") == b"Domain-0"
        domid = add_guest(sim_server.state_dir, "web1")
        wait_for(lambda: h.exists(f"/local/domain/{domid}/name"), what="the new guest in XenStore")
        assert h.read(f"/local/domain/{domid}/name") == b"web1"
        assert h.is_domain_introduced(domid)
        remove_guest(sim_server.state_dir, "web1")
        wait_for(lambda: not h.exists(f"/local/domain/{domid}"), what="the guest to leave XenStore")


@needs_lib
def test_a_timed_shutdown_completing_later_is_noticed_without_a_file_change(sim_server):
    domid = add_guest(sim_server.state_dir, "leaving")
    with host.transaction(sim_server.state_dir) as st:
        st.by_name("leaving").gone_at = time.time() + 0.3
    with xs.Handle(path=str(sim_server.socket)) as h:
        wait_for(lambda: h.exists(f"/local/domain/{domid}/name"), what="the guest in XenStore")
        wait_for(lambda: not h.exists(f"/local/domain/{domid}"), what="the guest to go when gone_at passes")


@needs_utils
def test_real_xenstore_utils_see_the_host_guests_and_their_events(sim_server):
    env = sim_server.env()
    domid = add_guest(sim_server.state_dir, "db1")
    wait_for(
        lambda: "db1" in subprocess.run(["xenstore-ls", "/local/domain"], env=env, capture_output=True, text=True).stdout,
        what="xenstore-ls to list db1",
    )
    read = subprocess.run(["xenstore-read", f"/local/domain/{domid}/name"], env=env, capture_output=True, text=True)
    assert read.stdout == "db1\n"
    proc = subprocess.Popen(
        ["xenstore-watch", "-n", "3", "@introduceDomain"], env=env, stdout=subprocess.PIPE, text=True
    )
    proc2 = subprocess.Popen(["xenstore-watch", "-n", "2", "@releaseDomain"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "@introduceDomain"
        assert proc2.stdout.readline().strip() == "@releaseDomain"
        add_guest(sim_server.state_dir, "web2")
        assert proc.stdout.readline().strip() == "@introduceDomain"
        remove_guest(sim_server.state_dir, "db1")
        assert proc2.stdout.readline().strip() == "@releaseDomain"
        add_guest(sim_server.state_dir, "web3")
        assert proc.stdout.readline().strip() == "@introduceDomain"
        assert proc.wait(10) == 0 and proc2.wait(10) == 0
    finally:
        for p in (proc, proc2):
            if p.poll() is None:
                p.kill()
                p.wait()


@needs_lib
def test_write_control_writes_the_control_node_as_xl_does(sim_server):
    domid = add_guest(sim_server.state_dir, "ctl")
    with xs.Handle(path=str(sim_server.socket)) as h:
        wait_for(lambda: h.exists(f"/local/domain/{domid}/control/shutdown"), what="the control node")
        xsbridge.write_control(sim_server.state_dir, domid, "shutdown", "poweroff")
        assert h.read(f"/local/domain/{domid}/control/shutdown") == b"poweroff"
        xsbridge.write_control(sim_server.state_dir, domid, "sysrq", "s")
        assert h.read(f"/local/domain/{domid}/control/sysrq") == b"s"
        h.write(f"/local/domain/{domid}/control/shutdown", "")  # the guest's acknowledgement
        assert h.read(f"/local/domain/{domid}/control/shutdown") == b""


def test_write_control_is_a_silent_no_op_without_a_server(tmp_path):
    assert xsbridge.write_control(tmp_path, 3, "shutdown", "poweroff") is None
    assert xsbridge.write_control(tmp_path / "missing-dir", 3, "shutdown", "poweroff") is None
    (tmp_path / "xenstored.sock").write_text("not a socket")
    assert xsbridge.write_control(tmp_path, 3, "shutdown", "poweroff") is None


def test_write_control_finds_a_server_on_a_custom_socket(tmp_path):
    state = tmp_path / "host"
    host.init_state(state, fast=True)
    server = start_server(state, socket_path=tmp_path / "custom.sock")
    try:
        assert xsbridge.write(state, "/local/domain/0/control/sysrq", "b") is True
    finally:
        server.stop()
    assert not (state / "xenstored.addr").exists()


def test_a_guest_created_and_gone_between_two_looks_is_still_introduced_and_released():
    store = Store()
    mirror = HostMirror(store)
    mirror.sync([guest(0, "Domain-0")], next_domid=3)
    cid = watching(store, "@introduceDomain", "@releaseDomain", "/local/domain")
    out = mirror.sync([guest(0, "Domain-0"), guest(4, "kept")], next_domid=5)  # 3 came and went unseen
    paths = events_for(out, cid)
    assert paths.count("@introduceDomain") == 2 and paths.count("@releaseDomain") == 1
    assert "/local/domain/3" in paths and "/local/domain/3" not in store.nodes
