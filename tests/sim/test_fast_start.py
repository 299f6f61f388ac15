"""The simulated xl starts nearly as cheaply as the real one, and its shortcuts change nothing it prints.

The shims run `python -SE`, the common subcommands import only what they use
(no json, re, dataclasses, typing, pathlib, …), and the hand-made
replacements for json, copy.deepcopy and the config scanner's regular
expressions give exactly what the originals give.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from xdcore import model
from xdcore.sim import domconfig, fastjson, host, images, testing, xlcfg, yajl
from xdcore.sim.testing import make_host

HEAVY = {"json", "re", "dataclasses", "typing", "pathlib", "enum", "uuid", "socket", "urllib.parse", "inspect",
         "copy", "contextlib", "collections", "functools", "tempfile", "signal", "asyncio", "psutil"}

json_atoms = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_atoms, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def _modules_after(state, *argv: str) -> set[str]:
    """The modules a shim-like `python -SE` process has loaded after running `xl ARGV`."""
    code = ("import sys; base = set(sys.modules); sys.path.insert(0, %r)\n"
            "from xdcore.sim.tool import main\n"
            "rc = main(['xl', '--state', %r, *sys.argv[1:]])\n"
            "print(' '.join(sorted(set(sys.modules) - base)))\n"
            "sys.exit(rc)\n") % (str(testing.PACKAGE_ROOT), str(state))
    done = subprocess.run([sys.executable, "-SE", "-c", code, *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()[-1000:]) - {"xdcore"}


def test_common_subcommands_import_none_of_the_heavy_modules(sim_state, tmp_path):
    layout = make_host(sim_state, [("web01", 256, 1), ("db", 256, 1), ("mail", 256, 1), ("wiki", 256, 1)])
    image = tmp_path / "db.img"
    for argv in (["list"], ["list", "-l"], ["list", "-v", "web01"], ["info"], ["domid", "web01"],
                 ["sysrq", "web01", "s"], ["shutdown", "-w", "web01"], ["save", "db", str(image)],
                 ["restore", str(image)], ["migrate", "mail", "dr-site"], ["destroy", "wiki"]):
        loaded = _modules_after(sim_state, *argv)
        assert not loaded & HEAVY, (argv, sorted(loaded & HEAVY))
    # a create parses a config: still no dataclasses, typing, pathlib, uuid, json or re
    loaded = _modules_after(sim_state, "create", str(layout.configs["mail"]))
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_the_shim_caches_bytecode_even_when_the_environment_forbids_writing_it(tmp_path, monkeypatch):
    # a clean checkout: no __pycache__ yet, PYTHONDONTWRITEBYTECODE=1 as in CI
    root = tmp_path / "checkout"
    shutil.copytree(testing.PACKAGE_ROOT / "xdcore" / "sim", root / "xdcore" / "sim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(testing.PACKAGE_ROOT / "xdcore" / "__init__.py", root / "xdcore" / "__init__.py")
    monkeypatch.setattr(testing, "PACKAGE_ROOT", root)
    state = host.init_state(tmp_path / "host", fast=True)
    [xl, _xm, _ssh] = testing.write_shims(state, tmp_path / "bin")
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": "/nonexistent"}
    done = subprocess.run([str(xl), "list"], capture_output=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"Name ")
    cached = {p.name.split(".")[0] for p in (root / "xdcore" / "sim" / "__pycache__").iterdir()}
    assert {"tool", "host", "xlcmd", "runtime"} <= cached


def test_images_carry_the_same_save_magic_as_the_model():
    assert images.XL_SAVE_MAGIC == model.XL_SAVE_MAGIC
    assert images.XM_SAVE_MAGIC == model.XM_SAVE_MAGIC


@given(json_values)
def test_fastjson_reads_and_writes_exactly_what_json_does(value):
    text = json.dumps(value)
    assert fastjson.loads(text) == json.loads(text)
    assert fastjson.loads(" \n" + text + "\n\t") == json.loads(text)
    assert fastjson.dumps_compact(value) == json.dumps(value, separators=(",", ":"))
    assert domconfig.copy_json(value) == value


@given(st.text())
def test_fastjson_quotes_strings_as_json_does_without_ascii_escapes(text):
    assert fastjson.quote(text) == json.dumps(text, ensure_ascii=False)


def test_fastjson_refuses_what_json_refuses():
    for bad in ("", "  ", "{", '{"a": 1} x', "[1,]", "\ufeff{}", "nul"):
        try:
            json.loads(bad)
        except ValueError:
            pass
        else:  # pragma: no cover
            raise AssertionError(f"json accepts {bad!r}")
        try:
            fastjson.loads(bad)
        except ValueError:
            continue
        raise AssertionError(f"fastjson accepts {bad!r}")


def _yajl_reference(value, indent: int = 0) -> str:
    """The straightforward recursive version yajl.dumps replaced."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{\n\n" + pad + "}"
        parts = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_yajl_reference(v, indent + 4)}" for k, v in value.items()]
        return "{\n" + ",\n".join(parts) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[\n\n" + pad + "]"
        return "[\n" + ",\n".join(f"{inner}{_yajl_reference(v, indent + 4)}" for v in value) + "\n" + pad + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    return json.dumps(str(value), ensure_ascii=False)


