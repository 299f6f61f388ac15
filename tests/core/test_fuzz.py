"""Property-based fuzzing of everything xendomains reads from outside: config files, xl/xm output, save dirs.

What the service reads at boot comes from files an administrator edited and
from commands that may be broken, old or new.  Whatever it is, a reader
either returns its value or raises the one documented error (`ParseError`
for toolstack output; a `ConfigError` *recorded* in `Config.problems` for
the config file, which never raises) — never an IndexError, a
RecursionError or a UnicodeError that would abort a host's shutdown.
These tests complement the properties in test_config.py and test_parse.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from xdcore.config import KEYS, Config, parse_config
from xdcore.errors import ParseError, ToolstackError
from xdcore.model import DomainState, ImageKind, sniff_image
from xdcore.savedir import guest_of_file_name, image_file_name, image_guest_name, image_path, partial_path, scan
from xdcore.toolstack.parse import (
    merge_listing,
    parse_dryrun_name,
    parse_sxp,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
    parse_xm_list,
    parse_xm_sxp,
    read_config_name,
)
from xdcore.toolstack.xl import split_migrate_target, translate_migrate_for_xl, translate_shutdown_for_xl

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- byte soup into every output parser ------------------------------------------------------------------

# bytes as a command's stdout arrives (decoded with errors="replace", as process.run does)
soup = st.binary(max_size=400).map(lambda b: b.decode("utf-8", errors="replace"))
# text that looks a bit like the real thing, so the parsers get past their first check
JSONISH = list('{}[]":,0123456789-.eE \n\t') + ["true", "false", "null", '"domid"', '"config"', '"c_info"',
                                                   '"name"', '"b_info"', '"max_memkb"', '"\\u00e9"', '"\\"']
SXPISH = list("()'\"\\ \n\tabc019-.") + ["(domain", "(domid ", "(name ", "(memory ", "(state ", "-b----", "(vm"]
LISTISH = list(" \t\n-rbpscd0123456789.") + ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Domain-0", "(null)"]


def _joined(alphabet):
    return st.lists(st.sampled_from(alphabet), max_size=120).map("".join)


OUTPUT_PARSERS = {
    "parse_xl_list_long": parse_xl_list_long,
    "parse_xm_sxp": parse_xm_sxp,
    "parse_sxp": parse_sxp,
    "parse_xl_list": parse_xl_list,
    "parse_xm_list": parse_xm_list,
    "parse_dryrun_name": parse_dryrun_name,
}


def _only_parse_error(text: str) -> None:
    for name, fn in OUTPUT_PARSERS.items():
        try:
            fn(text)
        except ParseError as exc:
            assert str(exc), name  # a ParseError always says something
        except Exception as exc:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc!r} on {text!r}") from exc


@FUZZ
@given(soup | _joined(JSONISH) | _joined(SXPISH) | _joined(LISTISH))
def test_every_output_parser_raises_nothing_but_parse_error_on_arbitrary_input(text):
    _only_parse_error(text)


@FUZZ
@given(soup)
def test_xl_info_and_config_name_readers_never_raise(text):
    info = parse_xl_info(text)
    assert info.total_memory_mib >= 0 and info.free_memory_mib >= 0 and info.nr_cpus >= 0
    name = read_config_name(text)
    assert name is None or isinstance(name, str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# the real keys, with values of any JSON type in any place
config_like = st.fixed_dictionaries(
    {},
    optional={
        "c_info": st.fixed_dictionaries({}, optional={"name": json_values, "uuid": json_values, "type": json_values,
                                                       "domid": json_values}) | json_values,
        "b_info": st.fixed_dictionaries({}, optional={"max_memkb": json_values, "target_memkb": json_values,
                                                       "max_vcpus": json_values, "avail_vcpus": json_values}) | json_values,
        "on_reboot": json_values,
    },
)
entries = st.lists(
    st.fixed_dictionaries({}, optional={"domid": json_values | st.integers(-5, 70000), "config": config_like | json_values})
    | json_values,
    max_size=5,
)


@FUZZ
@given(entries | json_values, st.sampled_from([None, 0, 4]))
def test_xl_list_long_on_any_json_document_returns_entries_or_raises_parse_error(doc, indent):
    text = json.dumps(doc, indent=indent)
    try:
        got = parse_xl_list_long(text)
    except ParseError:
        return
    for e in got:
        assert e.domid is None or isinstance(e.domid, int)
        assert e.name is None or isinstance(e.name, str)
    merged = merge_listing(got, [])  # what list_domains does with an empty plain listing
    assert [d.domid for d in merged] == sorted(d.domid for d in merged)


@FUZZ
@given(st.binary(max_size=300))
def test_dryrun_name_from_any_bytes_is_a_name_or_a_parse_error(data):
    try:
        name = parse_dryrun_name(data.decode("latin-1"))
    except ParseError:
        return
    assert isinstance(name, str) and name


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20000), st.sampled_from(["(", "[", "{"]))
def test_deep_nesting_is_a_parse_error_or_a_value_never_a_recursion_error(depth, opener):
    closer = {"(": ")", "[": "]", "{": "}"}[opener]
    for text in (opener * depth, opener * depth + closer * depth):
        _only_parse_error(text)


# -- the config file: every key round-trips with generated valid values ----------------------------------

safe_path = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                                                    blacklist_characters="/\x00"), min_size=1, max_size=8),
                     min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
word = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="\x00"),
               min_size=1, max_size=10)
options = st.lists(st.sampled_from(["--wait", "-w", "--all", "-a", "--halt", "-H", "-F"]) | word, max_size=4)
bool_words = st.sampled_from([("true", True), ("false", False), ("yes", True), ("no", False), ("1", True),
                              ("0", False), ("on", True), ("off", False), ("TRUE", True), ("Off", False)])


def _int_text(n: int) -> st.SearchStrategy[str]:
    return st.sampled_from([str(n), f"+{n}", f" {n} ", f"{n:04d}"])


# key -> strategy of (text written in the file, expected Config field value)
VALID = {
    "XENDOMAINS_SYSRQ": st.lists(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=5)
    .map(lambda ks: (" ".join(ks), tuple(ks))),
    "XENDOMAINS_USLEEP": st.integers(0, 10**9).flatmap(lambda n: _int_text(n).map(lambda t: (t, n))),
    "XENDOMAINS_CREATE_USLEEP": st.integers(0, 10**9).flatmap(lambda n: _int_text(n).map(lambda t: (t, n))),
    "XENDOMAINS_MIGRATE": st.lists(st.text(max_size=8).filter(lambda w: "\x00" not in w), max_size=5)
    .map(lambda ws: (shlex.join(ws), tuple(ws))),
    "XENDOMAINS_SAVE": (safe_path.map(lambda p: (p, Path(p))) | st.just(("", None))),
    "XENDOMAINS_SHUTDOWN": options.map(lambda ws: (" ".join(ws), tuple(ws))),
    "XENDOMAINS_SHUTDOWN_ALL": options.map(lambda ws: (" ".join(ws), tuple(ws))),
    "XENDOMAINS_RESTORE": bool_words,
    "XENDOMAINS_AUTO": (safe_path.map(lambda p: (p, Path(p))) | st.just(("", None))),
    "XENDOMAINS_AUTO_ONLY": bool_words,
    "XENDOMAINS_STOP_MAXWAIT": st.integers(0, 10**6).flatmap(lambda n: _int_text(n).map(lambda t: (t, n))),
    "XENDOMAINS_START_MAXWAIT": st.integers(0, 10**6).flatmap(lambda n: _int_text(n).map(lambda t: (t, n))),
    "XENDOMAINS_LOCKFILE": (safe_path.map(lambda p: (p, Path(p))) | st.just(("", None))),
    "XENDOMAINS_TOOLSTACK": st.sampled_from(["auto", "xl", "xm", "XL", " Xm "]).map(lambda t: (t, t.strip().lower())),
    "XENDOMAINS_PARALLEL": (st.integers(1, 512).flatmap(lambda n: _int_text(n).map(lambda t: (t, n)))
                            | st.sampled_from(["auto", "AUTO"]).map(lambda t: (t, 0))),
    "XENDOMAINS_PARALLEL_MIGRATE": st.integers(1, 64).map(lambda n: (str(n), n)) | st.sampled_from([("", None), ("auto", None)]),
    "XENDOMAINS_PARALLEL_SAVE": st.integers(1, 64).map(lambda n: (str(n), n)) | st.sampled_from([("", None), ("auto", None)]),
    "XENDOMAINS_SCHEDULE": st.sampled_from(["auto", "listing", " Listing "]).map(lambda t: (t, t.strip().lower())),
    "XENDOMAINS_PROGRESS": safe_path.map(lambda p: (p, Path(p))),
    "XENDOMAINS_STOP_DEADLINE": (st.floats(0, 1e7, allow_nan=False).map(lambda f: (repr(f), f))
                                 | st.integers(0, 10**6).map(lambda n: (str(n), float(n))) | st.just(("", None))),
    "XENDOMAINS_DESTROY_ON_DEADLINE": bool_words,
    "XENDOMAINS_POLICY_DIR": (safe_path.map(lambda p: (p, Path(p))) | st.just(("", None))),
    "XENDOMAINS_START_MAXWAIT": st.integers(0, 10**6).flatmap(lambda n: _int_text(n).map(lambda t: (t, n))),
    "XENDOMAINS_MIGRATE_TARGETS": st.lists(st.from_regex(r"[a-z][a-z0-9.-]{0,11}", fullmatch=True), max_size=4, unique=True)
    .map(lambda hs: (" ".join(hs), tuple(hs))),
    "XENDOMAINS_TARGET_RESERVE_MIB": st.integers(0, 10**6).flatmap(lambda n: _int_text(n).map(lambda t: (t, n))),
}


def test_the_round_trip_strategies_cover_every_config_key():
    assert set(VALID) == set(KEYS)


def _double_quote(s: str) -> str:
    return '"' + "".join("\\" + ch if ch in '"\\$`' else ch for ch in s) + '"'


QUOTINGS = {
    "single": shlex.quote,
    "double": _double_quote,
    "export": lambda s: shlex.quote(s),  # with `export KEY=…` below
}


@FUZZ
@given(st.data(), st.lists(st.sampled_from(sorted(VALID)), min_size=1, max_size=len(VALID), unique=True),
       st.sampled_from(sorted(QUOTINGS)))
def test_every_key_round_trips_with_generated_valid_values(data, keys, quoting):
    lines, expected = [], {}
    for key in keys:
        text, value = data.draw(VALID[key], label=key)
        prefix = "export " if quoting == "export" else ""
        lines.append(f"{prefix}{key}={QUOTINGS[quoting](text)}  # {key.lower()}")
        expected[KEYS[key][0]] = value
    cfg = parse_config("\n".join(lines) + "\n", "/etc/default/xendomains")
    assert cfg.problems == (), cfg.problems
    assert not [w for w in cfg.warnings if "unknown key" in w or "ignored line" in w], cfg.warnings
    for field, value in expected.items():
        assert getattr(cfg, field) == value, (field, getattr(cfg, field), value)
    untouched = {f for f, _ in KEYS.values()} - set(expected)
    for field in untouched:
        assert getattr(cfg, field) == getattr(Config(), field), field


bad_values = {
    "XENDOMAINS_USLEEP": st.sampled_from(["soon", "-1", "1.5", "0x10", "1e3"]),
    "XENDOMAINS_STOP_MAXWAIT": st.sampled_from(["soon", "-5", "5s", "∞"]),
    "XENDOMAINS_START_MAXWAIT": st.sampled_from(["later", "-1", "300s"]),
    "XENDOMAINS_RESTORE": st.sampled_from(["maybe", "2", "tru", "yess"]),
    "XENDOMAINS_PARALLEL": st.sampled_from(["0", "-1", "many", "2.0"]),
    "XENDOMAINS_SAVE": st.sampled_from(["relative/dir", "~/save", "save"]),
    "XENDOMAINS_TOOLSTACK": st.sampled_from(["xend", "libvirt", "x l"]),
    "XENDOMAINS_SYSRQ": st.sampled_from(["se", "s ee", "sync"]),
    "XENDOMAINS_MIGRATE": st.sampled_from(["host 'unbalanced", 'a "b']),
    "XENDOMAINS_STOP_DEADLINE": st.sampled_from(["-1", "inf", "nan", "later"]),
}


@FUZZ
@given(st.sampled_from(sorted(bad_values)).flatmap(lambda k: bad_values[k].map(lambda v: (k, v))),
       st.integers(0, 5))
def test_a_bad_value_is_recorded_with_file_line_and_key_and_keeps_the_default(kv, blank_lines):
    key, value = kv
    cfg = parse_config("\n" * blank_lines + f"{key}={shlex.quote(value)}\n", "/etc/sysconfig/xendomains")
    assert len(cfg.problems) == 1
    text = str(cfg.problems[0])
    assert text.startswith(f"/etc/sysconfig/xendomains:{blank_lines + 1}:") and key in text
    field = KEYS[key][0]
    assert getattr(cfg, field) == getattr(Config(), field)


@FUZZ
@given(st.binary(max_size=400))
def test_the_config_parser_takes_any_bytes_a_file_may_hold(data):
    cfg = parse_config(data.decode("utf-8", errors="replace"), "f")
    assert isinstance(cfg, Config)
    assert all(str(p).startswith("f:") for p in cfg.problems)


# -- the words handed to xl: no shell, no surprises ------------------------------------------------------


@FUZZ
@given(st.lists(st.text(max_size=8), min_size=1, max_size=6))
def test_migrate_words_reach_xl_unchanged_except_the_documented_translations(words):
    translated, notes = translate_migrate_for_xl(words)
    assert all(w in words for w in translated)
    dropped = [w for w in words if w not in translated]
    assert set(dropped) <= {"--live", "-l"} and (bool(dropped) == bool(notes))
    try:
        opts, host = split_migrate_target(translated, frozenset({"-s", "-C"}))
    except ToolstackError:  # only when no word can be the host
        assert all(w.startswith("-") and w != "-" for w in translated)
        return
    assert sorted([*opts, host]) == sorted(translated)  # every word goes to xl, none is re-split or joined


@FUZZ
@given(st.lists(st.text(max_size=6), max_size=6))
def test_shutdown_translation_only_ever_drops_halt_and_reboot_letters(words):
    out, notes = translate_shutdown_for_xl(words)
    for w in out:
        if w.startswith("-") and not w.startswith("--"):
            assert "H" not in w and "R" not in w
    assert "--halt" not in out and "--reboot" not in out
    assert len(out) <= len(words) and (notes or out == list(words))


# -- the save directory: any name stays inside; any file is read safely ---------------------------------


names = st.text(max_size=40).filter(lambda s: "\x00" not in s)


@FUZZ
@given(names)
def test_any_guest_name_maps_to_a_file_inside_save_and_back(name):
    base = Path("/var/lib/xen/save")
    p = image_path(base, name)
    assert p.parent == base
    assert not p.name.startswith(".") and "/" not in p.name and p.name not in ("", ".", "..")
    assert partial_path(base, name).parent == base
    assert len(partial_path(base, name).name.encode()) <= 255  # NAME_MAX, with the partial prefix
    if "~" not in p.name or guest_of_file_name(p.name) == name:  # a too-long name is shortened: mapped back by its header
        assert guest_of_file_name(p.name) == name or not name
    assert image_file_name(name) != image_file_name(name + "x")


@FUZZ
@given(st.lists(st.text(max_size=12), min_size=2, max_size=6, unique=True))
def test_different_guest_names_never_share_an_image_file(names_):
    files = [image_file_name(n) for n in names_ if n]
    assert len(set(files)) == len(files)


MAGICS = [b"Xen saved domain, xl format\n \0 \r", b"LinuxGuestRecord", b""]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(MAGICS), st.binary(max_size=120)), max_size=5))
def test_scanning_a_save_dir_full_of_junk_never_raises(tmp_path_factory, files):
    d = tmp_path_factory.mktemp("save")
    for i, (magic, body) in enumerate(files):
        (d / f"guest{i}").write_bytes(magic + body)
    images = scan(d)
    assert len(images) == len(files)
    for im in images:
        assert isinstance(im.guest, str)
        kind = sniff_image(im.path)
        assert kind == im.kind
        if kind is not ImageKind.NONE:
            got = image_guest_name(im.path, kind)
            assert got is None or isinstance(got, str)


# -- the state word of xl list ----------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=8))
def test_domain_state_from_any_word_is_a_state_or_value_error(word_):
    try:
        s = DomainState.from_flags(word_)
    except ValueError:
        return
    assert len(s.flags) == 6


# -- config bytes and sizes: never silently replaced, never unbounded ---------------------------------------


def _surrogates(text: str) -> bool:
    return any(0xDC80 <= ord(c) <= 0xDCFF for c in text)


@FUZZ
@given(st.binary(max_size=400))
def test_bytes_that_are_not_utf8_never_reach_a_setting_and_every_such_line_is_named(data):
    from xdcore.config import decode_config

    text = decode_config(data)
    cfg = parse_config(text, "f")
    for field, _ in KEYS.values():
        value = getattr(cfg, field)
        assert not _surrogates(" ".join(value) if isinstance(value, tuple) else str(value)), (field, value)
    said = [*map(str, cfg.problems), *cfg.warnings]
    assert not any(_surrogates(m) for m in said)  # shown as \xNN: printable in every message
    bad_lines = {n for n, line in enumerate(text.split("\n"), 1) if _surrogates(line)}
    named = {int(m.split(":")[1]) for m in said if m.startswith("f:") and m.split(":")[1].isdigit()}
    assert bad_lines <= named, (bad_lines, said)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=80), st.sampled_from(["$A$A", "${A}${A}", '"$A$A"', "${A:-x}$A"]))
def test_doubling_a_value_any_number_of_times_is_bounded_and_a_problem_only_past_the_limit(n, twice):
    from xdcore.config import MAX_VALUE_CHARS

    cfg = parse_config("A=xy\n" + f"A={twice}\n" * n + 'XENDOMAINS_MIGRATE="$A host"\n', "f")
    size = 2 * 2 ** n + len(" host")
    if size <= MAX_VALUE_CHARS:
        assert cfg.problems == () and len(" ".join(cfg.migrate)) == size
    else:
        assert [(p.line, p.key) for p in cfg.problems] == [(n + 2, "XENDOMAINS_MIGRATE")]
        assert cfg.migrate == ()


# -- names that break the plain listing: read knowing the names from `xl list -l` -------------------------------


def _xl_row(name: str, domid: int, mem: int, flags: str) -> str:
    """A row as xl_list.c prints it: printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f")."""
    return f"{name:<40} {domid:5d} {mem:5d} {1:5d}     {flags}  {domid * 1.5:8.1f}"


