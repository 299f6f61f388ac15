"""The xl / xm adapters against tiny fake executables put first on PATH.

Each fake logs its argv (one JSON list a line) and answers from a rule
table: the first rule whose argv prefix matches gives stdout, stderr and
exit code.  That checks the exact argv we build and how failures surface,
without any Xen.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import FIXTURES
from xdcore.errors import CommandFailed, CommandTimedOut, ToolstackError, ToolstackMissing
from xdcore.model import AutoConfig
from xdcore.toolstack.detect import choose_toolstack
from xdcore.toolstack.xl import XlToolstack, split_migrate_target, translate_shutdown_for_xl
from xdcore.toolstack.xm import XmToolstack


FIX = FIXTURES

FAKE = """#!{python} -S
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
me = os.path.basename(__file__)
argv = sys.argv[1:]
with open(os.path.join(here, "argv.log"), "a") as log:
    log.write(json.dumps([me] + argv) + "\\n")
with open(os.path.join(here, me + ".rules.json")) as fh:
    rules = json.load(fh)
for rule in rules:
    if argv[: len(rule["match"])] == rule["match"]:
        if rule.get("stdout_file"):
            with open(rule["stdout_file"]) as fh:
                sys.stdout.write(fh.read())
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("rc", 0))
"""


class FakeBin:
    """A directory of fake commands, first on PATH."""

    def __init__(self, path: Path):
        self.dir = path

    def add(self, name: str, *rules: dict) -> None:
        exe = self.dir / name
        exe.write_text(FAKE.format(python=sys.executable))
        exe.chmod(0o755)
        (self.dir / f"{name}.rules.json").write_text(json.dumps(list(rules)))

    def add_script(self, name: str, body: str) -> None:
        exe = self.dir / name
        exe.write_text("#!/bin/sh\n" + body)
        exe.chmod(0o755)

    @property
    def calls(self) -> list[list[str]]:
        log = self.dir / "argv.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeBin:
    bindir, tools = tmp_path / "bin", tmp_path / "tools"
    bindir.mkdir()
    tools.mkdir()
    # Only what the fakes need: a real xl, xm or xenstore-read on this host must not be found.
    (tools / "sleep").symlink_to(shutil.which("sleep"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{tools}")
    return FakeBin(bindir)


def xl_listing_rules() -> list[dict]:
    return [
        {"match": ["list", "-l"], "stdout_file": str(FIX / "xl_listl.txt"),
         "stderr": "libxl: error: libxl_domain.c:2335:retrieve_domain_configuration_lock_acquired: Domain 4:Fail to get domain configuration\n"},
        {"match": ["list"], "stdout_file": str(FIX / "xl_list.txt")},
    ]


# -- xl: queries -----------------------------------------------------------------------


async def test_list_domains_runs_exactly_two_xl_list_commands_and_merges_them(fake):
    fake.add("xl", *xl_listing_rules())
    domains = await XlToolstack().list_domains()
    assert sorted(fake.calls) == [["xl", "list"], ["xl", "list", "-l"]]
    assert [(d.domid, d.name, d.has_config) for d in domains][:3] == [
        (0, "Domain-0", True), (3, "debian12", True), (4, "paused-vm", False)]
    assert domains[-1].zombie


async def test_list_domains_failure_carries_argv_returncode_and_stderr(fake):
    fake.add("xl", {"match": ["list"], "rc": 1,
                    "stderr": "libxl: error: libxl.c:108:libxl_ctx_alloc: cannot connect to xenstore\ncannot init xl context\n"})
    with pytest.raises(CommandFailed) as exc:
        await XlToolstack().list_domains()
    assert exc.value.argv in (("xl", "list", "-l"), ("xl", "list"))
    assert exc.value.returncode == 1
    assert "cannot init xl context" in exc.value.stderr
    assert len(fake.calls) == 2  # both ran to the end: nothing left behind


async def test_an_unparseable_long_listing_falls_back_to_the_plain_listing_with_a_notice(fake):
    fake.add("xl", {"match": ["list", "-l"], "stdout": "[\n    {\n"}, {"match": ["list"], "stdout_file": str(FIX / "xl_list.txt")})
    ts = XlToolstack()
    notices: list[str] = []
    ts.notice_listeners.append(notices.append)
    domains = await ts.list_domains()
    assert [d.name for d in domains][:2] == ["Domain-0", "debian12"]
    assert all(d.state is not None for d in domains)
    assert len(notices) == 1 and "xl list -l output" in notices[0]


async def test_an_unparseable_plain_listing_is_a_parse_error(fake):
    fake.add("xl", {"match": ["list", "-l"], "stdout_file": str(FIX / "xl_listl.txt")}, {"match": ["list"], "stdout": "garbage\n"})
    with pytest.raises(ToolstackError, match="xl list"):
        await XlToolstack().list_domains()


async def test_missing_xl_raises_toolstack_missing(fake):
    with pytest.raises(ToolstackMissing, match="xl"):
        await XlToolstack().list_domains()


async def test_host_info_parses_xl_info(fake):
    fake.add("xl", {"match": ["info"], "stdout_file": str(FIX / "xl_info.txt")})
    info = await XlToolstack().host_info()
    assert (info.free_memory_mib, info.nr_cpus) == (6144, 4)
    assert fake.calls == [["xl", "info"]]


# -- xl: config names ------------------------------------------------------------------

PYTHONISH = 'import os\nname = os.path.basename(__file__)\nmemory = 256 * 2\n'


async def test_plain_configs_are_named_without_spawning_anything(fake, tmp_path):
    fake.add("xl")
    cfg = tmp_path / "debian12.cfg"
    cfg.write_text((FIX / "debian12.cfg").read_text())
    other = tmp_path / "b.cfg"
    other.write_text('name = "b"\n')
    result = await XlToolstack().config_names([cfg, other])
    assert result == [AutoConfig(cfg, "debian12"), AutoConfig(other, "b")]
    assert fake.calls == []


async def test_each_non_plain_config_costs_one_dry_run(fake, tmp_path):
    fake.add("xl", {"match": ["create", "--quiet", "--dryrun", "--defconfig", str(tmp_path / "bad.cfg")], "rc": 1,
                    "stderr": "bad.cfg:1: config parsing error near `+': lexical error\nFailed to parse config: Invalid argument\n"},
             {"match": ["create"], "stdout_file": str(FIX / "xl_dryrun.txt")})
    paths = []
    for n in ("p1.cfg", "p2.cfg", "bad.cfg"):
        (tmp_path / n).write_text(PYTHONISH)
        paths.append(tmp_path / n)
    plain = tmp_path / "plain.cfg"
    plain.write_text('name="plain"\n')
    missing = tmp_path / "missing.cfg"
    result = await XlToolstack().config_names([paths[0], plain, paths[1], paths[2], missing])
    assert [r.name for r in result] == ["debian12", "plain", "debian12", None, None]
    assert sorted(fake.calls) == sorted(["xl", "create", "--quiet", "--dryrun", "--defconfig", str(p)] for p in paths)
    assert "Failed to parse config" in result[3].error and "xl create failed (exit 1)" in result[3].error
    assert result[4].error.startswith(f"cannot read {missing}")


async def test_config_names_never_raise_even_without_xl(fake, tmp_path):
    cfg = tmp_path / "x.cfg"
    cfg.write_text(PYTHONISH)
    (r,) = await XlToolstack().config_names([cfg])
    assert r.name is None and "not found" in r.error


# -- xl: actions -----------------------------------------------------------------------


async def test_action_argv_are_built_exactly(fake, tmp_path):
    fake.add("xl")
    xl = XlToolstack()
    await xl.create(tmp_path / "a.cfg")
    await xl.restore(tmp_path / "a.save")
    await xl.save(3, tmp_path / "web")
    await xl.shutdown(3, ["--halt", "--wait"])
    await xl.shutdown_all(["--all", "--halt", "--wait"])
    await xl.shutdown_all(["-w"])
    await xl.sysrq(3, "s")
    await xl.destroy(3)
    await xl.migrate(3, ["--live", "-s", "ssh -p 2222", "-C", "/etc/xen/x.cfg", "backup"])
    assert fake.calls == [
        ["xl", "create", "--quiet", "--defconfig", str(tmp_path / "a.cfg")],
        ["xl", "restore", str(tmp_path / "a.save")],
        ["xl", "save", "3", str(tmp_path / "web")],
        ["xl", "shutdown", "--wait", "3"],
        ["xl", "shutdown", "--all", "--wait"],
        ["xl", "shutdown", "--all", "-w"],
        ["xl", "sysrq", "3", "s"],
        ["xl", "destroy", "3"],
        ["xl", "migrate", "-s", "ssh -p 2222", "-C", "/etc/xen/x.cfg", "3", "backup"],
    ]


async def test_failed_action_carries_argv_returncode_and_stderr(fake):
    fake.add("xl", {"match": ["destroy"], "rc": 1, "stderr": "libxl: error: x\ndestroy failed (rc=-21)\n"})
    with pytest.raises(CommandFailed) as exc:
        await XlToolstack().destroy(42)
    assert exc.value.argv == ("xl", "destroy", "42")
    assert exc.value.returncode == 1
    assert exc.value.stderr.endswith("destroy failed (rc=-21)\n")
    assert "destroy failed (rc=-21)" in str(exc.value)


async def test_watchdog_kills_the_command_and_the_child_it_spawned(fake, tmp_path):
    pidfile = tmp_path / "child.pid"
    fake.add_script("xl", f'sleep 30 &\necho $! > "{pidfile}"\nsleep 30\n')
    seen = []
    xl = XlToolstack()
    xl.observers.append(lambda phase, argv, pid_or_rc, t, err: seen.append((phase, argv)))
    with pytest.raises(CommandTimedOut) as exc:
        await xl.save(3, tmp_path / "img", timeout=0.5)
    assert exc.value.argv == ("xl", "save", "3", str(tmp_path / "img"))
    child = int(pidfile.read_text())
    assert not _alive(child)
    assert [p for p, _ in seen] == ["start", "end"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_observers_see_every_command(fake):
    fake.add("xl", *xl_listing_rules())
    xl = XlToolstack()
    seen = []
    xl.observers.append(lambda phase, argv, *_: seen.append((phase, argv)))
    await xl.list_domains()
    assert sorted(seen) == sorted([("start", ("xl", "list", "-l")), ("start", ("xl", "list")),
                                   ("end", ("xl", "list", "-l")), ("end", ("xl", "list"))])


# -- option translation ----------------------------------------------------------------


def test_xl_shutdown_translation_drops_halt_and_reboot_with_notes():
    opts, notes = translate_shutdown_for_xl(["--halt", "--wait", "-aH", "-F", "-R"])
    assert opts == ["--wait", "-a", "-F"]
    assert notes == [
        "XENDOMAINS_SHUTDOWN: dropped --halt (xl has no such option; it powers off by default)",
        "XENDOMAINS_SHUTDOWN: dropped -H (xl has no such option; it powers off by default)",
        "XENDOMAINS_SHUTDOWN: dropped -R (xl shutdown cannot reboot; use xl reboot)",
    ]


def test_xl_migrate_translation_drops_live_but_not_an_ssh_argument():
    opts, notes = XlToolstack().translate_migrate_options(["--live", "-s", "-l", "host"])
    assert opts == ["-s", "-l", "host"]
    assert notes == ["XENDOMAINS_MIGRATE: dropped --live (xl always migrates live)"]


def test_xm_keeps_halt_and_live():
    xm = XmToolstack()
    assert xm.translate_shutdown_options(["--halt", "--wait"]) == (["--halt", "--wait"], [])
    assert xm.translate_migrate_options(["--live", "host"]) == (["--live", "host"], [])


def test_migrate_target_without_host_is_an_error():
    with pytest.raises(ToolstackError, match="no target host"):
        split_migrate_target(["--live", "-s", "ssh"], frozenset({"-s"}))


def test_migrate_host_is_the_last_non_option_word():
    assert split_migrate_target(["-s", "ssh x", "host", "-e"], frozenset({"-s"})) == (["-s", "ssh x", "-e"], "host")


# -- xenstore stub domain ---------------------------------------------------------------


async def test_xenstore_domid_reads_the_stub_domain(fake):
    fake.add("xenstore-read", {"match": ["/tool/xenstored/domid"], "stdout": "1\n"})
    assert await XlToolstack().xenstore_domid() == 1


async def test_xenstore_domid_is_none_when_unset_or_tool_absent(fake):
    assert await XlToolstack().xenstore_domid() is None
    fake.add("xenstore-read", {"match": [], "rc": 1, "stderr": "xenstore-read: couldn't read path /tool/xenstored/domid\n"})
    assert await XlToolstack().xenstore_domid() is None


# -- xm --------------------------------------------------------------------------------


def xm_section(title: str) -> str:
    text = (FIX / "xm_list_samples.txt").read_text()
    return text.split(f"=== {title}\n", 1)[1].split("\n=== ", 1)[0] + "\n"


async def test_xm_list_domains_is_one_process_with_state(fake, tmp_path):
    out = tmp_path / "xm_list_l.txt"
    out.write_text(xm_section("xm list -l (reconstructed)"))
    fake.add("xm", {"match": ["list", "-l"], "stdout_file": str(out)})
    domains = await XmToolstack().list_domains()
    assert fake.calls == [["xm", "list", "-l"]]
    assert [(d.domid, d.name, d.state.flags) for d in domains] == [(0, "Domain-0", "r-----"), (3, "debian12", "-b----")]


async def test_xm_action_argv(fake, tmp_path):
    fake.add("xm")
    xm = XmToolstack()
    await xm.create(tmp_path / "a.cfg")
    await xm.shutdown(3, ["--halt", "--wait"])
    await xm.shutdown_all(["--all", "--halt", "--wait"])
    await xm.migrate(3, ["--live", "-p", "8002", "host"])
    await xm.save(3, tmp_path / "img")
    assert fake.calls == [
        ["xm", "create", "--quiet", str(tmp_path / "a.cfg")],
        ["xm", "shutdown", "--halt", "--wait", "3"],
        ["xm", "shutdown", "--all", "--halt", "--wait"],
        ["xm", "migrate", "--live", "-p", "8002", "3", "host"],
        ["xm", "save", "3", str(tmp_path / "img")],
    ]


async def test_xm_dry_run_names_a_config_without_name(fake, tmp_path):
    cfg = tmp_path / "web.cfg"
    cfg.write_text("memory = 512\n")  # no name: xm uses the basename, only the dry run knows
    fake.add("xm", {"match": ["create", "--dryrun", "--quiet"], "stdout": "(vm\n    (name web)\n    (memory 512)\n)\n"})
    (r,) = await XmToolstack().config_names([cfg])
    assert r == AutoConfig(cfg, "web")
    assert fake.calls == [["xm", "create", "--dryrun", "--quiet", str(cfg)]]


# -- detection --------------------------------------------------------------------------


def test_auto_prefers_xl_then_xm(fake):
    fake.add("xm")
    assert isinstance(choose_toolstack("auto"), XmToolstack)
    fake.add("xl")
    assert isinstance(choose_toolstack(), XlToolstack)
    assert isinstance(choose_toolstack("xm"), XmToolstack)


def test_auto_without_either_raises(fake, tmp_path):
    with pytest.raises(ToolstackMissing, match="neither xl nor xm found on PATH"):
        choose_toolstack("auto")
    with pytest.raises(ToolstackMissing, match="xm"):
        choose_toolstack("xm", path=str(tmp_path))


def test_unknown_preference_is_a_value_error():
    with pytest.raises(ValueError):
        choose_toolstack("libvirt")


# -- the process runner: own session, output files, group kill ---------------------------


async def test_a_double_forked_child_that_holds_the_output_is_killed_and_never_waited_for(fake, tmp_path):
    """The issue's finding 7: a grandchild that left the tree and kept xl's stdout/stderr open."""
    import time

    pidfile = tmp_path / "grandchild.pid"
    # ( sleep & ) : the subshell exits at once, so the sleep is reparented to init — out of psutil's tree
    fake.add_script("xl", f'( sleep 60 & echo $! > "{pidfile}" )\necho still here >&2\nsleep 60\n')
    t0 = time.monotonic()
    with pytest.raises(CommandTimedOut) as exc:
        await XlToolstack().sysrq(3, "s", timeout=0.5)
    assert time.monotonic() - t0 < 10, "the watchdog waited on an orphan"
    assert "still here" in exc.value.stderr  # read back from its file, not a pipe
    assert not _alive(int(pidfile.read_text()))


async def test_commands_run_in_their_own_session_with_output_in_files_not_pipes(fake, tmp_path):
    fake.add_script("xl", 'readlink /proc/$$/fd/1 /proc/$$/fd/2; cat /proc/$$/stat >&2\n')
    (fake.dir.parent / "tools" / "readlink").symlink_to(shutil.which("readlink", path="/usr/bin:/bin"))
    (fake.dir.parent / "tools" / "cat").symlink_to(shutil.which("cat", path="/usr/bin:/bin"))
    done = await XlToolstack()._run("info", timeout=10)
    assert "pipe:" not in done.stdout and len(done.stdout.splitlines()) == 2
    stat = done.stderr
    session = int(stat[stat.rfind(")") + 2:].split()[3])
    assert session != os.getsid(0)


async def test_kill_all_kills_every_running_command(fake, tmp_path):
    import asyncio

    from xdcore.toolstack import process

    fake.add_script("xl", "sleep 60\n")
    xl = XlToolstack()
    tasks = [asyncio.ensure_future(xl.sysrq(i, "s", timeout=None)) for i in (1, 2)]
    for _ in range(200):
        if len(process.running_commands()) == 2:
            break
        await asyncio.sleep(0.05)
    pids = list(process.running_commands())
    assert len(pids) == 2
    assert len(process.kill_all()) == 2
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, CommandFailed) for r in results)
    assert not any(_alive(p) for p in pids)