@given(json_values)
def test_yajl_prints_what_the_recursive_version_printed(value):
    assert yajl.dumps(value) == _yajl_reference(value)
    assert yajl.dumps(value, 8) == _yajl_reference(value, 8)


scanner_text = st.text(alphabet="az09fx._\"'\\ \t\n#+-=[],;()AZé", max_size=30)


@given(scanner_text, st.integers(min_value=0, max_value=30))
def test_the_config_scanner_matches_like_the_flex_patterns(text, pos):
    def regex(pattern: str) -> int:
        m = re.compile(pattern).match(text, pos)
        return m.end() if m else -1

    pos = min(pos, len(text))
    assert xlcfg._match_ident(text, pos) == regex(r"[a-z][._0-9a-z]*")
    assert xlcfg._match_number(text, pos) == regex(r"[0-9][0-9a-fx]*")
    assert xlcfg._match_lexerr_run(text, pos) == regex(r"[^ \t\n]*\n?")
    if text[pos:pos + 1] == "#":
        assert xlcfg._match_comment(text, pos) == regex(r"#[^\n]*")
    if text[pos:pos + 1] == '"':
        assert xlcfg._match_quoted(text, pos) == regex(r'"(?:[^\\"\n]|\\[^\n])*"')
    if text[pos:pos + 1] == "'":
        assert xlcfg._match_quoted(text, pos) == regex(r"'(?:[^\\'\n]|\\[^\n])*'")


def test_config_escapes_decode_as_before():
    ok = xlcfg.parse('a = "x\\x41\\101\\7z\\08\\n"\n', "t.cfg")
    assert ok.get_string("a") == "xA" + chr(101) + chr(7) + "z" + chr(8) + "\n"
    try:
        xlcfg.parse('b = "\\x4"\n', "t.cfg")
    except xlcfg.ConfigSyntaxError as exc:
        assert "invalid digit after backslash hexnumerical character escape" in "".join(exc.lines)
    else:  # pragma: no cover
        raise AssertionError("a one-digit \\x escape parsed")


def test_state_objects_round_trip_and_compare_by_value(sim_state):
    make_host(sim_state, [("web01", 256, 1)])
    st1, st2 = host.load(sim_state), host.load(sim_state)
    assert st1 == st2 and st1 is not st2
    assert host.decode(host.encode(st1)) == st1
    st2.by_name("web01").flags = "--p---"
    assert st1 != st2
    assert "name='web01'" in repr(st1.by_name("web01"))
    raw = json.loads(host.encode(st1))
    raw["domains"][1]["from_the_future"] = 1  # a newer state file: unknown fields are dropped
    assert host.decode(json.dumps(raw)) == st1
    assert host.Fault("save", "*", "fail") == host.Fault("save", "*", "fail", 0.0)


def test_a_transaction_that_changes_nothing_leaves_the_file_alone_and_one_that_fails_writes_nothing(sim_state):
    make_host(sim_state, [("web01", 256, 1)])
    path = host.state_path(sim_state)
    before = path.stat()
    with host.transaction(sim_state) as st:
        st.by_name("web01")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    try:
        with host.transaction(sim_state) as st:
            st.by_name("web01").flags = "--p---"
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert host.load(sim_state).by_name("web01").flags == "-b----"
    with host.transaction(sim_state) as st:  # the lock was released: this does not block
        st.by_name("web01").flags = "--p---"
    assert host.load(sim_state).by_name("web01").flags == "--p---"
