"""The config file is parsed like the shell would read it — and never executed."""

from __future__ import annotations

import shlex
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdcore.config import MAX_CONFIG_BYTES, Config, find_config, load_config, parse_config
from xdcore.errors import ConfigError, ConfigMissing, ConfigUnreadable


def test_empty_file_gives_every_default():
    c = parse_config("", "/etc/default/xendomains")
    assert c == Config(path=Path("/etc/default/xendomains"))
    assert c.save_dir == Path("/var/lib/xen/save")
    assert c.shutdown == ("--halt", "--wait")
    assert c.shutdown_all == ("--all", "--halt", "--wait")
    assert c.stop_maxwait == 300 and c.parallel == 1 and c.restore and not c.auto_only


def test_debian_shipped_file_parses_without_warnings():
    text = """\
## Path: System/xen
## Description: xen domain start/stop on boot
XENDOMAINS_MIGRATE=""
XENDOMAINS_SAVE=/var/lib/xen/save
XENDOMAINS_RESTORE=true
XENDOMAINS_AUTO=/etc/xen/auto
XENDOMAINS_STOP_MAXWAIT=300
"""
    c = parse_config(text, "f")
    assert c.warnings == () and c.problems == ()
    assert c.migrate == () and c.save_dir == Path("/var/lib/xen/save") and c.stop_maxwait == 300


def test_every_key_is_typed():
    text = """
XENDOMAINS_SYSRQ="s e i u o"
XENDOMAINS_USLEEP=200
XENDOMAINS_CREATE_USLEEP=0
XENDOMAINS_MIGRATE="--live -s 'ssh -p 2222' backup-host"
XENDOMAINS_SAVE=""
XENDOMAINS_SHUTDOWN="--wait"
XENDOMAINS_SHUTDOWN_ALL="--all --wait"
XENDOMAINS_RESTORE=OFF
XENDOMAINS_AUTO=/srv/auto
XENDOMAINS_AUTO_ONLY=Yes
XENDOMAINS_STOP_MAXWAIT=0
XENDOMAINS_LOCKFILE=/run/lock/xd
XENDOMAINS_TOOLSTACK=XM
XENDOMAINS_PARALLEL=4
XENDOMAINS_PARALLEL_MIGRATE=2
XENDOMAINS_PARALLEL_SAVE=3
XENDOMAINS_PROGRESS=/tmp/p.jsonl
XENDOMAINS_STOP_DEADLINE=90.5
XENDOMAINS_DESTROY_ON_DEADLINE=1
"""
    c = parse_config(text, "f")
    assert c.problems == () and c.warnings == ()
    assert c.sysrq == ("s", "e", "i", "u", "o")
    assert (c.usleep_us, c.create_usleep_us) == (200, 0)
    assert c.migrate == ("--live", "-s", "ssh -p 2222", "backup-host")
    assert c.save_dir is None
    assert c.shutdown == ("--wait",) and c.shutdown_all == ("--all", "--wait")
    assert c.restore is False and c.auto_only is True
    assert c.auto_dir == Path("/srv/auto") and c.stop_maxwait == 0
    assert c.lockfile == Path("/run/lock/xd") and c.toolstack == "xm"
    assert (c.parallel, c.parallel_migrate, c.parallel_save) == (4, 2, 3)
    assert c.progress == Path("/tmp/p.jsonl") and c.stop_deadline == 90.5 and c.destroy_on_deadline


@pytest.mark.parametrize("word,value", [("true", True), ("FALSE", False), ("yes", True), ("No", False),
                                        ("1", True), ("0", False), ("on", True), ("Off", False)])
def test_booleans_accept_the_usual_spellings(word, value):
    assert parse_config(f"XENDOMAINS_RESTORE={word}\n").restore is value


def test_bad_value_is_a_problem_naming_file_line_and_key_and_keeps_the_default():
    c = parse_config("# x\n\nXENDOMAINS_STOP_MAXWAIT=soon\n", "/etc/default/xendomains")
    assert c.stop_maxwait == 300
    (p,) = c.problems
    assert isinstance(p, ConfigError)
    assert str(p) == "/etc/default/xendomains:3: XENDOMAINS_STOP_MAXWAIT: expected an integer number of seconds, got 'soon'"
    assert (p.line, p.key, p.got) == (3, "XENDOMAINS_STOP_MAXWAIT", "soon")


@pytest.mark.parametrize(
    "line",
    [
        "XENDOMAINS_RESTORE=maybe",
        "XENDOMAINS_USLEEP=-5",
        "XENDOMAINS_PARALLEL=0",
        "XENDOMAINS_PARALLEL=1025",
        "XENDOMAINS_PARALLEL_SAVE=99999",
        "XENDOMAINS_USLEEP=" + "1" * 5000,  # more digits than int() converts: a problem, not a crash
        "XENDOMAINS_STOP_MAXWAIT=" + "9" * 30,
        "XENDOMAINS_TOOLSTACK=libvirt",
        "XENDOMAINS_SAVE=relative/dir",
        "XENDOMAINS_SYSRQ='s ei'",
        "XENDOMAINS_MIGRATE=\"host 'unbalanced\"",
        "XENDOMAINS_STOP_DEADLINE=later",
    ],
)
def test_each_kind_of_bad_value_is_reported_not_raised(line):
    c = parse_config(line + "\n", "f")
    assert len(c.problems) == 1
    key = line.split("=")[0]
    assert c.problems[0].key == key
    assert getattr(c, _field(key)) == getattr(Config(), _field(key))