_FAKE_ROWS = [_xl_row("web01", 1, 512, "-b----"), _xl_row("Domain-0", 0, 2048, "r-----"), "  0  512  1  r-----  1.0", ""]
odd_names = st.lists(st.sampled_from(["a", "web01", " ", "\n", "\t", "\r", "\x0b", "\u2028", "\x85", "é", "(null)",
                                      *_FAKE_ROWS]), min_size=1, max_size=6).map("".join)


@FUZZ
@given(st.lists(odd_names, min_size=1, max_size=6, unique=True), st.integers(min_value=0, max_value=2), st.data())
def test_the_named_reader_finds_every_row_whatever_the_names_hold(names, vanished, data):
    from xdcore.toolstack.parse import names_break_lines, parse_xl_list_named

    names = [n for n in names if n.strip() and n.strip() == n.rstrip(" ") and n[-1:] != " "] or ["plain"]
    flags = data.draw(st.lists(st.sampled_from(["-b----", "r-----", "--p---", "---s--", "-b---d"]),
                               min_size=len(names), max_size=len(names)))
    domains = [(0, "Domain-0", "r-----")] + [(i + 1, n, f) for i, (n, f) in enumerate(zip(names, flags))]
    text = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n" + "".join(
        _xl_row(n, d, 256 + d, f) + "\n" for d, n, f in domains)
    known = {d: n for d, n, _ in domains}
    for i in range(vanished):  # listed by -l, gone by the time of the plain listing
        known[50 + i] = f"gone{i}\n" + _xl_row("web01", 1, 512, "r-----")
    known.pop(0)  # Domain-0 without a stored config: read as a plain row

    rows = parse_xl_list_named(text, known)

    assert [(r.domid, r.name, r.state.flags, r.mem_mib) for r in rows] == [(d, n, f, 256 + d) for d, n, f in domains]
    if not names_break_lines(names):
        assert rows == parse_xl_list(text)  # one reading whichever reader is used


