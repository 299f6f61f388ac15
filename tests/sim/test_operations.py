"""Time, faults and the state transitions of the simulated host (through the xl shim)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from xdcore.model import sniff_image, ImageKind
from xdcore.sim import host
from xdcore.sim.cli import main as xdsim
from xdcore.sim.testing import make_host

from tests.support import wait_for

from .helpers import run


def names(state) -> list[str]:
    return [d.name for d in host.load_snapshot(state).domains]


def flags_of(state, name: str) -> str | None:
    return next((d.flags for d in host.load_snapshot(state).domains if d.name == name), None)


def test_save_then_restore_round_trip_keeps_the_guest_and_the_image(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("web01", 1024, 2)])
    image = tmp_path / "web01"
    done = run("xl", "save", "web01", str(image))
    assert done.returncode == 0, done.stderr
    assert "web01" not in names(sim_state)
    assert sniff_image(image) is ImageKind.XL
    done = run("xl", "restore", str(image))
    assert done.returncode == 0, done.stderr
    assert b" Savefile contains xl domain config in JSON format\nParsing config from <saved>\n" in done.stderr
    wait_for(lambda: flags_of(sim_state, "web01") == "-b----", what="restored guest running")
    assert image.exists()
    dom = next(d for d in host.load_snapshot(sim_state).domains if d.name == "web01")
    assert (dom.memory_kib, dom.online_vcpus) == (1024 * 1024, 2)
    again = run("xl", "restore", str(image))
    assert again.returncode != 0 and b'Domain with name "web01" already exists.' in again.stderr


def test_restore_rejects_files_that_are_not_xl_images(sim_env, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"LinuxGuestRecord" + b"\0" * 64)
    done = run("xl", "restore", str(junk))
    assert (done.stderr, done.returncode) == (b"File has wrong magic number - corrupt or for a different tool?\n", 1)
    done = run("xl", "restore", str(tmp_path / "missing"))
    assert (done.stderr, done.returncode) == (b"Can't open restore file: No such file or directory\n", 1)


def test_save_with_a_full_disk_leaves_a_partial_file_and_resumes_the_guest(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("web01", 2048, 2)])
    xdsim(["--state", str(sim_state), "fault", "save", "web01", "enospc"])
    image = tmp_path / "web01"
    done = run("xl", "save", "web01", str(image))
    assert done.returncode == 1
    assert done.stderr.endswith(b"Failed to save domain, resuming domain\n")
    assert b"No space left on device" in done.stderr
    assert image.exists() and sniff_image(image) is ImageKind.XL
    assert flags_of(sim_state, "web01") == "-b----"
    assert run("xl", "destroy", "web01").returncode == 0
    bad = run("xl", "restore", str(image))  # the truncated image does not restore
    assert bad.returncode == 1
    assert "web01" not in names(sim_state)


def test_guest_that_ignores_shutdown_fails_after_the_ack_timeout(sim_env, sim_state):
    make_host(sim_state, [("stubborn", 512, 1)])
    xdsim(["--state", str(sim_state), "fault", "shutdown", "stubborn", "ignore"])
    xdsim(["--state", str(sim_state), "latency", "ack_timeout", "0.2"])
    done = run("xl", "shutdown", "-w", "stubborn")
    assert done.returncode == 1
    domid = next(d.domid for d in host.load_snapshot(sim_state).domains if d.name == "stubborn")
    assert done.stderr == (f"Shutting down domain {domid}\n".encode()
                           + b"libxl: error: libxl_domain.c:854:pvcontrol_cb: guest didn't acknowledge control "
                             b"request: -9\nshutdown failed (rc=-9)\n")
    assert "stubborn" in names(sim_state)


def test_shutdown_without_wait_returns_before_the_guest_is_gone(sim_env, sim_state):
    make_host(sim_state, [("web01", 512, 1)])
    xdsim(["--state", str(sim_state), "latency", "shutdown", "0.5"])
    done = run("xl", "shutdown", "web01")
    assert done.returncode == 0
    assert "web01" in names(sim_state)  # acknowledged, still shutting down
    wait_for(lambda: "web01" not in names(sim_state), what="guest gone by itself")


def test_shutdown_wait_waits_for_every_guest(sim_env, sim_state):
    make_host(sim_state, [("a", 512, 1), ("b", 512, 1)])
    done = run("xl", "shutdown", "-a", "-w")
    assert done.returncode == 0, done.stderr
    assert b"Waiting for 2 domains\n" in done.stderr
    assert names(sim_state) == ["Domain-0"]


def test_zombie_fault_leaves_a_dying_domain_that_stays(sim_env, sim_state):
    make_host(sim_state, [("undead", 1024, 2)])
    xdsim(["--state", str(sim_state), "fault", "shutdown", "undead", "zombie"])
    done = run("xl", "shutdown", "-w", "undead")
    assert done.returncode == 0
    assert flags_of(sim_state, "undead") == "--p--d"
    # as real xl 4.17 shows a zombie (real-4.17/xl_list_zombie): no name, no memory, its vCPUs, paused + dying
    line = next(ln for ln in run("xl", "list").stdout.decode().splitlines() if ln.startswith("(null)"))
    assert line.split()[1:5] == ["1", "0", "2", "--p--d"]
    gone = run("xl", "destroy", "undead")  # its name is gone from XenStore: only its domid reaches it
    assert gone.returncode == 1 and b"undead is an invalid domain identifier" in gone.stderr
    assert run("xl", "destroy", "1").returncode == 0
    assert flags_of(sim_state, "undead") == "--p--d"  # held from outside the toolstack: it stays
    long = run("xl", "list", "-l")
    assert b'"undead"' not in long.stdout and b"Domain 1:Fail to get domain configuration" in long.stderr


def test_a_guest_a_failed_save_resumed_has_no_monitor_and_its_shutdown_leaves_it_shut_down_as_real_xl_does(
        sim_env, sim_state, tmp_path):
    """Real Xen 4.17 (realxen badsave): the `xl create` applying on_poweroff exits when `xl save` suspends the
    guest; after the save failed and resumed it, `xl shutdown -w` returns once it is down, and it stays `---s--`."""
    make_host(sim_state, [("filled", 1024, 1)])
    xdsim(["--state", str(sim_state), "fault", "save", "filled", "enospc"])
    failed = run("xl", "save", "filled", str(tmp_path / "filled"))
    assert failed.returncode == 1 and failed.stderr.endswith(b"Failed to save domain, resuming domain\n")
    assert flags_of(sim_state, "filled") == "-b----"  # resumed: it runs on
    done = run("xl", "shutdown", "-w", "filled")
    assert done.returncode == 0 and b"Domain 1 has been shut down, reason code 0\n" in done.stderr
    assert flags_of(sim_state, "filled") == "---s--"  # nobody destroyed it
    line = next(ln for ln in run("xl", "list", "-v").stdout.decode().splitlines() if ln.startswith("filled"))
    assert line.split()[4] == "---s--" and line.split()[7] == "0"  # shut down, reason 0: poweroff
    assert flags_of(sim_state, "filled") == "---s--"
    # a shutdown that includes it never hears back from it (real xl waits until it is killed)
    assert run("xl", "shutdown", "-a", "-w").returncode != 0
    assert run("xl", "destroy", "filled").returncode == 0
    assert names(sim_state) == ["Domain-0"]


def test_a_guest_with_its_monitor_goes_away_on_shutdown(sim_env, sim_state):
    make_host(sim_state, [("web01", 1024, 1)])
    assert run("xl", "shutdown", "-w", "web01").returncode == 0
    assert names(sim_state) == ["Domain-0"]


def test_a_save_killed_after_the_suspend_point_leaves_the_guest_suspended_as_real_xl_does(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("backup", 1024, 1)])
    xdsim(["--state", str(sim_state), "fault", "save", "backup", "hang"])
    proc = subprocess.Popen(["xl", "save", "backup", str(tmp_path / "backup")], stderr=subprocess.PIPE)
    wait_for(lambda: flags_of(sim_state, "backup") == "---ss-", what="guest suspended by the save")
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stderr.close()
    st = host.load(sim_state)  # the next reader notices the dead saver: nothing resumed it
    assert st.by_name("backup").busy is None and st.by_name("backup").flags == "---ss-"
    line = next(ln for ln in run("xl", "list", "-v").stdout.decode().splitlines() if ln.startswith("backup"))
    assert line.split()[4] == "---ss-" and line.split()[7] == "2"  # shut down, reason 2: suspend
    assert run("xl", "list").returncode == 0  # state not locked by the dead process
    # a suspended guest runs no code: a shutdown request is never acknowledged
    xdsim(["--state", str(sim_state), "latency", "ack_timeout", "0.1"])
    assert run("xl", "shutdown", "backup").returncode != 0


def test_a_save_terminated_leaves_the_guest_suspended_too(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("backup", 1024, 1)])
    xdsim(["--state", str(sim_state), "fault", "save", "backup", "hang"])
    proc = subprocess.Popen(["xl", "save", "backup", str(tmp_path / "b")], stderr=subprocess.DEVNULL)
    wait_for(lambda: flags_of(sim_state, "backup") == "---ss-", what="suspended")
    proc.terminate()
    assert proc.wait(timeout=10) == -signal.SIGTERM
    st = host.load(sim_state)
    assert st.by_name("backup").busy is None and st.by_name("backup").flags == "---ss-"


def test_save_writes_progress_to_stderr_and_dies_of_sigpipe_when_nobody_reads(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("db", 1024, 2), ("web", 512, 1)])
    xdsim(["--state", str(sim_state), "latency", "save", "1.0"])
    done = run("xl", "save", "web", str(tmp_path / "web"))
    err = done.stderr.decode()
    assert done.returncode == 0 and err.count("xc: progress: Frames:") == 12 and "End of stream" in err
    proc = subprocess.Popen(["xl", "save", "db", str(tmp_path / "db")], stderr=subprocess.PIPE)
    wait_for(lambda: flags_of(sim_state, "db") == "---ss-", what="suspended")
    proc.stderr.close()  # the reader is gone (its parent was killed)
    assert proc.wait(timeout=20) == -signal.SIGPIPE
    assert flags_of(sim_state, "db") == "---ss-"  # left suspended, as on real Xen
    assert (tmp_path / "db").stat().st_size < (tmp_path / "web").stat().st_size * 2


def test_save_is_shown_suspended_while_it_runs(sim_env, sim_state, tmp_path):
    make_host(sim_state, [("db", 1024, 2)])
    xdsim(["--state", str(sim_state), "latency", "save", "1.5"])
    proc = subprocess.Popen(["xl", "save", "db", str(tmp_path / "db")], stderr=subprocess.DEVNULL)
    wait_for(lambda: flags_of(sim_state, "db") == "---ss-", what="suspended")
    assert proc.wait(timeout=20) == 0
    assert "db" not in names(sim_state)


def test_migrate_renames_the_source_and_records_the_guest_at_the_target(sim_env, sim_state):
    make_host(sim_state, [("mail", 1024, 1)])
    xdsim(["--state", str(sim_state), "latency", "migrate", "1.5"])
    proc = subprocess.Popen(["xl", "migrate", "--live", "mail", "backup-host"], stderr=subprocess.PIPE)
    wait_for(lambda: "mail--migratedaway" in names(sim_state), what="renamed during migration")
    assert proc.wait(timeout=20) == 0
    assert proc.stderr.read().endswith(b"Migration successful.\n")
    proc.stderr.close()
    assert "mail" not in names(sim_state) and "mail--migratedaway" not in names(sim_state)
    snap = host.load_snapshot(sim_state)
    assert snap.targets == (("backup-host", ("mail",)),)


def test_failed_migration_resumes_at_the_sender(sim_env, sim_state):
    make_host(sim_state, [("mail", 1024, 1)])
    xdsim(["--state", str(sim_state), "fault", "migrate", "*", "fail"])
    done = run("xl", "migrate", "mail", "elsewhere")
    assert done.returncode == 1 and done.stderr.endswith(b"Migration failed, resuming at sender.\n")
    assert "mail" in names(sim_state)


def test_new_domids_are_never_reused(sim_env, sim_state):
    layout = make_host(sim_state, [("a", 256, 1)])
    first = host.load(sim_state).by_name("a").domid
    assert run("xl", "destroy", "a").returncode == 0
    assert run("xl", "create", "-q", str(layout.configs["a"])).returncode == 0
    assert host.load(sim_state).by_name("a").domid > first


def test_history_records_state_changing_commands(sim_env, sim_state):
    make_host(sim_state, [("a", 256, 1)])
    run("xl", "list")
    run("xl", "sysrq", "a", "s")
    history = host.load(sim_state).history
    assert [h["argv"] for h in history] == [["xl", "sysrq", "a", "s"]]
    assert history[0]["rc"] == 0


def test_delay_fault_and_create_failure(sim_env, sim_state):
    layout = make_host(sim_state, [("a", 256, 1)])
    run("xl", "destroy", "a")
    xdsim(["--state", str(sim_state), "fault", "create", "a", "fail"])
    done = run("xl", "create", "-q", str(layout.configs["a"]))
    assert done.returncode == 3 and b"libxl: error" in done.stderr
    assert "a" not in names(sim_state)
    xdsim(["--state", str(sim_state), "clear"])
    assert run("xl", "create", "-q", str(layout.configs["a"])).returncode == 0


def test_state_file_is_valid_json_and_replaced_atomically(sim_env, sim_state):
    make_host(sim_state, [("a", 256, 1)])
    before = os.stat(host.state_path(sim_state))
    run("xl", "pause", "a")
    after = os.stat(host.state_path(sim_state))
    assert (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)
    json.loads(host.state_path(sim_state).read_text())
    unchanged = os.stat(host.state_path(sim_state))
    run("xl", "list")
    assert os.stat(host.state_path(sim_state)).st_ino == unchanged.st_ino