def _field(key: str) -> str:
    from xdcore.config import KEYS

    return KEYS[key][0]


def test_unknown_xendomains_key_warns_with_file_and_line_but_other_variables_are_fine():
    c = parse_config("FOO=1\nXENDOMAINS_SAVEDIR=/x\n", "/etc/default/xendomains")
    assert c.warnings == ("/etc/default/xendomains:2: unknown key XENDOMAINS_SAVEDIR",)


def test_quoting_like_the_shell():
    text = r"""
export XENDOMAINS_AUTO="/srv/a"'uto'   # trailing comment
XENDOMAINS_PROGRESS=/run/x#not-a-comment
XENDOMAINS_LOCKFILE="/a\"b \$c \`d\` \\e \q"
XENDOMAINS_SYSRQ='s'\ "e"
"""
    c = parse_config(text, "f")
    assert c.auto_dir == Path("/srv/auto")
    assert c.progress == Path("/run/x#not-a-comment")
    assert c.lockfile == Path('/a"b $c `d` \\e \\q')
    assert c.sysrq == ("s", "e")
    assert c.warnings == ()


def test_variables_expand_only_from_earlier_keys_of_the_same_file(monkeypatch):
    monkeypatch.setenv("FROM_ENV", "/leak")
    text = 'BASE=/srv/xen\nXENDOMAINS_SAVE=$BASE/save\nXENDOMAINS_AUTO="${BASE}/auto"\nXENDOMAINS_LOCKFILE=$FROM_ENV/lock\n'
    c = parse_config(text, "f")
    assert c.save_dir == Path("/srv/xen/save")
    assert c.auto_dir == Path("/srv/xen/auto")
    assert c.lockfile == Path("/lock")
    assert any("f:4: $FROM_ENV is not assigned" in w for w in c.warnings)


def test_single_quotes_do_not_expand():
    c = parse_config("A=x\nXENDOMAINS_LOCKFILE='/$A'\n")
    assert c.lockfile == Path("/$A")


def test_last_assignment_wins_and_semicolons_separate():
    c = parse_config("XENDOMAINS_PARALLEL=2; XENDOMAINS_PARALLEL=3\n")
    assert c.parallel == 3


def test_a_line_that_is_not_an_assignment_is_ignored_with_a_warning():
    c = parse_config("XENDOMAINS_PARALLEL=2\nsource /etc/other\nXENDOMAINS_SAVE= /tmp\n", "f")
    assert c.parallel == 2
    assert c.warnings == ("f:2: ignored line: source /etc/other", "f:3: ignored line: XENDOMAINS_SAVE= /tmp")
    assert c.save_dir == Path("/var/lib/xen/save")


def test_unterminated_quote_warns_and_keeps_what_came_before():
    c = parse_config('XENDOMAINS_PARALLEL=2\nXENDOMAINS_SAVE="/x\n', "f")
    assert c.parallel == 2 and c.save_dir == Path("/var/lib/xen/save")
    assert c.warnings and "f:2: unterminated double quote" in c.warnings[0]


def test_command_substitution_is_kept_literally_warned_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f"XENDOMAINS_LOCKFILE=$(touch {marker})\nXENDOMAINS_PROGRESS=\"`touch {marker}`\"\n"
    c = parse_config(text, "f")
    assert not marker.exists()
    assert len([w for w in c.warnings if "command substitution" in w]) == 2
    # the literal text is not an absolute path: a problem, default kept
    assert {p.key for p in c.problems} == {"XENDOMAINS_LOCKFILE", "XENDOMAINS_PROGRESS"}


def test_empty_save_and_auto_disable_them():
    c = parse_config("XENDOMAINS_SAVE=\nXENDOMAINS_AUTO=''\n")
    assert c.save_dir is None and c.auto_dir is None and c.problems == ()


def test_with_overrides_replaces_fields():
    c = parse_config("XENDOMAINS_PARALLEL=2\n").with_overrides(parallel=5, toolstack="xl")
    assert (c.parallel, c.toolstack) == (5, "xl")


# -- finding and loading ---------------------------------------------------------


def test_find_config_prefers_option_then_environment_then_search_order(tmp_path):
    a, b, c, d = (tmp_path / n for n in "abcd")
    for p in (a, b, c, d):
        p.write_text("")
    assert find_config(str(a), {"XENDOMAINS_CONFIG": str(b)}, [c, d]) == a
    assert find_config(None, {"XENDOMAINS_CONFIG": str(b)}, [c, d]) == b
    assert find_config(None, {}, [tmp_path / "missing", d]) == d
    assert find_config(None, {}, [tmp_path / "missing"]) is None