def test_a_name_that_fakes_another_guests_row_cannot_take_that_guests_place():
    from xdcore.toolstack.parse import parse_xl_list_named

    evil = "x\n" + _xl_row("web01", 1, 512, "r-----")
    text = "\n".join([_xl_row("Domain-0", 0, 2048, "r-----"), _xl_row(evil, 2, 256, "-b----"),
                      _xl_row("web01", 1, 512, "-b----")]) + "\n"
    with pytest.raises(ParseError):
        parse_xl_list(text)  # line by line it is not even readable
    rows = parse_xl_list_named(text, {0: "Domain-0", 1: "web01", 2: evil})
    assert [(r.domid, r.name, r.state.flags) for r in rows] == [(0, "Domain-0", "r-----"), (2, evil, "-b----"),
                                                                (1, "web01", "-b----")]


def test_text_that_is_no_row_of_any_known_name_is_a_parse_error_naming_the_line():
    from xdcore.toolstack.parse import parse_xl_list_named

    with pytest.raises(ParseError, match="line 2"):
        parse_xl_list_named("Name ID\nthis is not a row\n", {3: "this is"})


# -- the control socket: any request line gets a reply, never an exception -------------------------------------

REQUESTISH = list('{}[]":,0123456789-. \\') + ['"op"', '"status"', '"set_parallel"', '"value"', '"skip_stage"', '"guest"',
                                              '"stage"', '"enabled"', "true", "null", "1e999", "9" * 50, "\udcff"]


