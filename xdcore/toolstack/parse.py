"""Readers for what xl and xm print: pure functions from text to values, no I/O.

The classic script greps `xl list -l` line by line and mistakes a guest's
`c_info.domid` (4294967295) or a channel's `"name"` for the domain's own;
here the JSON is decoded as JSON, the SXP of xm is tokenized as
s-expressions, and the plain tables are parsed from the right, because a
name is never truncated and may be wider than its 40 columns or contain
spaces (xen-reference §1-§4).

Every reader raises only `ParseError(what, where, detail)` on text it cannot
understand, so an adapter can report "cannot parse xl list -l output (line 3
column 9): …" instead of a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ParseError
from ..model import NAMELESS, Domain, DomainState, HostInfo

# -- values --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListRow:
    """One row of plain `xl list` / `xm list` (`xl list -v` adds uuid and reason)."""

    name: str
    domid: int
    mem_mib: int
    vcpus: int
    state: DomainState
    cpu_time: float
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class LongEntry:
    """One domain of `xl list -l` (JSON) or `xm list -l` (SXP).

    `domid` is None for an xm managed domain that is not running.  `state`
    and `cpu_time` only come from xm, whose long listing carries them.
    `vcpus` is the number of online vCPUs when known, else the maximum.
    """

    domid: int | None
    name: str | None
    uuid: str | None = None
    domain_type: str | None = None
    max_memkb: int = 0
    target_memkb: int = 0
    vcpus: int = 0
    max_vcpus: int = 0
    state: DomainState | None = None
    cpu_time: float = 0.0


# -- plain tables ---------------------------------------------------------------

_FLAGS = r"(?P<state>[r-][b-][p-][s-].[d-])"
_FIXED = r" +(?P<domid>-?\d+) +(?P<mem>\d+) +(?P<vcpus>-?\d+) +" + _FLAGS + r" +(?P<time>-?\d+\.\d+)"
# Greedy `(.*)` name: the fixed fields bind at the rightmost place they fit,
# which is "parse from the right" (names are never truncated, may hold spaces).
_ROW_PLAIN = re.compile(r"^(?P<name>.*)" + _FIXED + r"$")
_ROW_VERBOSE = re.compile(
    r"^(?P<name>.*)" + _FIXED + r" (?P<uuid>[0-9a-fA-F-]{36}) +(?P<reason>\S+) +(?P<label>\S.*)$"
)
_ROW_EXTRA = re.compile(r"^(?P<name>.*)" + _FIXED + r"(?P<rest> .*)$")
_XM_INACTIVE = re.compile(r"^(?P<name>.*?) +(?P<mem>\d+) +(?P<vcpus>\d+) +(?P<time>-?\d+\.\d+)$")


def _row_from_match(m: re.Match[str], what: str, lineno: int) -> ListRow:
    name = m.group("name").rstrip(" ")
    try:
        state = DomainState.from_flags(m.group("state"))
        return ListRow(
            name=name,
            domid=int(m.group("domid")),
            mem_mib=int(m.group("mem")),
            vcpus=int(m.group("vcpus")),
            state=state,
            cpu_time=float(m.group("time")),
            uuid=m.groupdict().get("uuid"),
        )
    except ValueError as exc:  # pragma: no cover - the regex guarantees the shapes
        raise ParseError(what, f"line {lineno}", str(exc)) from None


def _is_header(line: str) -> bool:
    return line.startswith("Name") and " ID " in line.replace("\t", " ") + " "


def parse_xl_list(text: str) -> list[ListRow]:
    """Rows of `xl list` (plain, `-v`, `-c`, `-n`, `-Z`), in printed order.

    A line that is neither the header, blank, nor a row raises ParseError:
    silently dropping a guest would make stop forget it.  Lines end at
    "\\n" only (xl prints a name as it is: a vertical tab or U+2028 in a
    name is part of its row).  A name holding "\\n" spans two lines and
    cannot be read here: see parse_xl_list_named.
    """
    what = "xl list output"
    rows: list[ListRow] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        m = _ROW_PLAIN.match(line) or _ROW_VERBOSE.match(line) or _ROW_EXTRA.match(line)
        if m is None:
            if _is_header(line):
                continue
            raise ParseError(what, f"line {lineno}", f"not a domain row: {line[:80]!r}")
        rows.append(_row_from_match(m, what, lineno))
    return rows


def names_break_lines(names: Iterable[str | None]) -> bool:
    """True when a name would span lines in plain `xl list` (then read it with parse_xl_list_named)."""
    return any(n is not None and "\n" in n for n in names)


def _named_row(name: str, domid: int) -> re.Pattern[str]:
    return re.compile(re.escape(name) + r" +" + str(domid)
                      + r" +(?P<mem>\d+) +(?P<vcpus>-?\d+) +" + _FLAGS + r" +(?P<time>-?\d+\.\d+)[ \t]*(?=\n|\Z)")


def parse_xl_list_named(text: str, names: Mapping[int, str]) -> list[ListRow]:
    """Rows of plain `xl list` whose names are known by domid (from `xl list -l`), in printed order.

    xl prints a name as it is, so a name holding a newline spans lines and
    may even look like rows of its own.  Rows are therefore read in order
    from the start, the way xl prints them (ascending domid): at each point
    the next row is matched against the known names — the next expected
    domid first, then any other known one (a domain may have vanished
    between the two listings) — and only then as a plain one-line row (a
    domain that has no stored config, e.g. Domain-0 on some hosts).  A row
    can thus only be read as the domain whose exact name and domid it
    carries.  Text that matches none raises ParseError.
    """
    what = "xl list output"
    pending = sorted(d for d, n in names.items() if n)
    patterns: dict[int, re.Pattern[str]] = {}
    rows: list[ListRow] = []
    pos, n = 0, len(text)
    while pos < n:
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if not line.strip() or (not rows and _is_header(line)):
            pos = n if end < 0 else end + 1
            continue
        found = None
        for domid in pending:
            pat = patterns.get(domid) or patterns.setdefault(domid, _named_row(names[domid], domid))
            m = pat.match(text, pos)
            if m:
                found = (domid, m)
                break
        if found is not None:
            domid, m = found
            pending.remove(domid)
            rows.append(ListRow(name=names[domid], domid=domid, mem_mib=int(m.group("mem")), vcpus=int(m.group("vcpus")),
                                state=DomainState.from_flags(m.group("state")), cpu_time=float(m.group("time"))))
            pos = m.end() + 1
            continue
        m = _ROW_PLAIN.match(line)
        if m is None:
            lineno = text.count("\n", 0, pos) + 1
            raise ParseError(what, f"line {lineno}", f"not a domain row: {line[:80]!r}")
        row = _row_from_match(m, what, text.count("\n", 0, pos) + 1)
        if row.domid in pending:
            pending.remove(row.domid)  # renamed between the two listings: the plain name is the newer one
        rows.append(row)
        pos = n if end < 0 else end + 1
    return rows


def parse_xm_list(text: str) -> list[ListRow]:
    """Rows of plain `xm list` for domains that exist (have a domid).

    Managed domains that xend knows but that are not running print an empty
    ID and State; they are skipped: nothing in a start or stop acts on them.
    """
    what = "xm list output"
    rows: list[ListRow] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _ROW_PLAIN.match(line)
        if m is None:
            if _is_header(line) or _XM_INACTIVE.match(line):
                continue
            raise ParseError(what, f"line {lineno}", f"not a domain row: {line[:80]!r}")
        rows.append(_row_from_match(m, what, lineno))
    return rows


# -- xl list -l (JSON) ----------------------------------------------------------


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(what, f"line {exc.lineno} column {exc.colno}", exc.msg) from None
    except (ValueError, RecursionError) as exc:  # e.g. absurd nesting, bad surrogates
        raise ParseError(what, "input", str(exc) or type(exc).__name__) from None


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def _as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _entry_from_config(domid: int | None, config: Any) -> LongEntry:
    c_info = _get(config, "c_info")
    b_info = _get(config, "b_info")
    avail = _get(b_info, "avail_vcpus")
    max_vcpus = _as_int(_get(b_info, "max_vcpus")) or 0
    online = len(avail) if isinstance(avail, list) else 0
    return LongEntry(
        domid=domid,
        name=_as_str(_get(c_info, "name")),
        uuid=_as_str(_get(c_info, "uuid")),
        domain_type=_as_str(_get(c_info, "type")),
        max_memkb=_as_int(_get(b_info, "max_memkb")) or 0,
        target_memkb=_as_int(_get(b_info, "target_memkb")) or 0,
        vcpus=online or max_vcpus,
        max_vcpus=max_vcpus,
    )


def parse_xl_list_long(text: str) -> list[LongEntry]:
    """Domains of `xl list -l`: a JSON array of {"domid", "config"} (xen-reference §2).

    The domid is the top-level one; `c_info.domid` (4294967295 for every
    xl-created guest) is never used.  Missing config keys are tolerated;
    an element without an integer top-level domid is a ParseError since
    it cannot be joined with `xl list`.  If xl.conf selects
    `output_format="sxp"`, the SXP form is read instead.
    """
    what = "xl list -l output"
    if text.lstrip().startswith("("):
        return [e for e in parse_xm_sxp(text, what=what)]
    data = _json(text, what)
    if not isinstance(data, list):
        raise ParseError(what, "top level", f"expected a JSON array, got {type(data).__name__}")
    entries: list[LongEntry] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ParseError(what, f"element {i}", f"expected an object, got {type(item).__name__}")
        domid = _as_int(item.get("domid"))
        if domid is None or not isinstance(item.get("domid"), int):
            raise ParseError(what, f"element {i}", "no integer \"domid\"")
        entries.append(_entry_from_config(domid, item.get("config")))
    return entries


# -- SXP (xm list -l, xm create --dryrun, xl in sxp mode) -----------------------

_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
                   "f": "\f", "v": "\v", "0": "\0"}


class _SxpReader:
    """A tokenizer + reader for xend's s-expressions (sxp.py / PrettyPrint)."""

    def __init__(self, text: str, what: str):
        self.s, self.i, self.what = text, 0, what

    def _where(self, pos: int | None = None) -> str:
        pos = self.i if pos is None else pos
        line = self.s.count("\n", 0, pos) + 1
        col = pos - (self.s.rfind("\n", 0, pos) + 1) + 1
        return f"line {line} column {col}"

    def fail(self, detail: str, pos: int | None = None) -> ParseError:
        return ParseError(self.what, self._where(pos), detail)

    def read_all(self) -> list[Any]:
        """Top-level expressions; bare atoms between them (stray messages) are skipped."""
        out: list[Any] = []
        while True:
            self._skip_space()
            if self.i >= len(self.s):
                return out
            c = self.s[self.i]
            if c == "(":
                out.append(self._list())
            elif c == ")":
                raise self.fail("unbalanced ')'")
            else:
                self._atom()  # text outside a record: not data
        return out

    def _skip_space(self) -> None:
        n = len(self.s)
        while self.i < n and self.s[self.i].isspace():
            self.i += 1

    def _list(self) -> list[Any]:
        # iterative, so that deep nesting cannot exhaust the Python stack
        start = self.i
        stack: list[list[Any]] = []
        starts: list[int] = []
        while True:
            self._skip_space()
            if self.i >= len(self.s):
                raise self.fail("unterminated '(' (missing ')')", starts[-1] if starts else start)
            c = self.s[self.i]
            if c == "(":
                starts.append(self.i)
                self.i += 1
                stack.append([])
            elif c == ")":
                self.i += 1
                done = stack.pop()
                starts.pop()
                if not stack:
                    return done
                stack[-1].append(done)
            else:
                stack[-1].append(self._atom())

    def _atom(self) -> str:
        c = self.s[self.i]
        if c in "'\"":
            return self._quoted(c)
        start = self.i
        n = len(self.s)
        while self.i < n and not self.s[self.i].isspace() and self.s[self.i] not in "()'\"":
            self.i += 1
        if self.i == start:  # pragma: no cover - callers guarantee progress
            self.i += 1
        return self.s[start : self.i]

    def _quoted(self, q: str) -> str:
        start = self.i
        self.i += 1
        out: list[str] = []
        n = len(self.s)
        while True:
            if self.i >= n:
                raise self.fail(f"unterminated {q}string{q}", start)
            c = self.s[self.i]
            self.i += 1
            if c == q:
                return "".join(out)
            if c != "\\":
                out.append(c)
                continue
            if self.i >= n:
                raise self.fail("backslash at end of input", self.i - 1)
            e = self.s[self.i]
            self.i += 1
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                digits = self.s[self.i : self.i + width]
                if len(digits) == width and re.fullmatch(r"[0-9a-fA-F]+", digits):
                    cp = int(digits, 16)
                    if cp > 0x10FFFF:
                        raise self.fail(f"bad escape \\{e}{digits}", self.i - 2)
                    out.append(chr(cp))
                    self.i += width
                else:
                    raise self.fail(f"bad escape \\{e}{digits}", self.i - 2)
            else:
                out.append("\\" + e)


