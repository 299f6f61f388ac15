"""The pyxenstore-compatible Handle, through the real libxenstore, against the simulated xenstored."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

import xdcore.xenstore as xs
from xdcore.xenstore import _lib

from .conftest import REPO, needs_lib, wait_for

pytestmark = needs_lib


@pytest.fixture
def h(xenstored):
    with xs.Handle() as handle:
        yield handle


def test_the_pyxenstore_names_are_all_there():
    for name in (
        "Handle", "PyXenStoreError", "NotFoundError", "InvalidArgError", "NoPermissionError",
        "TransactionStartedError", "TransactionNotStartedError",
    ):  # fmt: skip
        assert hasattr(xs, name), name
    for sub in (xs.NotFoundError, xs.InvalidArgError, xs.NoPermissionError, xs.TransactionStartedError):
        assert issubclass(sub, xs.PyXenStoreError)
    for method in ("entries", "read", "write", "mkdir", "rm", "permissions_get", "permissions_set",
                   "transaction_start", "transaction_end"):  # fmt: skip
        assert callable(getattr(xs.Handle, method)), method


def test_write_read_entries_mkdir_and_rm_round_trip(h, base):
    h.write(f"{base}/a", "hello")
    h.write(f"{base}/b", b"\x00bin\xff")
    h.mkdir(f"{base}/dir")
    assert h.read(f"{base}/a") == b"hello"
    assert h.read(f"{base}/b") == b"\x00bin\xff"
    assert h.read(f"{base}/dir") == b""
    assert sorted(h.entries(base)) == ["a", "b", "dir"]
    h.rm(f"{base}/a")
    assert sorted(h.entries(base)) == ["b", "dir"]
    h.rm(base)
    assert not h.exists(base)


def test_an_empty_value_can_be_written(h, base):
    h.write(f"{base}/control/shutdown", "poweroff")
    h.write(f"{base}/control/shutdown", "")
    assert h.read(f"{base}/control/shutdown") == b""


def test_a_missing_node_raises_not_found_naming_the_path(h, base):
    with pytest.raises(xs.NotFoundError) as info:
        h.read(f"{base}/missing")
    assert info.value.errno == 2 and f"{base}/missing" in str(info.value)
    with pytest.raises(xs.NotFoundError):
        h.entries(f"{base}/missing")
    with pytest.raises(xs.NotFoundError):
        h.rm(f"{base}/no/parent")


@pytest.mark.parametrize("path", ["/a//b", "/trailing/", "/sp ace"])
def test_a_malformed_path_raises_invalid_arg(h, path):
    with pytest.raises(xs.InvalidArgError):
        h.read(path)


def test_permissions_round_trip_as_pyxenstore_tuples(h, base):
    h.write(f"{base}/p", "v")
    assert h.permissions_get(f"{base}/p") == [(0, "n")]
    h.permissions_set(f"{base}/p", [(0, "n"), (3, "r"), (4, "w"), (5, "b")])
    assert h.permissions_get(f"{base}/p") == [(0, "n"), (3, "r"), (4, "w"), (5, "b")]


@pytest.mark.parametrize(
    "perms, message",
    [
        ([(0, "n"), "b0"], "List element #1 is not a tuple"),
        ([(0, "n", 1)], "Tuple #0 does not contain 2 elements"),
        ([(0, "x")], "permission must be one of"),
        ((0, "n"), "must be a list"),
    ],
)
def test_bad_permission_lists_raise_invalid_arg_like_pyxenstore(h, base, perms, message):
    with pytest.raises(xs.InvalidArgError, match=message):
        h.permissions_set(base, perms)


def test_transaction_state_errors_match_pyxenstore(h, base):
    with pytest.raises(xs.TransactionNotStartedError, match="hasn't been started"):
        h.transaction_end()
    h.transaction_start()
    with pytest.raises(xs.TransactionStartedError, match="already been started"):
        h.transaction_start()
    with pytest.raises(TypeError):
        h.transaction_end(abort=1)
    h.transaction_end(abort=True)


def test_a_committed_transaction_applies_and_an_aborted_one_does_not(h, base):
    h.transaction_start()
    h.write(f"{base}/kept", "1")
    h.transaction_end()
    h.transaction_start()
    h.write(f"{base}/dropped", "1")
    h.transaction_end(abort=True)
    assert h.read(f"{base}/kept") == b"1"
    assert not h.exists(f"{base}/dropped")


def test_a_conflicting_commit_raises_eagain_as_transaction_conflict(h, base):
    h.write(f"{base}/n", "0")
    with xs.Handle() as other:
        h.transaction_start()
        h.read(f"{base}/n")
        h.write(f"{base}/n", "from-tx")
        other.write(f"{base}/n", "from-other")
        with pytest.raises(xs.TransactionConflictError) as info:
            h.transaction_end()
    assert info.value.errno == 11
    assert not h.in_transaction
    assert h.read(f"{base}/n") == b"from-other"


def test_run_transaction_retries_a_conflicted_body_until_it_commits(h, base):
    h.write(f"{base}/counter", "0")
    attempts = []
    with xs.Handle() as other:

        def increment(tx: xs.Handle) -> int:
            attempts.append(1)
            value = int(tx.read(f"{base}/counter"))
            if len(attempts) < 3:
                other.write(f"{base}/counter", str(value + 100))  # interfere twice
            tx.write(f"{base}/counter", str(value + 1))
            return value + 1

        result = h.run_transaction(increment)
    assert len(attempts) == 3
    assert result == 201 and h.read(f"{base}/counter") == b"201"


def test_run_transaction_aborts_when_the_body_raises(h, base):
    def body(tx):
        tx.write(f"{base}/half", "x")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        h.run_transaction(body)
    assert not h.in_transaction and not h.exists(f"{base}/half")


def test_concurrent_increments_through_run_transaction_lose_no_update(xenstored, base):
    with xs.Handle() as h:
        h.write(f"{base}/c", "0")

    def worker():
        with xs.Handle() as mine:
            for _ in range(20):
                mine.run_transaction(lambda t: t.write(f"{base}/c", str(int(t.read(f"{base}/c")) + 1)), attempts=200)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with xs.Handle() as h:
        assert h.read(f"{base}/c") == b"80"


def test_a_large_directory_is_listed_through_directory_part(h, base):
    names = {f"guest-device-entry-with-long-name-{i:04d}" for i in range(300)}
    h.transaction_start()
    for n in names:
        h.write(f"{base}/{n}", "")
    h.transaction_end()
    assert set(h.entries(base)) == names


def test_domain_queries(h):
    assert h.get_domain_path(5) == "/local/domain/5"
    assert h.is_domain_introduced(0) is True


def test_a_closed_handle_refuses_calls_and_close_is_idempotent(xenstored):
    handle = xs.Handle()
    handle.close()
    handle.close()
    with pytest.raises(xs.PyXenStoreError, match="closed"):
        handle.read("/")


def test_an_unreachable_xenstored_raises_a_clear_error(tmp_path):
    with pytest.raises(xs.XenStoreUnreachable, match="Couldn't open connection to the xenstore"):
        xs.Handle(path=str(tmp_path / "no-such-socket"))


def test_path_argument_overrides_the_environment_for_one_handle(xenstored, monkeypatch, tmp_path):
    monkeypatch.setenv("XENSTORED_PATH", str(tmp_path / "elsewhere"))
    with xs.Handle(path=str(xenstored.socket)) as handle:
        assert "local" in handle.entries("/")
    assert os.environ["XENSTORED_PATH"] == str(tmp_path / "elsewhere")


def test_a_missing_library_gives_an_error_naming_the_debian_package(tmp_path):
    code = "import xdcore.xenstore as xs\ntry:\n    xs.Handle()\nexcept xs.LibraryMissingError as e:\n    print(e)\n"
    env = {**os.environ, "XD_LIBXENSTORE": str(tmp_path / "libxenstore.so.4")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert "libxenstore4" in out.stdout and "libxenstore.so.4" in out.stdout


def test_every_returned_block_is_freed_exactly_once(h, base, monkeypatch):
    freed: list[int] = []
    lib = _lib.load()
    real_free = lib.free
    monkeypatch.setattr(lib, "free", lambda ptr: (freed.append(ptr), real_free(ptr)))
    returned: list[int] = []
    for fn in ("xs_read", "xs_directory", "xs_get_permissions", "xs_check_watch", "xs_get_domain_path"):
        original = getattr(lib.xs, fn)

        class Spy:
            def __init__(self, f):
                self.f = f

            def __call__(self, *a):
                ptr = self.f(*a)
                if ptr:
                    returned.append(ptr)
                return ptr

        monkeypatch.setattr(lib.xs, fn, Spy(original))
    h.write(f"{base}/v", "x")
    h.read(f"{base}/v")
    h.entries(base)
    h.permissions_get(f"{base}/v")
    h.get_domain_path(1)
    with pytest.raises(xs.NotFoundError):
        h.read(f"{base}/none")
    h.watch(base, "mem")
    wait_for(lambda: h.check_watch(), what="the initial watch event")
    assert len(returned) == 5  # read, directory, permissions, domain path, one watch event
    assert sorted(freed) == sorted(returned)


async def test_watch_events_stream_delivers_the_initial_event_then_changes(xenstored, base):
    writer = await asyncio.to_thread(xs.Handle)
    watcher = await asyncio.to_thread(xs.Handle)
    try:
        await asyncio.to_thread(watcher.watch, base, "tok")
        stream = watcher.watch_events()
        first = await asyncio.wait_for(anext(stream), 10)
        assert first == xs.WatchEvent(base, "tok")
        await asyncio.to_thread(writer.write, f"{base}/x", "1")
        second = await asyncio.wait_for(anext(stream), 10)
        assert second == xs.WatchEvent(f"{base}/x", "tok")
        await asyncio.to_thread(watcher.unwatch, base, "tok")
        await asyncio.to_thread(writer.write, f"{base}/y", "1")
        await asyncio.to_thread(writer.write, "/test/marker-" + base.rsplit("/", 1)[1], "1")
        await asyncio.to_thread(watcher.watch, "/test/marker-" + base.rsplit("/", 1)[1], "m")
        third = await asyncio.wait_for(anext(stream), 10)
        assert third.token == "m"  # nothing arrived for the unwatched path in between
        await stream.aclose()
    finally:
        writer.close()
        watcher.close()


async def test_special_watch_paths_fire_on_introduce_and_release(xenstored):
    watcher = await asyncio.to_thread(xs.Handle)
    try:
        await asyncio.to_thread(watcher.watch, "@introduceDomain", "in")
        stream = watcher.watch_events()
        assert (await asyncio.wait_for(anext(stream), 10)).path == "@introduceDomain"
        await stream.aclose()
    finally:
        watcher.close()


def test_a_handle_refuses_to_work_in_a_forked_child(h):
    pid = os.fork()
    if pid == 0:  # child: the handle's socket and reader thread belong to the parent
        try:
            h.read("/")
        except xs.PyXenStoreError as exc:
            os._exit(0 if "not valid after fork" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "local" in h.entries("/")  # the parent's handle still works