def test_a_named_config_that_does_not_exist_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigMissing, match="nope"):
        find_config(str(tmp_path / "nope"), {})
    with pytest.raises(ConfigMissing, match="XENDOMAINS_CONFIG"):
        find_config(None, {"XENDOMAINS_CONFIG": str(tmp_path / "nope")})


def test_load_config_reads_the_file_and_records_its_path(tmp_path):
    f = tmp_path / "xendomains"
    f.write_text("XENDOMAINS_STOP_MAXWAIT=soon\n")
    c = load_config(str(f), {})
    assert c.path == f
    assert str(c.problems[0]).startswith(f"{f}:1: XENDOMAINS_STOP_MAXWAIT:")


def test_load_config_without_any_file_raises_config_missing(tmp_path):
    with pytest.raises(ConfigMissing):
        load_config(None, {}, [tmp_path / "none"])


@pytest.mark.parametrize("kind", ["directory", "fifo", "eio", "too large"])
def test_a_config_that_exists_but_cannot_be_read_is_unreadable_not_missing_and_never_blocks(tmp_path, kind):
    import os

    path = tmp_path / "xendomains"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would wait forever
    elif kind == "eio":
        path = Path("/proc/self/mem")  # a regular file whose read fails (EIO), even for root
    else:
        path.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigUnreadable) as err:
        load_config(str(path), {})
    assert str(path) in str(err.value)
    with pytest.raises(ConfigUnreadable):  # found in the search order: the same
        load_config(None, {}, [tmp_path / "none", path])


def test_a_value_too_long_after_expansion_is_a_problem_naming_file_line_and_key(tmp_path):
    c = parse_config("A=0123456789abcdef\n" + "A=$A$A\n" * 12 + "XENDOMAINS_SAVE=/$A\nXENDOMAINS_PARALLEL=2\n", "f")
    assert [(p.line, p.key) for p in c.problems] == [(14, "XENDOMAINS_SAVE")]
    assert "at most 65536 characters" in str(c.problems[0])
    assert c.save_dir == Config().save_dir and c.parallel == 2


def test_not_utf8_in_a_value_is_a_problem_and_in_a_comment_a_warning_both_showing_the_bytes(tmp_path):
    path = tmp_path / "xendomains"
    path.write_bytes(b"# Fran\xe7ois wrote this\nXENDOMAINS_MIGRATE='h\xf6st'\nXENDOMAINS_PARALLEL=3\n")
    c = load_config(str(path), {})
    assert [str(p) for p in c.problems] == [f"{path}:2: XENDOMAINS_MIGRATE: expected UTF-8 text "
                                            "(bytes that are not UTF-8 are shown as \\xNN), got 'h\\xf6st'"]
    assert c.warnings == (f"{path}:1: bytes that are not UTF-8 (shown as \\xNN), outside any setting: "
                          "# Fran\\xe7ois wrote this",)
    assert c.migrate == () and c.parallel == 3


# -- properties ------------------------------------------------------------------

printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x00") | st.sampled_from("\n\t"),
    max_size=40,
)


def _double_quote(s: str) -> str:
    return '"' + "".join("\\" + ch if ch in '"\\$`' else ch for ch in s) + '"'


@given(printable)
def test_single_quoted_values_round_trip(s):
    _assert_value_round_trips(s, f"V={shlex.quote(s)}\n")


@given(printable)
def test_escaped_double_quoted_values_round_trip(s):
    _assert_value_round_trips(s, f"V={_double_quote(s)}\n")


def _assert_value_round_trips(s: str, text: str) -> None:
    from xdcore.config import _scan

    assignments, warnings = _scan(text, "f")
    assert warnings == []
    assert assignments["V"].value == s


@given(printable)
def test_lockfile_value_round_trips_through_the_public_api(s):
    c = parse_config(f"XENDOMAINS_LOCKFILE={shlex.quote('/' + s.strip())}\n")
    if "\n" not in s and s.strip():
        assert c.lockfile == Path("/" + s.strip())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(list(string.printable) + ["$(", "${", "export ", "XENDOMAINS_SAVE=", "é"]), max_size=80).map("".join))
def test_parser_never_raises_on_arbitrary_text(text):
    c = parse_config(text, "f")
    assert isinstance(c, Config)
    for p in c.problems:
        assert str(p).startswith("f:")


@settings(max_examples=100)
@given(st.text(alphabet=string.ascii_letters + " ;|&", max_size=10))
def test_shell_metacharacters_in_values_are_never_executed(tmp_path_factory, junk):
    d = tmp_path_factory.mktemp("pwn")
    marker = d / "pwned"
    for template in ('X=$(touch {m}){j}\n', 'X="`touch {m}`"{j}\n', "X=a;touch {m} {j}\n", 'X=a|touch {m}\n', 'X="$(touch {m})"\n'):
        parse_config(template.format(m=marker, j=junk), "f")
    assert not marker.exists()


@given(st.text(max_size=300))
def test_parser_never_raises_on_any_unicode_text(text):
    assert isinstance(parse_config(text, "f"), Config)