@FUZZ
@given(st.binary(max_size=300) | _joined(REQUESTISH).map(lambda s: s.encode("utf-8", "surrogateescape")))
def test_every_control_request_line_gets_a_reply_and_changes_nothing_it_should_not(line):
    from xdcore.config import MAX_PARALLEL
    from xdcore.control_socket import ControlServer
    from xdcore.pipeline.control import RunControl

    control = RunControl(1)
    reply = ControlServer(Path("/nonexistent/control.sock"), control).handle_line(line)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    assert reply["ok"] or isinstance(reply.get("error"), str)
    assert 1 <= control.parallel <= MAX_PARALLEL


# -- measured throughputs read back: whatever the file holds, every estimate is a finite positive number ---------

_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                            | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3), max_leaves=5)


@FUZZ
@given(st.dictionaries(st.sampled_from(["save_mbps", "migrate_mbps", "restore_mbps", "shutdown_s", "create_s",
                                        "sysrq_s", "samples", "other"]), _json_values, max_size=8),
       st.one_of(_json_values, st.dictionaries(st.sampled_from(["host2", "save", "migrate", "restore"]), _json_values)),
       st.one_of(_json_values, st.dictionaries(st.sampled_from(["host2", "save", "migrate", "restore"]), _json_values)),
       st.dictionaries(st.sampled_from(["overhead", "measured"]),
                       st.one_of(_json_values, st.dictionaries(st.sampled_from(
                           ["stop", "start", "save", "restore", "link:host2", "overhead:stop", "fixed:save"]), _json_values))))
