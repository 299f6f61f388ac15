"""watch_domains: XenStore-triggered re-lists when a xenstored is reachable, interval polling when not."""

from __future__ import annotations

import asyncio
import socket

import xdcore.xenstore as xs
from xdcore.model import Domain, DomainState
from xdcore.xenstore import wire
from xdcore.xenstore.watcher import DomainsChanged, diff_domains, watch_domains, xenstore_domid

from tests.support import PATIENCE

from .conftest import needs_lib, start_server


def dom(domid, name, mem=512, flags="-b----", vcpus=1):
    return Domain(domid=domid, name=name, memory_mib=mem, maxmem_mib=mem, vcpus=vcpus,
                  state=DomainState.from_flags(flags))  # fmt: skip


class FakeToolstack:
    """list_domains returns whatever the test set; counts the calls."""

    def __init__(self, domains):
        self.domains = list(domains)
        self.calls = 0

    async def list_domains(self):
        self.calls += 1
        return list(self.domains)


async def next_change(gen, timeout=PATIENCE) -> DomainsChanged:
    return await asyncio.wait_for(anext(gen), timeout)


def test_diff_reports_appeared_gone_and_changed_by_name():
    old = {d.name: d for d in [dom(0, "Domain-0"), dom(1, "a"), dom(2, "b")]}
    new = [dom(0, "Domain-0"), dom(1, "a", mem=1024), dom(5, "c"), dom(6, "b")]
    change = diff_domains(old, new, "poll")
    assert change.appeared == ("c",) and change.gone == () and set(change.changed) == {"a", "b"}
    paused = diff_domains({d.name: d for d in new}, [dom(0, "Domain-0"), dom(1, "a", mem=1024, flags="--p---")], "x")
    assert paused.changed == ("a",) and set(paused.gone) == {"c", "b"}


def test_cpu_time_alone_is_not_a_change():
    a = dom(1, "a")
    b = Domain(domid=1, name="a", memory_mib=512, maxmem_mib=512, vcpus=1, cpu_time=99.0, state=a.state)
    assert diff_domains({"a": a}, [b], "poll").changed == ()


async def test_without_xenstore_it_polls_once_per_interval(tmp_path):
    ts = FakeToolstack([dom(0, "Domain-0"), dom(1, "web")])
    gen = watch_domains(ts, interval=0.05, xenstore_path=str(tmp_path / "absent.sock"))
    first = await next_change(gen)
    assert first.appeared == ("Domain-0", "web") and first.source == "poll" and ts.calls == 1
    ts.domains.append(dom(2, "db"))
    second = await next_change(gen)
    assert second.appeared == ("db",) and second.source == "poll" and ts.calls == 2
    ts.domains = [d for d in ts.domains if d.name != "web"]
    third = await next_change(gen)
    assert third.gone == ("web",) and ts.calls == 3
    await gen.aclose()


@needs_lib
async def test_with_xenstore_a_write_under_local_domain_triggers_one_relist(xenstored):
    ts = FakeToolstack([dom(0, "Domain-0")])
    gen = watch_domains(ts, interval=60.0, safety_interval=600.0)
    first = await next_change(gen)
    assert first.source == "xenstore"
    handle = await asyncio.to_thread(xs.Handle)
    try:
        ts.domains.append(dom(7, "fresh"))
        await asyncio.to_thread(handle.write, "/local/domain/7/name", "fresh")
        change = await next_change(gen)
        assert change.appeared == ("fresh",) and change.source == "xenstore"
        ts.domains[-1] = dom(7, "fresh", mem=2048)
        await asyncio.to_thread(handle.write, "/local/domain/7/memory/target", str(2048 * 1024))
        change = await next_change(gen)
        assert change.changed == ("fresh",)
    finally:
        await gen.aclose()
        await asyncio.to_thread(handle.rm, "/local/domain/7")
        handle.close()


def _raw_call(path, op, payload):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(wire.encode(op, payload))
        framer, got = wire.Framer(), []
        while not got:
            got = framer.feed(s.recv(4096))
        return got[0]


@needs_lib
async def test_with_xenstore_introduce_and_release_report_appeared_and_gone(xenstored):
    ts = FakeToolstack([dom(0, "Domain-0")])
    gen = watch_domains(ts, interval=60.0, safety_interval=600.0)
    await next_change(gen)
    try:
        ts.domains.append(dom(9, "guest9"))
        await asyncio.to_thread(_raw_call, xenstored.socket, wire.Op.INTRODUCE, b"9\0" b"0\0" b"0\0")
        assert (await next_change(gen)).appeared == ("guest9",)
        ts.domains.pop()
        await asyncio.to_thread(_raw_call, xenstored.socket, wire.Op.RELEASE, b"9\0")
        assert (await next_change(gen)).gone == ("guest9",)
    finally:
        await gen.aclose()


@needs_lib
async def test_when_xenstored_goes_away_the_watcher_falls_back_to_polling(tmp_path):
    server = start_server(tmp_path / "state")
    ts = FakeToolstack([dom(0, "Domain-0")])
    gen = watch_domains(ts, interval=0.1, xenstore_path=str(server.socket), safety_interval=600.0)
    try:
        assert (await next_change(gen)).source == "xenstore"
        await asyncio.to_thread(server.stop)
        ts.domains.append(dom(3, "late"))
        change = await next_change(gen)
        assert change.appeared == ("late",) and change.source == "poll"
    finally:
        await gen.aclose()
        server.stop()


@needs_lib
def test_xenstore_domid_is_none_without_a_stub_domain_and_read_when_present(xenstored):
    assert xenstore_domid() is None
    with xs.Handle() as h:
        h.write("/tool/xenstored/domid", "1")
        try:
            assert xenstore_domid() == 1
        finally:
            h.rm("/tool/xenstored/domid")


def test_xenstore_domid_is_none_when_unreachable(tmp_path):
    assert xenstore_domid(str(tmp_path / "absent")) is None