def parse_sxp(text: str, what: str = "SXP") -> list[Any]:
    """All top-level s-expressions of `text` as nested lists of strings."""
    return _SxpReader(text, what).read_all()


def _field(rec: list[Any], key: str) -> Any:
    """The value of `(key value)` among a record's children (first wins); a sublist stays a list."""
    for child in rec[1:]:
        if isinstance(child, list) and child and child[0] == key:
            if len(child) == 2:
                return child[1]
            return child[1:] if len(child) > 2 else None
    return None


def _sxp_int(v: Any) -> int | None:
    return int(v) if isinstance(v, str) and re.fullmatch(r"-?\d+", v) else None


def _sxp_float(v: Any) -> float:
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return 0.0
        return f if f == f and abs(f) != float("inf") else 0.0
    return 0.0


def _image_type(image: Any) -> str | None:
    if isinstance(image, list) and image and isinstance(image[0], str):
        return {"linux": "pv", "hvm": "hvm"}.get(image[0], image[0])
    return None


def _entry_from_sxp(rec: list[Any]) -> LongEntry:
    name = _field(rec, "name")
    uuid = _field(rec, "uuid")
    state_s = _field(rec, "state")
    state: DomainState | None = None
    if isinstance(state_s, str) and len(state_s) == 6:
        state = DomainState.from_flags(state_s)
    memory = _sxp_int(_field(rec, "memory"))
    maxmem = _sxp_int(_field(rec, "maxmem"))
    online = _sxp_int(_field(rec, "online_vcpus"))
    vcpus = _sxp_int(_field(rec, "vcpus")) or _sxp_int(_field(rec, "max_vcpus")) or 0
    max_memkb = maxmem * 1024 if maxmem is not None else (_sxp_int(_field(rec, "max_memkb")) or 0)
    target_memkb = memory * 1024 if memory is not None else (_sxp_int(_field(rec, "target_memkb")) or 0)
    return LongEntry(
        domid=_sxp_int(_field(rec, "domid")),
        name=name if isinstance(name, str) else None,
        uuid=uuid if isinstance(uuid, str) else None,
        domain_type=_image_type(_field(rec, "image")),
        max_memkb=max_memkb,
        target_memkb=target_memkb,
        vcpus=online or vcpus,
        max_vcpus=vcpus,
        state=state,
        cpu_time=_sxp_float(_field(rec, "cpu_time")),
    )


