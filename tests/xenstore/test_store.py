"""The pure xenstored rules: framing, paths, replies, watches, transactions, limits, and a fuzz run."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdcore.xenstore import wire
from xdcore.xenstore.store import Store
from xdcore.xenstore.wire import Framer, Message, Op


def frames(out, cid=None):
    """Decode the outgoing frames (optionally only those for connection cid)."""
    result = []
    for to, data in out:
        if cid is not None and to != cid:
            continue
        (msg,) = Framer().feed(data)
        result.append((to, msg))
    return result


def request(store, cid, op, payload: bytes, tx_id=0, req_id=7):
    return frames(store.handle(cid, Message(int(op), req_id, tx_id, payload)))


def reply(store, cid, op, payload: bytes, tx_id=0):
    out = request(store, cid, op, payload, tx_id)
    assert out[0][0] == cid
    return out[0][1]


def error_name(msg: Message) -> str | None:
    return msg.payload.rstrip(b"\0").decode() if msg.op == Op.ERROR else None


def test_framer_cuts_a_stream_into_messages_whatever_the_chunking():
    data = wire.encode(Op.READ, b"/a\0", 1) + wire.encode(Op.WRITE, b"/a\0v", 2)
    f = Framer()
    got = []
    for i in range(len(data)):
        got += f.feed(data[i : i + 1])
    assert [(m.op, m.req_id, m.payload) for m in got] == [(Op.READ, 1, b"/a\0"), (Op.WRITE, 2, b"/a\0v")]
    assert f.pending == 0


def test_framer_refuses_a_header_announcing_more_than_4096_bytes():
    with pytest.raises(wire.Oversize):
        Framer().feed(wire.HEADER.pack(Op.WRITE, 0, 0, 4097))


@pytest.mark.parametrize("path", ["/", "/a", "/a/b-c_d@e", "rel/ok", "/" + "a" * 3071])
def test_valid_paths_are_accepted(path):
    assert wire.valid_path(path)


@pytest.mark.parametrize("path", ["", "/a/", "//a", "/a//b", "/a b", "/ä", "/a\0", "@x", "/" + "a" * 3072])
def test_malformed_paths_are_refused(path):
    assert not wire.valid_path(path)


def test_read_of_a_missing_node_answers_enoent_and_echoes_ids():
    s = Store()
    c = s.connect()
    msg = reply(s, c, Op.READ, b"/nope\0", tx_id=0)
    assert error_name(msg) == "ENOENT" and msg.req_id == 7


def test_write_creates_parents_and_read_returns_the_value_without_nul():
    s = Store()
    c = s.connect()
    assert reply(s, c, Op.WRITE, b"/a/b/c\0hello").payload == b"OK\0"
    assert reply(s, c, Op.READ, b"/a/b/c\0").payload == b"hello"
    assert reply(s, c, Op.DIRECTORY, b"/a\0").payload == b"b\0"


def test_unknown_message_type_answers_einval():
    s = Store()
    c = s.connect()
    assert error_name(reply(s, c, 99, b"x\0")) == "EINVAL"
    assert error_name(reply(s, c, 20, b"x\0")) == "EINVAL"  # the removed RESTRICT


@pytest.mark.parametrize("payload", [b"/a//b\0", b"/a/\0", b"/bad path\0", b"/a\0extra\0", b"/a", b"", b"\xff\0"])
def test_malformed_read_requests_answer_einval(payload):
    s = Store()
    c = s.connect()
    assert error_name(reply(s, c, Op.READ, payload)) == "EINVAL"


def test_rm_is_ok_for_a_missing_node_but_enoent_when_the_parent_is_missing_too():
    s = Store()
    c = s.connect()
    reply(s, c, Op.MKDIR, b"/p\0")
    assert reply(s, c, Op.RM, b"/p/q\0").payload == b"OK\0"
    assert error_name(reply(s, c, Op.RM, b"/x/y\0")) == "ENOENT"


def test_watch_is_acknowledged_then_fires_for_its_own_path():
    s = Store()
    c = s.connect()
    out = request(s, c, Op.WATCH, b"/w\0tok\0")
    assert [m.op for _, m in out] == [Op.WATCH, Op.WATCH_EVENT]
    assert out[1][1].payload == b"/w\0tok\0"
    assert error_name(reply(s, c, Op.WATCH, b"/w\0tok\0")) == "EEXIST"


def test_a_write_fires_watches_of_other_connections_on_ancestors_only():
    s = Store()
    a, b = s.connect(), s.connect()
    request(s, b, Op.WATCH, b"/w\0t1\0")
    request(s, b, Op.WATCH, b"/other\0t2\0")
    out = request(s, a, Op.WRITE, b"/w/x/y\0v")
    assert [(to, m.op, m.payload) for to, m in out] == [
        (a, Op.WRITE, b"OK\0"),
        (b, Op.WATCH_EVENT, b"/w/x/y\0t1\0"),
    ]


def test_removing_a_subtree_fires_watches_set_below_it_with_their_own_path():
    s = Store()
    a, b = s.connect(), s.connect()
    reply(s, a, Op.WRITE, b"/r/s/t\0v")
    request(s, b, Op.WATCH, b"/r/s/t\0deep\0")
    out = request(s, a, Op.RM, b"/r\0")
    assert (b, b"/r/s/t\0deep\0") in [(to, m.payload) for to, m in out if m.op == Op.WATCH_EVENT]


def test_relative_watch_paths_are_reported_relative():
    s = Store()
    a = s.connect()
    request(s, a, Op.WATCH, b"data\0rel\0")
    out = request(s, a, Op.WRITE, b"/local/domain/0/data/k\0v")
    assert out[-1][1].payload == b"data/k\0rel\0"


def test_a_transaction_commit_conflicts_with_eagain_when_a_read_node_changed():
    s = Store()
    a, b = s.connect(), s.connect()
    reply(s, a, Op.WRITE, b"/c\0one")
    tx = int(reply(s, a, Op.TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
    assert reply(s, a, Op.READ, b"/c\0", tx_id=tx).payload == b"one"
    reply(s, a, Op.WRITE, b"/c\0two", tx_id=tx)
    reply(s, b, Op.WRITE, b"/c\0other")
    assert error_name(reply(s, a, Op.TRANSACTION_END, b"T\0", tx_id=tx)) == "EAGAIN"
    assert reply(s, b, Op.READ, b"/c\0").payload == b"other"


def test_a_transaction_is_invisible_until_commit_and_fires_watches_then():
    s = Store()
    a, b = s.connect(), s.connect()
    request(s, b, Op.WATCH, b"/tx\0t\0")
    tx = int(reply(s, a, Op.TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
    assert [to for to, _ in request(s, a, Op.WRITE, b"/tx/k\0v", tx_id=tx)] == [a]
    assert error_name(reply(s, b, Op.READ, b"/tx/k\0")) == "ENOENT"
    out = request(s, a, Op.TRANSACTION_END, b"T\0", tx_id=tx)
    assert (b, b"/tx/k\0t\0") in [(to, m.payload) for to, m in out]
    assert reply(s, b, Op.READ, b"/tx/k\0").payload == b"v"


def test_transaction_end_with_an_unknown_id_answers_enoent_and_a_bad_argument_einval():
    s = Store()
    a = s.connect()
    assert error_name(reply(s, a, Op.TRANSACTION_END, b"T\0", tx_id=999)) == "ENOENT"
    tx = int(reply(s, a, Op.TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
    assert error_name(reply(s, a, Op.TRANSACTION_END, b"X\0", tx_id=tx)) == "EINVAL"
    assert error_name(reply(s, a, Op.TRANSACTION_START, b"\0", tx_id=tx)) == "EBUSY"


def test_directory_part_pages_a_directory_too_large_for_one_reply():
    s = Store()
    a = s.connect()
    names = [f"child-number-{i:05d}-padding-padding" for i in range(300)]
    for n in names:
        reply(s, a, Op.WRITE, f"/big/{n}\0".encode())
    assert error_name(reply(s, a, Op.DIRECTORY, b"/big\0")) == "E2BIG"
    got, off = b"", 0
    while True:
        data = reply(s, a, Op.DIRECTORY_PART, f"/big\0{off}\0".encode()).payload
        gen, rest = data.split(b"\0", 1)
        if rest in (b"\0", b""):
            break
        complete = rest.endswith(b"\0\0")
        chunk = rest[:-1] if complete else rest
        got += chunk
        off += len(chunk)
        if complete:
            break
    assert got.split(b"\0")[:-1] == [n.encode() for n in names]


def test_permissions_round_trip_and_bad_permission_strings_answer_einval():
    s = Store()
    a = s.connect()
    reply(s, a, Op.WRITE, b"/perm\0v")
    assert reply(s, a, Op.SET_PERMS, b"/perm\0n0\0r5\0").payload == b"OK\0"
    assert reply(s, a, Op.GET_PERMS, b"/perm\0").payload == b"n0\0r5\0"
    assert error_name(reply(s, a, Op.SET_PERMS, b"/perm\0x0\0")) == "EINVAL"


def test_domain_path_and_introduction_queries():
    s = Store()
    a = s.connect()
    assert reply(s, a, Op.GET_DOMAIN_PATH, b"7\0").payload == b"/local/domain/7\0"
    assert reply(s, a, Op.IS_DOMAIN_INTRODUCED, b"0\0").payload == b"T\0"
    assert reply(s, a, Op.IS_DOMAIN_INTRODUCED, b"7\0").payload == b"F\0"
    assert error_name(reply(s, a, Op.GET_DOMAIN_PATH, b"x\0")) == "EINVAL"


def test_too_many_watches_on_one_connection_answer_e2big():
    s = Store(max_watches=10)
    a = s.connect()
    for i in range(10):
        assert reply(s, a, Op.WATCH, f"/w{i}\0t\0".encode()).op == Op.WATCH
    assert error_name(reply(s, a, Op.WATCH, b"/w10\0t\0")) == "E2BIG"
    assert reply(s, a, Op.RESET_WATCHES, b"\0").payload == b"OK\0"
    assert reply(s, a, Op.WATCH, b"/w10\0t\0").op == Op.WATCH


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(
        st.tuples(
            st.integers(0, 30) | st.integers(0, 2**32 - 1),
            st.integers(0, 3),
            st.binary(max_size=64)
            | st.lists(st.sampled_from([b"/a", b"/a/b", b"@introduceDomain", b"T", b"0", b"tok", b"", b"//"]))
            .map(lambda parts: b"\0".join(parts) + b"\0"),
        ),
        max_size=30,
    )
)
def test_arbitrary_requests_never_crash_the_handler(stream):
    s = Store(max_watches=16)
    a, b = s.connect(), s.connect()
    request(s, b, Op.WATCH, b"/\0all\0")
    for op, tx, payload in stream:
        out = s.handle(a, Message(op, 1, tx, payload))
        assert out and out[0][0] == a
        for _, data in out:
            (msg,) = Framer().feed(data)
            assert len(msg.payload) <= wire.PAYLOAD_MAX


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_framing_plus_handler(data):
    s = Store()
    a = s.connect()
    try:
        messages = Framer().feed(data)
    except wire.Oversize:
        return
    for m in messages:
        assert s.handle(a, m)