@example({"save_mbps": 5e-324, "restore_mbps": 1e-300}, {"host2": 5e-324}, None, {})  # > 0, yet infinite when divided by
@example({"save_mbps": 480.0, "samples": 3}, {}, None, {"measured": {"save": True, "restore": 2.5}, "overhead": {"stop": -1}})
def test_any_throughput_file_gives_finite_positive_estimates(tmp_path_factory, data, links, fixed, more):
    import math

    from xdcore.model import Domain
    from xdcore.plan import Throughputs, estimator

    path = tmp_path_factory.mktemp("tp") / "throughput.json"
    path.write_text(json.dumps({**data, "links": links, "fixed": fixed, **more}))
    t = Throughputs.load(path)
    d = Domain(domid=1, name="web01", memory_mib=1024)
    cfg = Config(migrate=("host2",))
    est = estimator(cfg, t)  # the measured figures over the assumed ones, as the plans use them
    for stage in ("migrate", "save", "restore", "shutdown", "sysrq", "create"):
        for e in (t.estimate(stage, d, cfg), est(stage, d)):
            assert math.isfinite(e) and (e > 0 if stage in ("migrate", "save", "restore") else e >= 0), \
                (stage, e, data, links, fixed, more)
    for verb in ("stop", "start"):
        assert math.isfinite(est.overhead(verb)) and est.overhead(verb) >= 0
    assert all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in t.measured.values())
    assert all(p.startswith(f"{path}:") for p in t.problems)  # every complaint names the file and a line


