"""`xendomains install`: the systemd unit, the SysV init script, idempotence and refusal."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from xdcore import cli
from xdcore.config import Config
from xdcore.install import (
    INIT_PATH,
    UNIT_PATH,
    compute_timeouts,
    default_kind,
    install,
    render_init_script,
    render_unit,
    written_by_us,
)


@pytest.fixture
def exe(tmp_path) -> str:
    p = tmp_path / "bin" / "xendomains"
    p.parent.mkdir()
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(0o755)
    return str(p)


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            keys.setdefault(m.group(1), []).append(m.group(2))
    return keys


def test_the_unit_is_a_oneshot_ordered_after_xen_the_network_and_remote_file_systems(exe):
    text = render_unit(Config(path=None), [exe], None, guests=4)
    k = unit_keys(text)
    assert k["Type"] == ["oneshot"] and k["RemainAfterExit"] == ["yes"]
    after = " ".join(k["After"]).split()
    for unit in ("xenstored.service", "xenconsoled.service", "proc-xen.mount", "network-online.target", "remote-fs.target"):
        assert unit in after
    assert k["Conflicts"] == ["libvirtd.service"]
    assert k["ExecStart"] == [f"-{exe} start"]  # "-": a failed start must not cost us ExecStop at shutdown
    assert k["ExecStop"] == [f"{exe} stop"]
    assert k["ExecReload"] == [f"{exe} restart"]
    assert k["WantedBy"] == ["multi-user.target"]
    # a stop timeout signals xendomains only: an xl save in progress is never killed mid-way (guest left suspended)
    assert k["KillMode"] == ["process"] and "KillMode=process:" in text


def test_the_stop_timeout_adds_up_every_watchdog_stage_of_every_batch_of_guests():
    cfg = Config(path=None, stop_maxwait=300, migrate=("host2",), parallel=2)
    t = compute_timeouts(cfg, guests=5)
    # ceil(5/2)=3 batches x (migrate, save, shutdown) x 300 s + 300 s shutdown-all + 120 s margin
    assert t.stop == 3 * 3 * 300 + 300 + 120
    assert "3 batches" in t.stop_formula and "STOP_MAXWAIT" in t.stop_formula
    # start: 3 batches x (300 s + 5 s CREATE_USLEEP) + margin
    assert t.start == 3 * (300 + 5) + 120


def test_a_per_stage_cap_narrows_the_batches_and_a_deadline_bounds_the_stop():
    t = compute_timeouts(Config(path=None, stop_maxwait=100, parallel=4, parallel_save=1, shutdown_all=()), guests=4)
    assert t.stop == 4 * 2 * 100 + 0 + 120
    t = compute_timeouts(Config(path=None, stop_deadline=900.0), guests=50)
    assert t.stop == 900 + 120
    assert "XENDOMAINS_STOP_DEADLINE" in t.stop_formula


def test_no_watchdog_means_no_bound_rather_than_systemds_90_seconds(exe):
    t = compute_timeouts(Config(path=None, stop_maxwait=0), guests=3)
    assert t.stop is None and t.start is None
    k = unit_keys(render_unit(Config(path=None, stop_maxwait=0), [exe], None, guests=3))
    assert k["TimeoutStopSec"] == ["infinity"] and k["TimeoutStartSec"] == ["infinity"]


def test_the_unit_comment_shows_the_formula_and_the_values_match_it(exe):
    cfg = Config(path=None, stop_maxwait=60)
    text = render_unit(cfg, [exe], None, guests=2)
    t = compute_timeouts(cfg, 2)
    assert f"TimeoutStopSec  = {t.stop_formula}" in text
    assert unit_keys(text)["TimeoutStopSec"] == [f"{t.stop}s"]
    assert unit_keys(text)["TimeoutStartSec"] == [f"{t.start}s"]
    assert t.stop != 90


def test_a_config_named_on_the_command_line_is_passed_to_the_service_quoted(tmp_path, exe):
    text = render_unit(Config(path=None), [exe], Path("/etc/xen/my domains%.conf"), guests=1)
    assert unit_keys(text)["ExecStop"] == [f'{exe} --config "/etc/xen/my domains%%.conf" stop']
    script = render_init_script([exe], Path("/etc/xen/my domains.conf"))
    assert f"exec {exe} --config '/etc/xen/my domains.conf' \"$@\"" in script


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path, exe):
    [res] = install("systemd", Config(path=None), prefix=tmp_path / "root", exe=[exe])
    proc = subprocess.run(["systemd-analyze", "verify", str(res.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # verify exits 0 even for unknown keys and unparsable values; it names the file then
    assert "xendomains.service" not in proc.stderr + proc.stdout, proc.stderr


def test_the_init_script_is_valid_shell_with_lsb_and_chkconfig_headers(tmp_path, exe):
    [res] = install("sysv", Config(path=None), prefix=tmp_path, exe=[exe])
    assert res.path == tmp_path / INIT_PATH and res.action == "installed"
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o755
    subprocess.run(["bash", "-n", str(res.path)], check=True)
    subprocess.run(["sh", "-n", str(res.path)], check=True)
    text = res.path.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"^# chkconfig: 345 99 00$", text, re.M)
    assert re.search(r"^# description: \S", text, re.M)
    m = re.search(r"^### BEGIN INIT INFO\n(.*?)^### END INIT INFO$", text, re.M | re.S)
    assert m, "no LSB block"
    lsb = dict(re.findall(r"^# ([A-Za-z-]+):\s+(.*)$", m.group(1), re.M))
    assert lsb["Provides"] == "xendomains"
    assert lsb["Required-Start"].split() == ["$remote_fs", "$syslog", "xenstored", "xenconsoled"]
    assert lsb["Default-Start"].split() == ["2", "3", "5"]
    assert lsb["Default-Stop"].split() == ["0", "1", "6"]
    assert "Short-Description" in lsb and "Required-Stop" in lsb


def test_the_init_script_hands_its_arguments_to_xendomains_and_asks_for_syslog_outside_systemd(tmp_path):
    log = tmp_path / "args"
    fake = tmp_path / "fake-xendomains"
    fake.write_text(f'#!/bin/sh\necho "$XENDOMAINS_SYSLOG" "$@" > {log}\n')
    fake.chmod(0o755)
    [res] = install("sysv", Config(path=None), prefix=tmp_path, exe=[str(fake)])
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "XENDOMAINS_SYSLOG")}
    subprocess.run([str(res.path), "stop", "web 01"], check=True, env=env)
    assert log.read_text() == "yes stop web 01\n"
    subprocess.run([str(res.path), "status"], check=True, env={**env, "JOURNAL_STREAM": "8:1234"})
    assert log.read_text() == " status\n"


def test_installing_twice_with_the_same_inputs_changes_nothing(tmp_path, exe):
    [first] = install("systemd", Config(path=None), prefix=tmp_path, exe=[exe], guests=4)
    before = first.path.stat()
    [second] = install("systemd", Config(path=None), prefix=tmp_path, exe=[exe], guests=4)
    assert (first.action, second.action) == ("installed", "unchanged")
    after = second.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first.path == tmp_path / UNIT_PATH


def test_a_file_we_wrote_is_updated_when_the_config_changes(tmp_path, exe):
    install("systemd", Config(path=None), prefix=tmp_path, exe=[exe], guests=4)
    [res] = install("systemd", Config(path=None, stop_maxwait=900), prefix=tmp_path, exe=[exe], guests=4)
    assert res.action == "updated"
    assert written_by_us(res.path.read_text())
    assert unit_keys(res.path.read_text())["TimeoutStopSec"] == [f"{compute_timeouts(Config(path=None, stop_maxwait=900), 4).stop}s"]


def test_a_file_the_administrator_changed_is_refused_unless_forced(tmp_path, exe):
    [res] = install("systemd", Config(path=None), prefix=tmp_path, exe=[exe])
    edited = res.path.read_text().replace("TimeoutStopSec=", "TimeoutStopSec=1h\n#was ")
    res.path.write_text(edited)
    [again] = install("systemd", Config(path=None, stop_maxwait=10), prefix=tmp_path, exe=[exe])
    assert again.action == "refused" and not again.ok
    assert str(res.path) in again.detail and "--force" in again.detail
    assert res.path.read_text() == edited
    [forced] = install("systemd", Config(path=None, stop_maxwait=10), prefix=tmp_path, exe=[exe], force=True)
    assert forced.action == "replaced"
    assert written_by_us(res.path.read_text())


def test_an_init_script_we_did_not_write_such_as_xens_own_is_refused(tmp_path, exe):
    theirs = tmp_path / INIT_PATH
    theirs.parent.mkdir(parents=True)
    theirs.write_text("#!/bin/bash\n# chkconfig: 345 99 00\n. /usr/lib/xen/bin/xendomains\n")
    [res] = install("sysv", Config(path=None), prefix=tmp_path, exe=[exe])
    assert res.action == "refused" and "not written by xendomains install" in res.detail
    assert theirs.read_text().startswith("#!/bin/bash\n")


def test_a_masked_unit_is_left_masked(tmp_path, exe):
    unit = tmp_path / UNIT_PATH
    unit.parent.mkdir(parents=True)
    unit.symlink_to("/dev/null")
    [res] = install("systemd", Config(path=None), prefix=tmp_path, exe=[exe])
    assert res.action == "refused" and "symlink" in res.detail
    assert unit.is_symlink()


def test_the_default_init_system_is_systemd_only_where_systemd_runs(tmp_path):
    assert default_kind(tmp_path) == "sysv"
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert default_kind(tmp_path) == "systemd"


def test_the_install_verb_reads_the_config_and_exits_1_naming_a_refused_file(tmp_path, exe, capsys):
    conf = tmp_path / "xendomains.conf"
    conf.write_text("XENDOMAINS_STOP_MAXWAIT=30\nXENDOMAINS_SAVE=\nXENDOMAINS_AUTO=\n")
    root = tmp_path / "root"
    argv = ["--config", str(conf), "install", "--systemd", "--prefix", str(root), "--exe", exe, "--guests", "2"]
    assert cli.main(argv) == 0
    unit = root / UNIT_PATH
    k = unit_keys(unit.read_text())
    assert k["ExecStop"] == [f"{exe} --config {conf} stop"]
    # 2 guests x shutdown 30 s + shutdown-all 30 s + 120 s margin
    assert k["TimeoutStopSec"] == [f"{2 * 30 + 30 + 120}s"]
    assert "installed" in capsys.readouterr().out
    assert cli.main(argv) == 0
    assert "unchanged" in capsys.readouterr().out
    unit.write_text(unit.read_text() + "# mine\n")
    assert cli.main(argv) == 1
    assert str(unit) in capsys.readouterr().err
    assert cli.main(argv + ["--force"]) == 0


def test_the_install_verb_rejects_both_init_systems_at_once(tmp_path, capsys):
    assert cli.main(["install", "--systemd", "--sysv", "--prefix", str(tmp_path)]) == 2
    assert "not allowed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_install_verb_refuses_a_malformed_config(tmp_path, exe, capsys):
    conf = tmp_path / "bad.conf"
    conf.write_text("XENDOMAINS_STOP_MAXWAIT=soon\n")
    assert cli.main(["--config", str(conf), "install", "--sysv", "--prefix", str(tmp_path / "r"), "--exe", exe]) == 6
    assert "STOP_MAXWAIT" in capsys.readouterr().err


def test_the_command_written_into_the_files_is_an_absolute_executable():
    from xdcore.install import find_executable

    cmd = find_executable()
    assert os.path.isabs(cmd[0]) and os.access(cmd[0], os.X_OK)
    assert cmd[1:] in ([], ["-m", "xdcore.cli"])


@pytest.mark.parametrize("where", ["config", "prefix"])
@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x85"])
def test_control_characters_in_a_path_are_refused_before_anything_is_written(tmp_path, exe, capsys, where, char):
    conf = tmp_path / f"xen{char}ExecStartPre=touch pwned.conf"
    conf.write_text("XENDOMAINS_STOP_MAXWAIT=30\n")
    prefix = tmp_path / (f"root{char}x" if where == "prefix" else "root")
    config = conf if where == "config" else tmp_path / "plain.conf"
    config.touch()
    assert cli.main(["--config", str(config), "install", "--systemd", "--prefix", str(prefix), "--exe", exe]) == 2
    err = capsys.readouterr().err
    assert "control characters" in err and "Traceback" not in err
    assert not prefix.exists() and not (tmp_path / "root").exists()


@pytest.mark.parametrize("maxwait,guests", [(10**15, 16), (10**13, 10**6)])
def test_a_timeout_larger_than_systemd_parses_becomes_infinity_not_its_90_second_default(tmp_path, exe, maxwait, guests):
    from xdcore.install import SYSTEMD_MAX_TIMEOUT_S

    cfg = Config(stop_maxwait=maxwait, auto_dir=None)
    t = compute_timeouts(cfg, guests)
    assert t.stop is None and t.start is None
    assert "systemd accepts" in t.stop_formula and str(SYSTEMD_MAX_TIMEOUT_S) in t.stop_formula
    text = render_unit(cfg, [exe], None, guests)
    k = unit_keys(text)
    assert k["TimeoutStopSec"] == ["infinity"] and k["TimeoutStartSec"] == ["infinity"]
    just = compute_timeouts(Config(stop_maxwait=1, auto_dir=None, stop_deadline=SYSTEMD_MAX_TIMEOUT_S - 200), 1)
    assert just.stop is not None and just.stop <= SYSTEMD_MAX_TIMEOUT_S  # the largest finite value still is one
    if shutil.which("systemd-analyze"):
        for value in (f"{SYSTEMD_MAX_TIMEOUT_S}s", "infinity"):
            assert subprocess.run(["systemd-analyze", "timespan", value], capture_output=True).returncode == 0
        assert subprocess.run(["systemd-analyze", "timespan", f"{SYSTEMD_MAX_TIMEOUT_S + 1}s"],
                              capture_output=True).returncode != 0
