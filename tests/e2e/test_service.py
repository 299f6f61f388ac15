"""The installed `xendomains`, run as a subprocess against the simulator's xl/xm first on PATH.

These are the end-to-end cases of the core issue: the production code path
(the xl adapter spawning `xl`), no fakes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from xdcore.events import from_json
from xdcore.model import ImageKind, sniff_image
from xdcore.sim import host
from xdcore.sim.testing import make_host

from .helpers import xendomains_exe

XENDOMAINS = xendomains_exe()  # this checkout's console script, not whichever is first on PATH
pytestmark = pytest.mark.skipif(not XENDOMAINS, reason="xendomains is not installed (pip install -e .)")


def write_conf(layout, tmp_path: Path, **keys: str) -> Path:
    base = {
        "XENDOMAINS_SAVE": str(layout.save_dir),
        "XENDOMAINS_AUTO": str(layout.auto_dir),
        "XENDOMAINS_LOCKFILE": str(tmp_path / "lock" / "xendomains"),
        "XENDOMAINS_PROGRESS": str(tmp_path / "run" / "progress.jsonl"),
        "XENDOMAINS_CREATE_USLEEP": "0",
        "XENDOMAINS_USLEEP": "0",
        "XENDOMAINS_STOP_MAXWAIT": "20",
        "XENDOMAINS_TOOLSTACK": "xl",
    }
    base.update(keys)
    conf = tmp_path / "xendomains.conf"
    conf.write_text("".join(f'{k}="{v}"\n' for k, v in base.items()))
    return conf


def xd(layout, conf: Path | None, *args: str, json: bool = True, env_extra: dict | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [XENDOMAINS] + (["--config", str(conf)] if conf else []) + (["--json"] if json else []) + list(args)
    env = layout.env()
    env.pop("XENDOMAINS_CONFIG", None)
    env.update(env_extra or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def events(r: subprocess.CompletedProcess) -> list:
    return [from_json(line) for line in r.stdout.splitlines() if line.startswith("{")]


def outcomes(r) -> dict[str, str]:
    return {e.guest: e.outcome for e in events(r) if e.kind == "guest_finished"}


def running(layout) -> list[str]:
    return sorted(d.name for d in host.load_snapshot(layout.state_dir).domains if d.domid != 0)


def history(layout) -> list[list[str]]:
    return [h["argv"] for h in host.load(layout.state_dir).history]


def xdsim(layout, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), *args],
                   check=True, capture_output=True)


# -- start ---------------------------------------------------------------------------------


def test_start_restores_images_then_autostarts_with_the_right_skips(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)], saved=[("db", 1024, 2)],
                       auto=["web01", "db"], configs_dir=tmp_path / "cfg")
    (tmp_path / "cfg" / "mail.cfg").write_text('name = "mail"\ntype = "pvh"\nkernel = "/k"\nmemory = 256\n')
    (layout.auto_dir / "mail.cfg").symlink_to(tmp_path / "cfg" / "mail.cfg")
    conf = write_conf(layout, tmp_path)
    r = xd(layout, conf, "start")
    assert r.returncode == 0, r.stderr
    assert outcomes(r) == {"db": "restored", "mail": "created"}
    skipped = {e.guest: e.reason for e in events(r) if e.kind == "guest_skipped"}
    assert set(skipped) == {"web01"}  # db was restored: its outcome is "restored", never also "skipped: already running"
    assert running(layout) == ["db", "mail", "web01"]
    assert list(layout.save_dir.iterdir()) == []
    assert (tmp_path / "lock" / "xendomains").exists()
    creates = [a for a in history(layout) if "create" in a]
    assert len(creates) == 1 and creates[0][-1].endswith("mail.cfg")


def test_a_failed_restore_keeps_its_image_blocks_a_fresh_create_and_exits_1(tmp_path):
    layout = make_host(tmp_path / "h", saved=[("db", 1024, 2)], auto=["db"])
    xdsim(layout, "fault", "restore", "db", "fail")
    conf = write_conf(layout, tmp_path)
    r = xd(layout, conf, "start")
    assert r.returncode == 1
    assert outcomes(r) == {"db": "failed"}
    quarantined = layout.save_dir / ".failed" / "db"
    assert quarantined.exists() and sniff_image(quarantined) is ImageKind.XL
    assert not [a for a in history(layout) if "create" in a]
    assert running(layout) == []
    errors = [e.text for e in events(r) if e.kind == "message_logged" and e.level == "error"]
    assert any("db" in t and ".failed" in t for t in errors)
    st = xd(layout, conf, "status", json=False)
    assert "QUARANTINED: db" in st.stdout


def test_start_with_the_lock_present_touches_nothing(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("a", 256, 1)], auto=["a"], saved=[("b", 256, 1)])
    conf = write_conf(layout, tmp_path)
    lock = tmp_path / "lock" / "xendomains"
    lock.parent.mkdir()
    lock.write_text("")
    r = xd(layout, conf, "start", json=False)
    assert r.returncode == 0
    assert "xendomains already running (lockfile exists)" in r.stdout
    assert history(layout) == [h for h in history(layout) if "restore" not in h and "create" not in h]
    assert (layout.save_dir / "b").exists()


def test_three_racing_starts_create_each_guest_once(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("g1", 256, 1), ("g2", 256, 1), ("g3", 256, 1)], auto=["g1", "g2", "g3"])
    for n in ("g1", "g2", "g3"):
        xdsim(layout, "xl", "destroy", n)
    assert running(layout) == []
    xdsim(layout, "latency", "create", "0.3")
    conf = write_conf(layout, tmp_path)
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda: results.append(xd(layout, conf, "start"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.returncode for r in results) == [0, 0, 0]
    creates = [a for a in history(layout) if "create" in a]
    assert len(creates) == 3
    assert running(layout) == ["g1", "g2", "g3"]


# -- stop -------------------------------------------------------------------------------------


def test_stop_saves_every_guest_and_removes_the_lock(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1), ("db", 1024, 2)])
    conf = write_conf(layout, tmp_path)
    r = xd(layout, conf, "stop")
    assert r.returncode == 0, r.stderr
    assert outcomes(r) == {"web01": "saved", "db": "saved"}
    assert running(layout) == []
    assert sorted(p.name for p in layout.save_dir.iterdir()) == ["db", "web01"]
    assert all(sniff_image(p) is ImageKind.XL for p in layout.save_dir.iterdir())
    assert not (tmp_path / "lock" / "xendomains").exists()
    # and they come back
    r = xd(layout, conf, "start")
    assert outcomes(r) == {"web01": "restored", "db": "restored"}
    assert running(layout) == ["db", "web01"]


def test_human_output_reads_like_the_classic_script(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    conf = write_conf(layout, tmp_path, XENDOMAINS_SYSRQ="s")
    r = xd(layout, conf, "stop", json=False)
    assert r.returncode == 0
    assert "Shutting down Xen domains:" in r.stdout
    assert " web01(SR-s).(save). saved" in r.stdout


def test_a_failed_migrate_falls_back_to_save(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    xdsim(layout, "fault", "migrate", "web01", "fail")
    conf = write_conf(layout, tmp_path, XENDOMAINS_MIGRATE="--live host2")
    r = xd(layout, conf, "stop")
    assert r.returncode == 0
    assert outcomes(r) == {"web01": "saved"}
    migrates = [a for a in history(layout) if "migrate" in a]
    assert migrates and "--live" not in migrates[0] and migrates[0][-1] == "host2"
    stage_outcomes = [(e.stage, e.outcome) for e in events(r) if e.kind == "stage_finished" and e.guest == "web01"]
    assert stage_outcomes == [("migrate", "failed"), ("save", "done")]


def test_a_successful_migrate_ends_the_guest_pipeline(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    conf = write_conf(layout, tmp_path, XENDOMAINS_MIGRATE="host2")
    r = xd(layout, conf, "stop")
    assert outcomes(r) == {"web01": "migrated"}
    assert "web01" in str(host.load_snapshot(layout.state_dir).targets)
    assert list(layout.save_dir.iterdir()) == []


def test_a_hung_save_is_killed_by_the_watchdog_and_the_guest_left_suspended_is_reported_not_lost(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("big", 2048, 2)])
    xdsim(layout, "fault", "save", "big", "hang")
    conf = write_conf(layout, tmp_path, XENDOMAINS_STOP_MAXWAIT="1")
    r = xd(layout, conf, "stop")
    assert r.returncode == 1  # real xl killed after the suspend point leaves the guest suspended
    assert outcomes(r) == {"big": "suspended"}
    assert [e.outcome for e in events(r) if e.kind == "stage_finished" and e.stage == "save"] == ["timeout"]
    assert [p.name for p in layout.save_dir.iterdir()] == [".failed"]  # the partial is kept, never under its name
    assert [p.name for p in (layout.save_dir / ".failed").iterdir()] == ["big"]
    killed = [e for e in events(r) if e.kind == "command_finished" and e.returncode is None]
    assert killed and killed[0].argv[1] == "save"


def test_sysrq_keys_go_in_order_before_migrate_and_save(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    xdsim(layout, "fault", "migrate", "web01", "fail")
    conf = write_conf(layout, tmp_path, XENDOMAINS_SYSRQ="s e u", XENDOMAINS_MIGRATE="host2")
    r = xd(layout, conf, "stop")
    assert r.returncode == 0
    ops = [(e.argv[1], e.argv[-1]) for e in events(r) if e.kind == "command_started" and e.guest == "web01"]
    assert ops[:3] == [("sysrq", "s"), ("sysrq", "e"), ("sysrq", "u")]
    assert [o[0] for o in ops[3:]] == ["migrate", "save"]


def test_auto_only_stops_only_guests_with_a_config_in_the_auto_directory(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1), ("scratch", 512, 1)], auto=["web01"])
    conf = write_conf(layout, tmp_path, XENDOMAINS_AUTO_ONLY="true", XENDOMAINS_SHUTDOWN_ALL="")
    r = xd(layout, conf, "stop")
    assert outcomes(r) == {"web01": "saved"}
    assert running(layout) == ["scratch"]


def test_auto_only_with_an_empty_auto_directory_selects_no_guest_and_says_so(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    conf = write_conf(layout, tmp_path, XENDOMAINS_AUTO_ONLY="true", XENDOMAINS_SHUTDOWN_ALL="")
    r = xd(layout, conf, "stop", json=False)
    assert r.returncode == 0
    assert "no guest selected" in r.stderr
    assert running(layout) == ["web01"]


def test_a_zombie_is_left_alone_and_no_shutdown_all_is_issued_for_zombies_alone(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("undead", 512, 1, "--p--d")])
    conf = write_conf(layout, tmp_path)
    r = xd(layout, conf, "stop")
    assert outcomes(r) == {"(null)": "zombie"}  # real xl lists a zombie without its name
    assert not [a for a in history(layout) if "shutdown" in a or "save" in a]
    sa = [e for e in events(r) if e.kind == "stage_finished" and e.stage == "shutdown_all"]
    assert sa and sa[0].outcome == "skipped" and "zombies" in sa[0].detail


def test_the_seed_defaults_halt_and_wait_are_translated_for_xl(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    conf = tmp_path / "seed.conf"
    # only the keys the seed's defaults do not cover: SHUTDOWN defaults to "--halt --wait"
    conf.write_text(f'XENDOMAINS_SAVE=""\nXENDOMAINS_AUTO={layout.auto_dir}\nXENDOMAINS_LOCKFILE={tmp_path}/lk\n'
                    f'XENDOMAINS_PROGRESS={tmp_path}/p.jsonl\n')
    r = xd(layout, conf, "stop")
    assert r.returncode == 0, r.stderr
    shutdowns = [a for a in history(layout) if "shutdown" in a]
    assert shutdowns and "--halt" not in shutdowns[0] and "--wait" in shutdowns[0]
    infos = [e.text for e in events(r) if e.kind == "message_logged"]
    assert any("dropped --halt" in t for t in infos)


def test_an_xm_host_is_driven_with_xm(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("old01", 512, 1)])
    xl = layout.bin_dir / "xl"
    xl.rename(layout.bin_dir / "xl.disabled")  # an Oracle VM 3 / xend host has no xl
    env_path = f"{layout.bin_dir}:/usr/bin:/bin"
    conf = write_conf(layout, tmp_path, XENDOMAINS_TOOLSTACK="auto", XENDOMAINS_SHUTDOWN="--halt --wait")
    r = xd(layout, conf, "stop", env_extra={"PATH": env_path})
    assert r.returncode == 0, r.stderr
    assert outcomes(r) == {"old01": "saved"}
    started = [e.argv for e in events(r) if e.kind == "command_started" and e.argv[0] != "xenstore-read"]
    assert started and all(a[0] == "xm" for a in started)
    img = layout.save_dir / "old01"
    assert sniff_image(img) is ImageKind.XM
    r = xd(layout, conf, "start", env_extra={"PATH": env_path})
    assert outcomes(r) == {"old01": "restored"}, r.stdout + r.stderr


# -- status, config -----------------------------------------------------------------------


def test_status_exit_codes_3_0_and_1(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)], auto=["web01"])
    conf = write_conf(layout, tmp_path)
    assert xd(layout, conf, "status").returncode == 3  # not started: no lock
    (tmp_path / "lock").mkdir()
    (tmp_path / "lock" / "xendomains").write_text("started 1\n")
    r = xd(layout, conf, "status", json=False)
    assert r.returncode == 0, r.stdout
    assert "web01(1)" in r.stdout
    xdsim(layout, "xl", "destroy", "web01")
    r = xd(layout, conf, "status", json=False)
    assert r.returncode == 3  # no guest running
    xdsim(layout, "add", "other", "--mem", "256", "--vcpus", "1")
    r = xd(layout, conf, "status", json=False)
    assert r.returncode == 1 and "MISS AUTO: web01" in r.stdout


def test_a_missing_config_file_stop_exits_0_and_the_rest_6(tmp_path):
    layout = make_host(tmp_path / "h")
    missing = tmp_path / "nope.conf"
    assert xd(layout, missing, "stop").returncode == 0
    for verb in ("start", "status", "restart"):
        r = xd(layout, missing, verb)
        assert r.returncode == 6, (verb, r.stderr)
        assert "nope.conf" in r.stderr


def test_a_malformed_value_refuses_start_and_status_but_stop_uses_the_default(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)])
    conf = write_conf(layout, tmp_path, XENDOMAINS_STOP_MAXWAIT="soon")
    for verb in ("start", "status"):
        r = xd(layout, conf, verb)
        assert r.returncode == 6
        assert f"{conf}:7: XENDOMAINS_STOP_MAXWAIT: expected" in r.stderr and "got 'soon'" in r.stderr
    r = xd(layout, conf, "stop", json=False)
    assert r.returncode == 0
    assert "XENDOMAINS_STOP_MAXWAIT" in r.stderr and "using the default" in r.stderr
    assert running(layout) == []


def test_unknown_verb_prints_usage_and_exits_2(tmp_path):
    layout = make_host(tmp_path / "h")
    r = xd(layout, write_conf(layout, tmp_path), "frobnicate")
    assert r.returncode == 2 and "Usage:" in r.stderr


def test_condrestart_only_restarts_a_started_service(tmp_path):
    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1)], auto=["web01"])
    conf = write_conf(layout, tmp_path, XENDOMAINS_SAVE="")
    r = xd(layout, conf, "condrestart", json=False)
    assert r.returncode == 0 and "not started" in r.stdout
    assert history(layout) == [h for h in history(layout) if "shutdown" not in h]
    assert xd(layout, conf, "start").returncode == 0  # web01 running: the lock stays
    r = xd(layout, conf, "try-restart")
    assert r.returncode == 0, r.stderr
    assert any("shutdown" in a for a in history(layout)) and running(layout) == ["web01"]


# -- constant number of xl processes ---------------------------------------------------------------


def counting_bin(layout, tmp_path: Path) -> tuple[Path, Path]:
    """A bin dir whose xl logs each invocation, then runs the simulator's xl."""
    cbin = tmp_path / "countbin"
    cbin.mkdir()
    log = tmp_path / "xl-calls.log"
    (cbin / "xl").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {layout.bin_dir}/xl "$@"\n')
    (cbin / "xl").chmod(0o755)
    return cbin, log


