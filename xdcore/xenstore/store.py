"""The data and rules of a xenstored, with no I/O: a tree, watches, transactions, one handler.

`Store.handle(conn, message)` takes one framed request and returns the frames to
send, as (connection id, bytes) pairs in order — the reply to the caller first,
then the watch events it caused, for any connection.  The asyncio server in
`xdcore.sim.xenstored` only moves bytes; everything a client can observe is
decided here, which is what makes the handler fuzzable as a pure function.

Rules follow the C xenstored of Xen 4.17 (tools/xenstore/xenstored_core.c,
_watch.c, _transaction.c) as summarised in xen-reference.md §6.2:

- errors are ERROR replies carrying the errno *name*; req_id/tx_id are echoed;
- WATCH is acknowledged and then fires once for the watched path itself;
- a transaction works on a private copy of the tree and remembers every node it
  read or wrote; its commit fails with EAGAIN when any of those nodes changed
  underneath it (nodes are immutable values, so "changed" is an identity test);
- watch events of a transaction fire at commit; RM fires for the removed node
  and for watches below it;
- every connection is a dom0 socket client, hence privileged: permissions are
  stored and reported but not enforced (as for dom0 on a real host).

Limits protect the simulator from a flooding client: watches and open
transactions per connection (E2BIG / ENOSPC, as xenstored's quotas answer).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from . import wire
from .wire import Message, Op

Outgoing = tuple[int, bytes]

ROOT_PERMS = ("n0",)
_PERM = re.compile(r"[nrwb][0-9]{1,10}")
_DOMID = re.compile(r"[0-9]{1,10}")
DOMID_MAX = 0x7FF0  # DOMID_FIRST_RESERVED


class XsError(Exception):
    """An operation failed with a xenstored errno name (EINVAL, ENOENT, …)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass(frozen=True, slots=True)
class Node:
    """One node: immutable, replaced on every change (so identity means 'unchanged')."""

    value: bytes = b""
    perms: tuple[str, ...] = ROOT_PERMS
    children: tuple[str, ...] = ()
    gen: int = 0


class Tree:
    """A path → Node map with xenstored's operations; optionally records what it touched."""

    def __init__(self, nodes: dict[str, Node], gens: Iterable[int], tracking: bool = False):
        self.nodes = nodes
        self._gens = gens
        self.accessed: set[str] | None = set() if tracking else None
        self.modified: set[str] | None = set() if tracking else None

    def _gen(self) -> int:
        return next(self._gens)  # type: ignore[call-overload]

    def get(self, path: str) -> Node | None:
        if self.accessed is not None:
            self.accessed.add(path)
        return self.nodes.get(path)

    def _put(self, path: str, node: Node | None) -> None:
        if self.accessed is not None and self.modified is not None:
            self.accessed.add(path)
            self.modified.add(path)
        if node is None:
            self.nodes.pop(path, None)
        else:
            self.nodes[path] = node

    def need(self, path: str) -> Node:
        node = self.get(path)
        if node is None:
            raise XsError("ENOENT")
        return node

    def ensure(self, path: str) -> Node:
        """The node at path, creating it and missing parents (empty value, parent's perms)."""
        node = self.get(path)
        if node is not None:
            return node
        if path == "/":  # pragma: no cover - the root always exists
            node = Node(gen=self._gen())
            self._put(path, node)
            return node
        parent_path = wire.parent_of(path)
        parent = self.ensure(parent_path)
        name = path.rsplit("/", 1)[1]
        node = Node(perms=parent.perms, gen=self._gen())
        self._put(parent_path, replace(parent, children=parent.children + (name,), gen=self._gen()))
        self._put(path, node)
        return node

    def write(self, path: str, value: bytes) -> None:
        node = self.ensure(path)
        self._put(path, replace(node, value=value, gen=self._gen()))

    def set_perms(self, path: str, perms: tuple[str, ...]) -> None:
        node = self.need(path)
        self._put(path, replace(node, perms=perms, gen=self._gen()))

    def rm(self, path: str) -> list[str]:
        """Remove path and its subtree; the removed paths, top first. [] when absent but parent present."""
        if path == "/":
            raise XsError("EINVAL")
        node = self.get(path)
        parent_path = wire.parent_of(path)
        if node is None:
            if self.get(parent_path) is None:
                raise XsError("ENOENT")
            return []
        removed: list[str] = []
        stack = [path]
        while stack:
            p = stack.pop()
            n = self.get(p)
            if n is None:
                continue
            removed.append(p)
            stack.extend(p.rstrip("/") + "/" + c for c in reversed(n.children))
            self._put(p, None)
        parent = self.need(parent_path)
        name = path.rsplit("/", 1)[1]
        self._put(
            parent_path,
            replace(parent, children=tuple(c for c in parent.children if c != name), gen=self._gen()),
        )
        return removed


