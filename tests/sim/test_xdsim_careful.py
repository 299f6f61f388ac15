"""`xdsim` as a careful tool (issue 13): every argument checked, one line per change, a readable history."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.support import wait_for
from xdcore.sim import host
from xdcore.sim.cli import main as xdsim
from xdcore.sim.testing import make_host


@pytest.fixture
def state(sim_state):
    make_host(sim_state, [("web01", 256, 1)])
    return sim_state


@pytest.mark.parametrize("argv, says", [
    (["latency", "frob", "5"], "unknown operation 'frob'"),
    (["latency", "save", "-3"], "must be a non-negative number"),
    (["latency", "save", "nan"], "must be a non-negative number"),
    (["rate", "save", "-1"], "must be a non-negative number"),
    (["fault", "save", "nosuchguest", "hang"], "no guest 'nosuchguest'"),
    (["fault", "save", "web01", "explode"], "unknown fault 'explode'"),
    (["fault", "save", "web01", "delay:-2"], "must be a non-negative number"),
    (["fault", "save", "web01", "delay:soon"], "needs a number of seconds"),
    (["dirty", "web01", "-5"], "must be a non-negative number"),
    (["memory", "--total", "0"], "must be a positive number"),
    (["memory"], "give --total"),
    (["add", "web01"], "already on this host"),
    (["add", "big", "--mem", "-1"], "--mem must be a positive number"),
    (["add", "big", "--vcpus", "0"], "--vcpus must be a positive number"),
    (["add", "big", "--state-flags", "zzz"], "--state-flags must be six characters"),
    (["resource", "disk", "-1"], "MBPS must be"),
])
def test_bad_input_is_an_error_naming_it_exit_2_and_changes_nothing(state, capsys, argv, says):
    before = host.state_path(state).read_bytes()
    assert xdsim(["--state", str(state), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert host.state_path(state).read_bytes() == before


def test_an_unknown_subcommand_or_operation_choice_is_exit_2(state):
    with pytest.raises(SystemExit) as exc:
        xdsim(["--state", str(state), "fault", "frob", "web01", "hang"])
    assert exc.value.code == 2


def test_the_state_of_a_missing_host_is_an_error_except_for_the_verbs_that_lay_one_out(tmp_path, capsys):
    missing = tmp_path / "nohost"
    for argv in (["latency", "save", "1"], ["list"], ["history"], ["fault", "save", "*", "hang"], ["xl", "list"]):
        assert xdsim(["--state", str(missing), *argv]) == 2, argv
        assert "no simulated host in" in capsys.readouterr().err
        assert not missing.exists(), f"{argv} created a host"
    assert xdsim(["--state", str(missing), "shim", str(tmp_path / "bin")]) == 0
    assert host.state_path(missing).is_file()
    assert xdsim(["--state", str(tmp_path / "demo"), "demo", "--fast"]) == 0


def test_every_change_says_what_it_did_in_one_line(state, capsys):
    def say(*argv: str) -> str:
        assert xdsim(["--state", str(state), *argv]) == 0
        out = capsys.readouterr().out
        assert len(out.splitlines()) == 1, out
        return out.strip()

    assert say("latency", "save", "3") == "latency save: 3s (was 0.01s)"
    assert say("rate", "save", "500").startswith("rate save: 500 MB/s (was ")
    assert say("fault", "save", "web01", "hang") == "fault save on web01: hang"
    assert say("fault", "save", "web01", "fail") == "fault save on web01: fail (replaces hang)"
    assert say("fault", "restore", "wiki", "fail") == "fault restore on wiki: fail"  # not running yet: fine
    assert say("clear") == "cleared 2 faults"
    assert say("memory", "--total", "8192").startswith("memory: total 8192 MiB, free ")
    assert say("resource", "disk", "400") == "resource disk: 400 MB/s, shared (was not shared)"
    assert say("dirty", "web01", "50") == "dirty web01: 50 MB/s re-dirtied during a live migration"


def test_history_is_a_table_with_the_save_the_watchdog_killed_and_json_on_request(state, sim_bin, tmp_path, capsys):
    assert subprocess.run([str(sim_bin / "xl"), "shutdown", "-w", "web01"], capture_output=True).returncode == 0
    make_host(state, [("db", 256, 1)])
    xdsim(["--state", str(state), "fault", "save", "db", "hang"])
    proc = subprocess.Popen([str(sim_bin / "xl"), "save", "db", str(tmp_path / "db.img")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any((d.busy or {}).get("op") == "save" for d in host.load(state).domains), what="the save to hang")
    proc.kill()  # the watchdog: SIGKILL, no handler runs
    proc.wait()
    capsys.readouterr()

    assert xdsim(["--state", str(state), "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["started", "took", "result", "command"]
    assert any(ln.split()[3:] == ["ok", "xl", "shutdown", "-w", "web01"] for ln in lines[1:]), lines
    killed = [ln for ln in lines if " killed " in ln]
    assert len(killed) == 1 and killed[0].endswith(f"xl save db {tmp_path / 'db.img'}"), lines
    assert time.strftime("%Y-%m-%d") in lines[1]  # a date and a time, not epoch seconds

    assert xdsim(["--state", str(state), "history", "--json"]) == 0
    entries = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e.get("killed", False) for e in entries] == [False, True]
    assert entries[1]["rc"] is None and entries[1]["argv"][:2] == ["xl", "save"]