def test_status_and_start_with_200_guests_and_200_auto_configs_spawn_a_constant_number_of_xl(tmp_path):
    names = [f"vm{i:03d}" for i in range(200)]
    layout = make_host(tmp_path / "h", guests=[(n, 64, 1) for n in names], auto=names)
    conf = write_conf(layout, tmp_path)
    cbin, log = counting_bin(layout, tmp_path)
    env = {"PATH": f"{cbin}:{layout.bin_dir}:{os.environ['PATH']}"}
    (tmp_path / "lock").mkdir()
    (tmp_path / "lock" / "xendomains").write_text("started 1\n")
    r = xd(layout, conf, "status", env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    status_calls = log.read_text().splitlines()
    log.unlink()
    (tmp_path / "lock" / "xendomains").unlink()
    r = xd(layout, conf, "start", env_extra=env)
    assert r.returncode == 0, r.stderr
    start_calls = log.read_text().splitlines()
    assert len(status_calls) <= 2, status_calls          # xl list -l + xl list
    assert len(start_calls) <= 4, start_calls            # one listing before autostart, one at the end
    assert len([e for e in events(r) if e.kind == "guest_skipped"]) == 200


@pytest.mark.skipif(not shutil.which("xenstore-read"), reason="xenstore-utils not installed (apt-get install xenstore-utils; CI installs it)")
def test_a_xenstore_stub_domain_is_never_selected(tmp_path):
    import time

    layout = make_host(tmp_path / "h", guests=[("web01", 512, 1), ("xenstore-stubdom", 64, 1)])
    with host.transaction(layout.state_dir) as st:
        st.by_name("xenstore-stubdom").xs_domain = True
    sock = tmp_path / "xs.sock"
    server = subprocess.Popen([sys.executable, "-m", "xdcore.sim.cli", "--state", str(layout.state_dir), "xenstored",
                               "--socket", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        env = {"XENSTORED_PATH": str(sock)}
        for _ in range(100):  # the mirror publishes /tool/xenstored/domid
            r = subprocess.run(["xenstore-read", "/tool/xenstored/domid"], capture_output=True, text=True, env={**os.environ, **env})
            if r.returncode == 0:
                break
            time.sleep(0.05)
        assert r.stdout.strip() == "2"
        conf = write_conf(layout, tmp_path, XENDOMAINS_SAVE="")
        res = xd(layout, conf, "stop", env_extra=env)
        assert outcomes(res) == {"web01": "shutdown"}
        assert running(layout) == ["xenstore-stubdom"]
    finally:
        server.terminate()
        server.wait(10)


def test_a_deadline_downgrades_waiting_guests_to_shutdown_and_caps_every_watchdog(tmp_path):
    layout = make_host(tmp_path / "h", guests=[(f"g{i}", 512, 1) for i in range(4)])
    xdsim(layout, "latency", "save", "2")
    conf = write_conf(layout, tmp_path, XENDOMAINS_STOP_DEADLINE="3", XENDOMAINS_STOP_MAXWAIT="300",
                      XENDOMAINS_SHUTDOWN="--wait")
    r = xd(layout, conf, "stop")
    evs = events(r)
    downs = [e for e in evs if e.kind == "stage_downgraded"]
    assert downs and all((d.from_stage, d.to_stage) == ("save", "shutdown") for d in downs)
    assert "deadline" in downs[0].reason
    got = outcomes(r)
    assert set(got.values()) <= {"saved", "shutdown"} and len(got) == 4
    assert {got[d.guest] for d in downs} == {"shutdown"}
    assert running(layout) == []
    # no command was ever given more time than the budget: the watchdog is capped by what remains
    assert all(0 < e.timeout <= 3 for e in evs if e.kind == "stage_started" and e.guest)