@dataclass(slots=True)
class Watch:
    path: str  # as the client gave it (relative paths are reported back relative)
    token: str
    abs_path: str


@dataclass(slots=True)
class Transaction:
    base: dict[str, Node]
    tree: Tree
    changes: list[tuple[str, bool]] = field(default_factory=list)  # (path, exact) watch firings


@dataclass(slots=True)
class Connection:
    id: int
    domid: int = 0
    watches: list[Watch] = field(default_factory=list)
    transactions: dict[int, Transaction] = field(default_factory=dict)


def _home(domid: int) -> str:
    return f"/local/domain/{domid}"


def base_tree() -> dict[str, Node]:
    """What a fresh xenstored holds: /, /local/domain, /tool/xenstored, /vm, /libxl."""
    nodes: dict[str, Node] = {"/": Node()}
    t = Tree(nodes, itertools.count(1))
    for p in ("/local/domain", "/tool/xenstored", "/vm", "/libxl"):
        t.ensure(p)
    return nodes


class Store:
    """The whole server state and its request handler (pure: returns the frames to send)."""

    def __init__(self, *, max_watches: int = 4096, max_transactions: int = 64):
        self._gens = itertools.count(1000)
        self.nodes = base_tree()
        self.conns: dict[int, Connection] = {}
        self.introduced: set[int] = {0}
        self.max_watches = max_watches
        self.max_transactions = max_transactions
        self._conn_ids = itertools.count(1)
        self._tx_ids = itertools.count(1)

    # -- connections -------------------------------------------------------------

    def connect(self, domid: int = 0) -> int:
        cid = next(self._conn_ids)
        self.conns[cid] = Connection(cid, domid)
        return cid

    def disconnect(self, cid: int) -> None:
        self.conns.pop(cid, None)

    # -- the internal, privileged writer (the host mirror) -----------------------

    def main_tree(self) -> Tree:
        return Tree(self.nodes, self._gens)

    def put(self, path: str, value: bytes, perms: tuple[str, ...] | None = None) -> list[Outgoing]:
        tree = self.main_tree()
        tree.write(path, value)
        if perms is not None:
            tree.set_perms(path, perms)
        return self.fire(path, exact=True)

    def remove(self, path: str) -> list[Outgoing]:
        try:
            removed = self.main_tree().rm(path)
        except XsError:
            return []
        return self._fire_removed(removed)

    def read(self, path: str) -> bytes | None:
        node = self.nodes.get(path)
        return None if node is None else node.value

    def introduce(self, domid: int) -> list[Outgoing]:
        self.introduced.add(domid)
        return self.fire(wire.INTRODUCE_DOMAIN, exact=True)

    def release(self, domid: int) -> list[Outgoing]:
        self.introduced.discard(domid)
        return self.fire(wire.RELEASE_DOMAIN, exact=True)

    # -- watches -----------------------------------------------------------------

    def fire(self, path: str, *, exact: bool, seen: set[tuple[int, int]] | None = None) -> list[Outgoing]:
        out: list[Outgoing] = []
        for conn in self.conns.values():
            for w in conn.watches:
                if exact and wire.is_child(path, w.abs_path):
                    event = path
                elif not exact and wire.is_child(w.abs_path, path):
                    event = w.abs_path
                else:
                    continue
                if seen is not None:
                    key = (conn.id, id(w))
                    if key in seen:
                        continue
                    seen.add(key)
                out.append((conn.id, self._event(conn, w, event)))
        return out

    def _fire_removed(self, removed: list[str]) -> list[Outgoing]:
        out: list[Outgoing] = []
        seen: set[tuple[int, int]] = set()
        for i, p in enumerate(removed):
            out += self.fire(p, exact=i == 0, seen=seen)
        return out

    def _event(self, conn: Connection, w: Watch, path: str) -> bytes:
        if not w.path.startswith(("/", "@")):
            prefix = _home(conn.domid) + "/"
            path = path[len(prefix) :] if path.startswith(prefix) else path
        payload = path.encode() + b"\0" + w.token.encode() + b"\0"
        return wire.encode(Op.WATCH_EVENT, payload)

    # -- the request handler -----------------------------------------------------

    def handle(self, cid: int, msg: Message) -> list[Outgoing]:
        """Apply one request from connection `cid`; the frames to send, reply first."""
        conn = self.conns[cid]
        try:
            payload, events = self._dispatch(conn, msg)
        except XsError as err:
            return [(cid, wire.encode(Op.ERROR, wire.error_payload(err.name), msg.req_id, msg.tx_id))]
        return [(cid, wire.encode(msg.op, payload, msg.req_id, msg.tx_id))] + events

    _TX_OPS = frozenset(
        {Op.DIRECTORY, Op.READ, Op.GET_PERMS, Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS,
         Op.DIRECTORY_PART, Op.TRANSACTION_END}
    )  # fmt: skip

    def _dispatch(self, conn: Connection, msg: Message) -> tuple[bytes, list[Outgoing]]:
        try:
            op = Op(msg.op)
        except ValueError:
            raise XsError("EINVAL") from None
        handler = getattr(self, "_op_" + op.name.lower(), None)
        if handler is None:
            raise XsError("EINVAL")
        tx: Transaction | None = None
        if op in self._TX_OPS and msg.tx_id:
            tx = conn.transactions.get(msg.tx_id)
            if tx is None:
                raise XsError("ENOENT")
        return handler(conn, msg, tx)

    # argument parsing, as xenstored's onearg()/get_strings()

    @staticmethod
    def _onearg(payload: bytes) -> str:
        if not payload or payload.find(b"\0") != len(payload) - 1:
            raise XsError("EINVAL")
        return _ascii(payload[:-1])

    @staticmethod
    def _strings(payload: bytes, n: int) -> list[bytes]:
        parts = wire.split_strings(payload)
        if len(parts) < n:
            raise XsError("EINVAL")
        return parts

    def _path(self, conn: Connection, raw: str) -> str:
        if not wire.valid_path(raw):
            raise XsError("EINVAL")
        path = raw if raw.startswith("/") else _home(conn.domid) + "/" + raw
        if len(path) > wire.ABS_PATH_MAX:
            raise XsError("EINVAL")
        return path

    def _tree(self, tx: Transaction | None) -> Tree:
        return tx.tree if tx is not None else self.main_tree()

    def _changed(self, tx: Transaction | None, path: str, exact: bool = True) -> list[Outgoing]:
        if tx is not None:
            tx.changes.append((path, exact))
            return []
        return self.fire(path, exact=exact)

    # operations

    def _op_read(self, conn: Connection, msg: Message, tx: Transaction | None):
        path = self._path(conn, self._onearg(msg.payload))
        return self._tree(tx).need(path).value, []

    def _op_directory(self, conn: Connection, msg: Message, tx: Transaction | None):
        path = self._path(conn, self._onearg(msg.payload))
        node = self._tree(tx).need(path)
        data = b"".join(c.encode() + b"\0" for c in node.children)
        if len(data) > wire.PAYLOAD_MAX:
            raise XsError("E2BIG")
        return data, []

    def _op_directory_part(self, conn: Connection, msg: Message, tx: Transaction | None):
        raw_path, raw_off = self._strings(msg.payload, 2)[:2]
        path = self._path(conn, _ascii(raw_path))
        off_s = _ascii(raw_off)
        if not _DOMID.fullmatch(off_s):
            raise XsError("EINVAL")
        node = self._tree(tx).need(path)
        children = b"".join(c.encode() + b"\0" for c in node.children)
        gen = str(node.gen).encode() + b"\0"
        off = int(off_s)
        if off >= len(children):
            return gen + b"\0", []
        maxlen = wire.PAYLOAD_MAX - len(gen) - 1
        end = off
        while end < len(children):
            nxt = children.index(b"\0", end) + 1
            if nxt - off > maxlen:
                break
            end = nxt
        data = gen + children[off:end]
        if end == len(children):
            data += b"\0"
        return data, []

    def _op_get_perms(self, conn: Connection, msg: Message, tx: Transaction | None):
        raw = self._onearg(msg.payload)
        if raw in wire.SPECIAL_PATHS:
            return b"n0\0", []
        node = self._tree(tx).need(self._path(conn, raw))
        return b"".join(p.encode() + b"\0" for p in node.perms), []

    def _op_set_perms(self, conn: Connection, msg: Message, tx: Transaction | None):
        parts = self._strings(msg.payload, 2)
        raw = _ascii(parts[0])
        perms = tuple(_ascii(p) for p in parts[1:])
        if not all(_PERM.fullmatch(p) for p in perms):
            raise XsError("EINVAL")
        if raw in wire.SPECIAL_PATHS:
            return b"OK\0", []
        path = self._path(conn, raw)
        self._tree(tx).set_perms(path, perms)
        return b"OK\0", self._changed(tx, path)

    def _op_write(self, conn: Connection, msg: Message, tx: Transaction | None):
        if b"\0" not in msg.payload:
            raise XsError("EINVAL")
        raw, value = msg.payload.split(b"\0", 1)
        path = self._path(conn, _ascii(raw))
        if path == "/":
            raise XsError("EINVAL")
        self._tree(tx).write(path, value)
        return b"OK\0", self._changed(tx, path)

    def _op_mkdir(self, conn: Connection, msg: Message, tx: Transaction | None):
        path = self._path(conn, self._onearg(msg.payload))
        tree = self._tree(tx)
        if tree.get(path) is not None:
            return b"OK\0", []
        tree.ensure(path)
        return b"OK\0", self._changed(tx, path)

    def _op_rm(self, conn: Connection, msg: Message, tx: Transaction | None):
        path = self._path(conn, self._onearg(msg.payload))
        removed = self._tree(tx).rm(path)
        if tx is not None:
            tx.changes += [(p, i == 0) for i, p in enumerate(removed)]
            return b"OK\0", []
        return b"OK\0", self._fire_removed(removed)

    def _op_watch(self, conn: Connection, msg: Message, tx: Transaction | None):
        raw_path, raw_token = self._strings(msg.payload, 2)[:2]
        path, token = _ascii(raw_path), _ascii(raw_token)
        abs_path = path if path in wire.SPECIAL_PATHS else self._path(conn, path)
        if any(w.path == path and w.token == token for w in conn.watches):
            raise XsError("EEXIST")
        if len(conn.watches) >= self.max_watches:
            raise XsError("E2BIG")
        w = Watch(path, token, abs_path)
        conn.watches.append(w)
        first = wire.encode(Op.WATCH_EVENT, path.encode() + b"\0" + token.encode() + b"\0")
        return b"OK\0", [(conn.id, first)]

    def _op_unwatch(self, conn: Connection, msg: Message, tx: Transaction | None):
        raw_path, raw_token = self._strings(msg.payload, 2)[:2]
        path, token = _ascii(raw_path), _ascii(raw_token)
        for i, w in enumerate(conn.watches):
            if w.path == path and w.token == token:
                del conn.watches[i]
                return b"OK\0", []
        raise XsError("ENOENT")

    def _op_reset_watches(self, conn: Connection, msg: Message, tx: Transaction | None):
        conn.watches.clear()
        conn.transactions.clear()
        return b"OK\0", []

    def _op_transaction_start(self, conn: Connection, msg: Message, tx: Transaction | None):
        if msg.tx_id:
            raise XsError("EBUSY")
        if len(conn.transactions) >= self.max_transactions:
            raise XsError("ENOSPC")
        tx_id = next(self._tx_ids)
        base = dict(self.nodes)
        conn.transactions[tx_id] = Transaction(base, Tree(dict(base), self._gens, tracking=True))
        return str(tx_id).encode() + b"\0", []

    def _op_transaction_end(self, conn: Connection, msg: Message, tx: Transaction | None):
        if tx is None:
            raise XsError("ENOENT")
        arg = self._onearg(msg.payload)
        if arg not in ("T", "F"):
            raise XsError("EINVAL")
        del conn.transactions[msg.tx_id]
        if arg == "F":
            return b"OK\0", []
        assert tx.tree.accessed is not None and tx.tree.modified is not None
        if any(tx.base.get(p) is not self.nodes.get(p) for p in tx.tree.accessed):
            raise XsError("EAGAIN")
        for p in tx.tree.modified:
            node = tx.tree.nodes.get(p)
            if node is None:
                self.nodes.pop(p, None)
            else:
                self.nodes[p] = node
        out: list[Outgoing] = []
        seen: set[tuple[int, int]] = set()
        for path, exact in tx.changes:
            out += self.fire(path, exact=exact, seen=None if exact else seen)
        return b"OK\0", out

    def _op_get_domain_path(self, conn: Connection, msg: Message, tx: Transaction | None):
        return _home(_domid(self._onearg(msg.payload))).encode() + b"\0", []

    def _op_is_domain_introduced(self, conn: Connection, msg: Message, tx: Transaction | None):
        domid = _domid(self._onearg(msg.payload))
        return (b"T\0" if domid in self.introduced else b"F\0"), []

    def _op_introduce(self, conn: Connection, msg: Message, tx: Transaction | None):
        domid = _domid(_ascii(self._strings(msg.payload, 3)[0]))
        if domid == 0:
            raise XsError("EINVAL")
        return b"OK\0", self.introduce(domid)

    def _op_release(self, conn: Connection, msg: Message, tx: Transaction | None):
        domid = _domid(self._onearg(msg.payload))
        if domid == 0:
            raise XsError("EINVAL")
        if domid not in self.introduced:
            raise XsError("ENOENT")
        return b"OK\0", self.release(domid)

    def _op_resume(self, conn: Connection, msg: Message, tx: Transaction | None):
        domid = _domid(self._onearg(msg.payload))
        if domid not in self.introduced:
            raise XsError("ENOENT")
        return b"OK\0", []

    def _op_set_target(self, conn: Connection, msg: Message, tx: Transaction | None):
        dom, target = self._strings(msg.payload, 2)[:2]
        _domid(_ascii(dom)), _domid(_ascii(target))
        return b"OK\0", []


def _ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise XsError("EINVAL") from None


def _domid(text: str) -> int:
    if not _DOMID.fullmatch(text) or int(text) >= DOMID_MAX:
        raise XsError("EINVAL")
    return int(text)