@FUZZ
@given(st.dictionaries(st.sampled_from(["verb", "run", "started_at", "finished_at", "exit_code", "summary", "pid",
                                        "parallel", "guests", "host_stages", "messages", "interventions"]),
                       _json_values, max_size=12),
       st.lists(st.dictionaries(st.sampled_from(["guest", "outcome", "detail", "elapsed", "domid", "stages", "notes"]),
                                _json_values, max_size=7), max_size=3),
       st.tuples(st.floats(), st.none() | st.floats()))
@example({"exit_code": float("inf")}, [], (0.0, None))  # int(inf) raises OverflowError, not ValueError
def test_any_report_file_is_read_or_ignored_and_printing_it_never_raises(tmp_path_factory, data, guests, when):
    from xdcore.report import format_report, load_report, print_reconciliation, reconcile

    data = {"verb": "stop", **data, "started_at": when[0], "finished_at": when[1]}
    if guests:
        data["guests"] = guests
    path = tmp_path_factory.mktemp("rep") / "last-stop.json"
    path.write_text(json.dumps(data))
    rep = load_report(path)
    if rep is None:
        return
    lines: list[str] = []
    format_report(rep, lines.append)
    print_reconciliation(reconcile(rep, ["web01"], [], [], ["web01"]), lines.append)
    assert lines