def parse_xm_sxp(text: str, what: str = "xm list -l output") -> list[LongEntry]:
    """Domains of `xm list -l` (`(domain …)` records) or `xm create --dryrun` (`(vm …)`).

    Other top-level expressions are ignored.  Raises only ParseError.
    """
    entries: list[LongEntry] = []
    for expr in parse_sxp(text, what):
        if expr and expr[0] in ("domain", "vm"):
            entries.append(_entry_from_sxp(expr))
    return entries


# -- dry run and domain config files ---------------------------------------------


def parse_dryrun_name(text: str) -> str:
    """The guest name in `xl create --dryrun` JSON (c_info.name) or xm's `(vm (name X))`."""
    what = "create --dryrun output"
    stripped = text.lstrip()
    if stripped.startswith("("):
        for entry in parse_xm_sxp(text, what=what):
            if entry.name:
                return entry.name
        raise ParseError(what, "(vm …)", "no (name …) in the dry-run config")
    data = _json(text, what)
    name = _get(data, "c_info", "name")
    if not isinstance(name, str) or not name:
        raise ParseError(what, "c_info.name", "no guest name in the dry-run config")
    return name


_CFG_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+)
  | (?P<comment>\#[^\n]*)
  | (?P<sep>[\n;])
  | (?P<key>[a-z][._0-9a-z]*)
  | (?P<op>\+=|=)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<num>[0-9][0-9a-fx]*)
  | (?P<punct>[\[\],])
    """,
    re.X | re.S,
)
_CFG_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                "\\": "\\", "'": "'", '"': '"'}


class _NotPlain(Exception):
    pass


def _dequote(tok: str) -> str:
    body = tok[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _CFG_ESCAPES:
            out.append(_CFG_ESCAPES[e])
            i += 2
        elif e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert m
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        else:
            raise _NotPlain
    return "".join(out)


def _cfg_tokens(text: str) -> Iterable[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        m = _CFG_TOKEN.match(text, pos)
        if m is None:
            raise _NotPlain  # Python-looking or otherwise beyond the xl grammar
        pos = m.end()
        kind = m.lastgroup or ""
        if kind in ("ws", "comment"):
            continue
        yield kind, m.group(0)
    yield "sep", "\n"


def read_config_name(text: str) -> str | None:
    """The `name = "…"` of an xl domain config, read natively (xen-reference §4.2).

    Returns None whenever the file is not plain xl syntax (Python-looking xm
    configs, upper-case keys, computed names, escapes we do not know), or
    has no usable name: the caller then asks the toolstack with a dry run,
    which also knows xm's basename default.
    """
    try:
        tokens = list(_cfg_tokens(text))
        name: str | None = None
        name_is_string = False
        i = 0
        while i < len(tokens):
            kind, tok = tokens[i]
            if kind == "sep":
                i += 1
                continue
            if kind != "key" or i + 1 >= len(tokens) or tokens[i + 1][0] != "op":
                raise _NotPlain
            key, op = tok, tokens[i + 1][1]
            i += 2
            value, i = _cfg_value(tokens, i)
            if i < len(tokens) and tokens[i][0] != "sep":
                raise _NotPlain
            if key != "name":
                continue
            if isinstance(value, str) and value.startswith(("\"", "'")):
                s = _dequote(value)
                if op == "+=" and name is not None:
                    if not name_is_string:
                        raise _NotPlain
                    name += s
                else:
                    name = s
                name_is_string = True
            else:
                raise _NotPlain  # a number or list as name: let xl decide
        return name or None
    except _NotPlain:
        return None


def _cfg_value(tokens: Sequence[tuple[str, str]], i: int) -> tuple[Any, int]:
    if i >= len(tokens):
        raise _NotPlain
    kind, tok = tokens[i]
    if kind in ("str", "num"):
        return tok, i + 1
    if kind == "punct" and tok == "[":
        items: list[Any] = []
        i += 1
        while True:
            while i < len(tokens) and tokens[i][0] == "sep" and tokens[i][1] == "\n":
                i += 1
            if i >= len(tokens):
                raise _NotPlain
            if tokens[i] == ("punct", "]"):
                return items, i + 1
            v, i = _cfg_value(tokens, i)
            items.append(v)
            while i < len(tokens) and tokens[i][0] == "sep" and tokens[i][1] == "\n":
                i += 1
            if i < len(tokens) and tokens[i] == ("punct", ","):
                i += 1
            elif i < len(tokens) and tokens[i] == ("punct", "]"):
                continue
            else:
                raise _NotPlain
    raise _NotPlain


# -- xl info ---------------------------------------------------------------------


def parse_xl_info(text: str) -> HostInfo:
    """`xl info` / `xm info`: `key<padding>: value` lines; unknown lines are ignored."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or " " in key:
            continue
        raw.setdefault(key, value[1:] if value.startswith(" ") else value)

    def num(k: str) -> int:
        v = raw.get(k, "").strip()
        return int(v) if re.fullmatch(r"\d+", v) else 0

    version = raw.get("xen_version", "").strip()
    if not version and raw.get("xen_major"):
        version = f"{raw.get('xen_major', '').strip()}.{raw.get('xen_minor', '').strip()}{raw.get('xen_extra', '').strip()}"
    return HostInfo(
        total_memory_mib=num("total_memory"),
        free_memory_mib=num("free_memory"),
        nr_cpus=num("nr_cpus"),
        xen_version=version,
        host=raw.get("host", "").strip(),
        raw=raw,
    )


