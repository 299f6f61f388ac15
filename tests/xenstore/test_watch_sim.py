"""watch_domains on a simulated host: created, saved and migrated guests arrive via XenStore and via polling."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import PATIENCE

from xdcore.model import Domain, DomainState
from xdcore.sim import host
from xdcore.xenstore.watcher import watch_domains

from .conftest import needs_lib, start_server



class HostToolstack:
    """list_domains read from the simulated host's snapshot (what `xl list -l` would show)."""

    def __init__(self, state):
        self.state = state
        self.calls = 0

    async def list_domains(self):
        self.calls += 1
        return [
            Domain(domid=d.domid, name=d.name, uuid=d.uuid, memory_mib=d.memory_kib // 1024,
                   maxmem_mib=d.maxmem_kib // 1024, vcpus=d.vcpus, state=DomainState.from_flags(d.flags))
            for d in host.load_snapshot(self.state).domains
        ]  # fmt: skip


def create(state, name):
    with host.transaction(state) as st:
        st.add(host.SimDomain(
            domid=st.new_domid(), name=name, uuid=host.new_uuid(), memory_kib=262144, maxmem_kib=262144,
            current_kib=262144, vcpus=1, online_vcpus=1, flags="-b----", start_time=time.time(),
        ))  # fmt: skip


def save(state, name):  # as xl save: the guest is paused, then destroyed once the image is written
    with host.transaction(state) as st:
        st.by_name(name).flags = "--p---"
    with host.transaction(state) as st:
        st.remove(st.by_name(name))


def migrate(state, name):
    with host.transaction(state) as st:
        st.remove(st.by_name(name))
        st.targets.setdefault("peer", []).append({"name": name})


async def expect(gen, field, name, timeout=PATIENCE):
    """The first yielded change that lists `name` in `field` (earlier ones, e.g. paused, are skipped)."""
    async def scan():
        async for change in gen:
            if name in getattr(change, field):
                return change

    return await asyncio.wait_for(scan(), timeout)


@pytest.fixture
def sim_host(tmp_path):
    state = tmp_path / "host"
    host.init_state(state, fast=True)
    return state


@needs_lib
async def test_via_xenstore_a_created_saved_and_migrated_guest_are_reported(sim_host):
    server = await asyncio.to_thread(start_server, sim_host)
    ts = HostToolstack(sim_host)
    gen = watch_domains(ts, interval=60.0, xenstore_path=str(server.socket), safety_interval=600.0)
    try:
        first = await asyncio.wait_for(anext(gen), 10)
        assert first.source == "xenstore" and first.appeared == ("Domain-0",)
        await asyncio.to_thread(create, sim_host, "web")
        assert (await expect(gen, "appeared", "web")).source == "xenstore"
        await asyncio.to_thread(save, sim_host, "web")
        assert (await expect(gen, "gone", "web")).source == "xenstore"
        await asyncio.to_thread(create, sim_host, "db")
        await expect(gen, "appeared", "db")
        await asyncio.to_thread(migrate, sim_host, "db")
        change = await expect(gen, "gone", "db")
        assert [d.name for d in change.domains] == ["Domain-0"]
    finally:
        await gen.aclose()
        await asyncio.to_thread(server.stop)


async def test_by_polling_a_created_saved_and_migrated_guest_are_reported(sim_host):
    ts = HostToolstack(sim_host)
    gen = watch_domains(ts, interval=0.05, xenstore_path=str(sim_host / "no-xenstored.sock"))
    try:
        assert (await asyncio.wait_for(anext(gen), 10)).source == "poll"
        await asyncio.to_thread(create, sim_host, "web")
        assert (await expect(gen, "appeared", "web")).source == "poll"
        await asyncio.to_thread(save, sim_host, "web")
        await expect(gen, "gone", "web")
        await asyncio.to_thread(create, sim_host, "db")
        await expect(gen, "appeared", "db")
        await asyncio.to_thread(migrate, sim_host, "db")
        await expect(gen, "gone", "db")
    finally:
        await gen.aclose()
