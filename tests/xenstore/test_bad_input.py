"""Hostile and broken clients on a raw socket: the server answers as xenstored does and keeps serving."""

from __future__ import annotations

import socket

import pytest

from xdcore.xenstore import wire
from xdcore.xenstore.wire import Framer, Op


class Raw:
    """A bare xs_wire client: send frames, read replies by header."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.framer = Framer()
        self.queue = []

    def send(self, op, payload: bytes, req_id=1, tx_id=0):
        self.sock.sendall(wire.encode(op, payload, req_id, tx_id))

    def recv(self):
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.queue += self.framer.feed(data)
        return self.queue.pop(0)

    def call(self, op, payload: bytes, **kw):
        self.send(op, payload, **kw)
        return self.recv()

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(xenstored):
    client = Raw(xenstored.socket)
    yield client
    client.close()


def is_error(msg, name):
    return msg.op == Op.ERROR and msg.payload == name.encode() + b"\0"


def test_an_oversize_payload_drops_that_connection_but_others_keep_working(xenstored, raw, base):
    bystander = Raw(xenstored.socket)
    try:
        raw.sock.sendall(wire.HEADER.pack(Op.WRITE, 1, 0, 5000) + b"x" * 5000)
        with pytest.raises((ConnectionError, OSError)):
            raw.recv()
        assert bystander.call(Op.WRITE, f"{base}/alive\0yes".encode()).payload == b"OK\0"
        assert bystander.call(Op.READ, f"{base}/alive\0".encode()).payload == b"yes"
    finally:
        bystander.close()


def test_a_payload_of_exactly_4096_bytes_is_accepted(raw, base):
    path = f"{base}/max".encode() + b"\0"
    value = b"v" * (wire.PAYLOAD_MAX - len(path))
    assert raw.call(Op.WRITE, path + value).payload == b"OK\0"
    assert raw.call(Op.READ, path).payload == value


def test_an_unknown_message_type_answers_einval_and_echoes_the_request_id(raw):
    reply = raw.call(77, b"whatever\0", req_id=4242)
    assert is_error(reply, "EINVAL") and reply.req_id == 4242


@pytest.mark.parametrize("path", [b"/a//b", b"/end/", b"/with space", b"no\xffascii"])
def test_a_malformed_path_answers_einval(raw, path):
    assert is_error(raw.call(Op.WRITE, path + b"\0v"), "EINVAL")


def test_a_client_that_disconnects_mid_message_does_not_disturb_the_server(xenstored, base):
    for cut in (3, wire.HEADER.size, wire.HEADER.size + 2):
        quitter = Raw(xenstored.socket)
        quitter.sock.sendall(wire.encode(Op.WRITE, f"{base}/half\0value".encode())[:cut])
        quitter.close()
    survivor = Raw(xenstored.socket)
    try:
        assert is_error(survivor.call(Op.READ, f"{base}/half\0".encode()), "ENOENT")
    finally:
        survivor.close()


def test_a_flood_of_ten_thousand_watches_hits_the_limit_and_the_server_keeps_serving(xenstored, raw, base):
    batch = b"".join(wire.encode(Op.WATCH, f"{base}/w{i}\0t\0".encode(), req_id=i) for i in range(10_000))
    raw.sock.sendall(batch)
    acks = errors = 0
    while acks + errors < 10_000:
        msg = raw.recv()
        if msg.op == Op.WATCH:
            acks += 1
        elif msg.op == Op.ERROR:
            assert msg.payload == b"E2BIG\0"
            errors += 1
    assert acks >= 1000 and errors > 0  # a per-connection quota, answered with E2BIG
    other = Raw(xenstored.socket)
    try:
        assert other.call(Op.WRITE, f"{base}/after\0ok".encode()).payload == b"OK\0"
    finally:
        other.close()


def test_requests_are_answered_in_order_when_pipelined(raw, base):
    raw.sock.sendall(
        wire.encode(Op.WRITE, f"{base}/p\0one".encode(), req_id=1)
        + wire.encode(Op.READ, f"{base}/p\0".encode(), req_id=2)
        + wire.encode(Op.READ, f"{base}/nope\0".encode(), req_id=3)
    )
    replies = [raw.recv() for _ in range(3)]
    assert [r.req_id for r in replies] == [1, 2, 3]
    assert replies[1].payload == b"one" and is_error(replies[2], "ENOENT")