# -- joining ---------------------------------------------------------------------


def merge_listing(long_entries: Sequence[LongEntry], rows: Sequence[ListRow]) -> list[Domain]:
    """Join `xl list -l` with `xl list` on domid, ascending domid.

    State, current memory, online vCPUs and CPU time come from the plain
    list.  A row absent from `-l` (no stored libxl config) appears with
    has_config=False; an entry absent from the plain list (it vanished in
    between) appears with state=None.
    """
    by_id: dict[int, LongEntry] = {e.domid: e for e in long_entries if e.domid is not None}
    out: dict[int, Domain] = {}
    for r in rows:
        e = by_id.get(r.domid)
        name = r.name
        nameless = name == NAMELESS  # being torn down: whatever name its stored config still gives
        if e is not None and e.name and nameless:
            name = e.name
        out[r.domid] = Domain(
            domid=r.domid,
            name=name,
            uuid=(e.uuid if e else None) or r.uuid,
            memory_mib=r.mem_mib,
            maxmem_mib=(e.max_memkb // 1024) if e and e.max_memkb else r.mem_mib,
            vcpus=r.vcpus,
            cpu_time=r.cpu_time,
            state=r.state,
            has_config=e is not None,
            domain_type=e.domain_type if e else None,
            nameless=nameless,
        )
    for domid, e in by_id.items():
        if domid not in out:
            out[domid] = _domain_from_entry(e, domid)
    return [out[k] for k in sorted(out)]


def _domain_from_entry(e: LongEntry, domid: int) -> Domain:
    return Domain(
        domid=domid,
        name=e.name or "(null)",
        uuid=e.uuid,
        memory_mib=e.target_memkb // 1024,
        maxmem_mib=e.max_memkb // 1024,
        vcpus=e.vcpus,
        cpu_time=e.cpu_time,
        state=e.state,
        has_config=True,
        domain_type=e.domain_type,
    )


def domains_from_long(entries: Sequence[LongEntry]) -> list[Domain]:
    """Domains from a long listing that carries state itself (xm), ascending domid.

    Entries without a domid (xm managed domains not running) are left out.
    """
    out = {e.domid: _domain_from_entry(e, e.domid) for e in entries if e.domid is not None}
    return [out[k] for k in sorted(out)]


__all__ = [
    "ListRow",
    "LongEntry",
    "domains_from_long",
    "merge_listing",
    "names_break_lines",
    "parse_dryrun_name",
    "parse_sxp",
    "parse_xl_info",
    "parse_xl_list",
    "parse_xl_list_long",
    "parse_xl_list_named",
    "parse_xm_list",
    "parse_xm_sxp",
    "read_config_name",
]
