"""Stop always evacuates: the installed `xendomains` in bad environments and with bad inputs.

A host going down is exactly when a config is broken, a lock path is wrong,
a disk is full or a guest has an odd name.  Each test below builds one such
environment on the simulated host and checks that `stop` still evacuates
every guest and says what was wrong, while `start`/`status` refuse clearly.

Where a test needs the *documented default paths* (the config could not be
read, so nothing else names a path), `xendomains` runs in a private mount
namespace whose /run and /var/lib are this test's directories, bound over
the real ones: the defaults are exercised for real and nothing of the host
is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xdcore import events as ev

from .helpers import RUN_TIMEOUT, E2EHost, Result, image_is_complete, parse_events, xendomains_exe


def no_traceback(res: Result) -> None:
    assert "Traceback" not in res.stderr, res.describe()


# -- running with the documented default paths, in a private mount namespace -------------------------------


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m (private mount namespace)")


class DefaultPaths:
    """/run and /var/lib of a private mount namespace, kept as directories of the test."""

    def __init__(self, root: Path):
        self.run = root / "ns-run"
        self.varlib = root / "ns-varlib"
        for d in (self.run / "lock", self.varlib):
            d.mkdir(parents=True)

    @property
    def save_dir(self) -> Path:
        return self.varlib / "xen" / "save"

    @property
    def lock(self) -> Path:
        return self.run / "lock" / "xendomains"

    @property
    def report(self) -> Path:
        return self.varlib / "xendomains" / "last-stop.json"


def run_with_default_paths(h: E2EHost, paths: DefaultPaths, config: Path, *args: str) -> Result:
    """`xendomains --config CONFIG --json ARGS` with /run and /var/lib bound to `paths` (the defaults' homes)."""
    script = ('mount --bind "$1" /run && mount --bind "$2" /var/lib && shift 2 && '
              'test ! -L /var/lock -o -d /var/lock && exec "$@"')
    argv = [xendomains_exe(), "--config", str(config), "--json", *args]
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                           str(paths.run), str(paths.varlib), *argv],
                          capture_output=True, text=True, env=h.env(), timeout=RUN_TIMEOUT)
    return Result(argv, done.returncode, done.stdout, done.stderr, parse_events(done.stdout))


def _unreadable_config(h: E2EHost, how: str) -> Path:
    if how == "directory":
        d = h.root / "conf.d"
        d.mkdir()
        return d
    if how == "fifo":  # nobody ever writes to it: a blocking open would hang the shutdown forever
        f = h.root / "conf.fifo"
        os.mkfifo(f)
        return f
    if how == "eio":  # a regular file whose read fails with EIO (root is never denied, but I/O can fail)
        return Path("/proc/self/mem")
    raise AssertionError(how)


@needs_namespace
@pytest.mark.parametrize("how", ["directory", "fifo", "eio"])
def test_an_unreadable_config_still_evacuates_every_guest_with_the_defaults_and_exits_1(tmp_path, how):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    paths = DefaultPaths(tmp_path)
    config = _unreadable_config(h, how)

    res = run_with_default_paths(h, paths, config, "stop")

    assert res.returncode == 1, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}  # XENDOMAINS_SAVE's default: /var/lib/xen/save
    assert h.running() == set()
    assert all(image_is_complete(paths.save_dir / n) for n in ("web01", "db"))
    assert not os.path.lexists(paths.lock)
    loud = [m for m in res.messages("error") if str(config) in m.text and "defaults" in m.text]
    assert loud, res.describe()
    assert "WARNING" in res.stderr and str(config) in res.stderr
    assert ev.RunFinished in {type(e) for e in res.events} and res.of(ev.RunFinished)[-1].exit_code == 1
    assert str(config) in paths.report.read_text()  # the report keeps the reason for the admin
    no_traceback(res)


@pytest.mark.parametrize("how", ["directory", "fifo", "eio"])
@pytest.mark.parametrize("verb", ["start", "status"])
def test_an_unreadable_config_makes_start_and_status_refuse_with_exit_6_naming_it(tmp_path, how, verb):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)], saved=[("db", 512, 1)], auto=["db"])
    config = _unreadable_config(h, how)

    done = subprocess.run([xendomains_exe(), "--config", str(config), verb], capture_output=True, text=True,
                          env=h.env(), timeout=RUN_TIMEOUT)

    assert done.returncode == 6, done.stderr
    assert str(config) in done.stderr and "refusing" in done.stderr
    assert "Traceback" not in done.stderr
    assert h.running() == {"web01"} and h.image_of("db").exists()


# -- config values: bounded expansion, bytes that are not UTF-8 -----------------------------------------------


def test_a_710_byte_config_that_doubles_a_value_40_times_is_a_file_line_error_and_stop_evacuates(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    base = "".join(f"{k}='{v}'\n" for k, v in h.settings.items() if k != "XENDOMAINS_MIGRATE")
    bomb = "A=x\n" + "A=$A$A\n" * 40 + 'XENDOMAINS_MIGRATE="$A"\n'
    h.write_config(base + bomb)
    line = 1 + base.count("\n") + 42  # the header line, the base settings, A=x, 40 doublings, then the key

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}  # XENDOMAINS_MIGRATE kept its default: no migrate
    assert h.history("migrate") == []
    assert f"{h.config}:{line}: XENDOMAINS_MIGRATE: expected a value of at most 65536 characters" in res.text()
    no_traceback(res)

    start = h.run("start")
    assert start.returncode == 6 and f"{h.config}:{line}: XENDOMAINS_MIGRATE" in start.stderr


def test_bytes_that_are_not_utf8_in_a_value_are_a_file_line_error_never_silently_replaced(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)])
    base = "".join(f"{k}='{v}'\n" for k, v in h.settings.items()).encode()
    h.config.write_bytes(b"# written by tests/e2e\n" + base + b"XENDOMAINS_SYSRQ='s\xff'\n# caf\xe9 au lait\n")
    line = 2 + base.count(b"\n")

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    said = res.text()
    assert f"{h.config}:{line}: XENDOMAINS_SYSRQ: expected UTF-8 text" in said and "\\xff" in said
    assert f"{h.config}:{line + 1}: bytes that are not UTF-8" in said  # a comment: only a warning
    assert h.history("sysrq") == [], "the key kept its default (no SysRq) instead of a replaced character"
    assert res.outcomes == {"web01": "saved"}
    assert "\ufffd" not in res.stdout + res.stderr
    start = h.run("start")
    assert start.returncode == 6 and f"{h.config}:{line}: XENDOMAINS_SYSRQ" in start.stderr


# -- the lock path cannot hold a lock ------------------------------------------------------------------------


def _unusable_lock(h: E2EHost, how: str) -> None:
    if how == "directory":
        h.lock.mkdir(parents=True)
    elif how == "fifo":  # opening it blocking would hang: it is never opened
        h.lock.parent.mkdir(parents=True)
        os.mkfifo(h.lock)
    elif how == "parent is a file":  # its directory cannot be created
        blocker = h.root / "not-a-dir"
        blocker.write_text("a file where the lock's directory should be\n")
        h.lock = blocker / "xendomains"
        h.configure(XENDOMAINS_LOCKFILE=str(h.lock))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["directory", "fifo", "parent is a file"])
def test_a_lock_path_that_cannot_hold_a_lock_does_not_stop_the_evacuation(tmp_path, how):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    _unusable_lock(h, how)

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    assert h.running() == set()
    warned = res.message_about(str(h.lock), "without the lock")
    assert warned.level == "warning"
    cleanup = [e for e in res.of(ev.StageFinished) if e.stage == "cleanup"]
    assert cleanup and "left alone" in cleanup[0].detail
    if how == "directory":
        assert h.lock.is_dir()  # never removed: it is not ours
    no_traceback(res)


@pytest.mark.parametrize("how", ["directory", "fifo", "parent is a file"])
def test_start_refuses_a_lock_path_that_cannot_hold_a_lock_and_names_it(tmp_path, how):
    h = E2EHost.make(tmp_path, saved=[("web01", 512, 1)], auto=["web01"])
    _unusable_lock(h, how)

    res = h.run("start")

    assert res.returncode == 1, res.describe()
    res.message_about(str(h.lock), "lock")
    assert h.running() == set() and h.image_of("web01").exists()
    no_traceback(res)


@pytest.mark.parametrize("text", ["stopping 1\n", "starting 1\n", f"stopping {os.getpid()}\n"])
def test_a_lock_whose_flock_is_free_is_stale_whatever_pid_it_names(tmp_path, text):
    h = E2EHost.make(tmp_path, saved=[("web01", 512, 1)], auto=["web01"])
    h.lock.parent.mkdir(parents=True)
    h.lock.write_text(text)  # PID 1 and this test's PID are alive: only the flock can tell

    res = h.run("start")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "restored"}
    res.message_about(str(text.split()[1]), "stale lock")
    assert h.running() == {"web01"}
    assert h.lock.read_text().split()[0] == "started"


def test_a_started_service_with_a_free_flock_is_still_started(tmp_path):
    h = E2EHost.make(tmp_path, saved=[("web01", 512, 1)], auto=["web01"])
    h.lock.parent.mkdir(parents=True)
    h.lock.write_text("started 1\n")

    res = h.run("start")

    assert res.returncode == 0 and res.outcomes == {}, res.describe()
    assert "already running" in res.text()
    assert h.image_of("web01").exists()


# -- the progress directory's file system is full --------------------------------------------------------------


@pytest.fixture
def full_progress_dir(tmp_path):
    """An E2EHost whose progress directory (and so its reports and throughputs) is a 64 KiB tmpfs."""
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    mnt = h.progress.parent
    mnt.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "xdfull", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); tests/core/test_report.py injects ENOSPC instead")
    try:
        yield h, mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave_kib: int) -> None:
    with open(mnt / "filler", "wb") as f:
        try:
            f.write(b"\0" * ((64 - leave_kib) * 1024))
            f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("leave_kib", [0, 8])
def test_a_full_progress_file_system_warns_and_never_changes_the_outcome(full_progress_dir, leave_kib):
    h, mnt = full_progress_dir
    h.sim("latency", "save", "0.05")
    _fill(mnt, leave_kib)  # 0: nothing can be written; 8: the first events fit, later ones do not

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    assert h.running() == set() and h.has_valid_image("web01") and h.has_valid_image("db")
    assert "No space left on device" in res.stderr and "warning" in res.stderr
    if leave_kib == 0:
        for what in ("progress file", "run report", "measured throughputs"):
            assert f"cannot write the {what}" in res.stderr or f"cannot store the {what}" in res.stderr, what
    left = sorted(p.name for p in mnt.iterdir())
    assert [n for n in left if n.startswith(".")] == [], f"temporary files left behind: {left}"
    assert "control.sock" not in left, "the control socket was not closed"
    for line in (mnt / "progress.jsonl").read_text().splitlines() if (mnt / "progress.jsonl").exists() else []:
        ev.from_json(line)  # whatever was written is whole lines
    h.assert_lock_gone()
    no_traceback(res)


# -- names that break the plain listing ------------------------------------------------------------------------


def _add_named(h: E2EHost, name: str, memory_mib: int = 256) -> int:
    """A running guest named `name`, written with xl's own escapes (\\n, \\t …) in its config's name string."""
    from xdcore.sim.testing import add_domain, config_of

    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}
    escaped = "".join(escapes.get(c, c) for c in name)
    path = h.layout.configs_dir / f"odd-{len(list(h.layout.configs_dir.glob('odd-*')))}.cfg"
    path.write_text(f'name = "{escaped}"\ntype = "pvh"\nkernel = "/boot/vmlinuz"\nmemory = {memory_mib}\nvcpus = 1\n')
    return add_domain(h.state, config_of(path), config_path=str(path))


#: a newline that makes the rest look like Domain-0's row, one that fakes web01's row, and other separators
BREAKING_NAMES = [
    "evil\n  0  512  1  r-----  1.0",
    "line1\nweb01                                        1   512     1     -b----       0.0",
    "tab\tname",
    "vt\x0bff\x0cname",
    "ls\u2028ps\u2029nel\x85",
    "cr\rname",
]


def test_names_that_break_the_plain_listing_are_read_from_xl_list_l_and_every_guest_is_evacuated(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_PARALLEL=3)
    ids = {n: _add_named(h, n) for n in BREAKING_NAMES}
    assert "web01" in h.xl("list").stdout.split("\n", 3)[2]  # the listing really is ambiguous line by line

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {n: "saved" for n in ["web01", "db", *BREAKING_NAMES]}
    planned = {e.guest: e.domid for e in res.of(ev.GuestPlanned)}
    assert {n: planned[n] for n in BREAKING_NAMES} == ids  # each command went to the right domid
    saves = [x["argv"] for x in h.history("save")]
    assert sorted(int(a[2]) for a in saves) == sorted(planned.values())
    assert h.running() == set()
    assert all(h.has_valid_image(n) for n in BREAKING_NAMES)
    h.assert_save_dir_clean()
    h.assert_lock_gone()
    no_traceback(res)

    boot = h.run("start")

    assert boot.returncode == 0, boot.describe()
    assert boot.outcomes == {n: "restored" for n in ["web01", "db", *BREAKING_NAMES]}
    assert h.running() == {"web01", "db", *BREAKING_NAMES}
    status = h.run("status")
    assert status.returncode == 0, status.describe()


# -- reports: a run that never finished is said so; the verdict agrees with the exit code ---------------------


def _report(h: E2EHost, verb: str = "stop") -> dict:
    import json

    return json.loads((h.progress.parent / f"last-{verb}.json").read_text())


def _status(h: E2EHost) -> tuple[Result, dict]:
    import json

    res = h.run("status")
    line = next(l for l in res.stdout.splitlines() if '"event": "status"' in l)
    return res, json.loads(line)


def test_a_killed_stop_is_reported_as_unfinished_and_status_never_reconciles_the_stop_before_it(tmp_path):
    import signal

    from tests.support import wait_for

    from .helpers import kill_xl_children, read_progress

    names = ["g1", "g2", "g3"]
    h = E2EHost.make(tmp_path, guests=[(n, 512, 1) for n in names], auto=names, XENDOMAINS_STOP_MAXWAIT=30)
    assert h.run("stop").returncode == 0 and h.run("start").returncode == 0  # a previous, finished stop
    previous = _report(h)["run"]
    h.sim("latency", "save", "1.0")

    proc = h.popen("stop")
    try:
        def first_saved():
            return [e for e in read_progress(h.progress) if isinstance(e, ev.GuestFinished) and e.outcome == "saved"]
        wait_for(first_saved, what="the first guest saved")
        during = _status(h)[1]["reconcile"]
        assert during["run"] != previous and during["stop_in_progress"] is True
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    kill_xl_children(h.layout.bin_dir)
    saved = first_saved()[0].guest

    report = _report(h)
    assert report["run"] != previous and report["exit_code"] is None and report["finished_at"] is None
    assert "did not finish" in report["summary"]
    assert {g["guest"]: g["outcome"] for g in report["guests"]}[saved] == "saved"
    res, status = _status(h)
    rec = status["reconcile"]
    assert rec["run"] == report["run"] and rec["stop_finished"] is False and rec["stop_in_progress"] is False
    human = h.run("status", json_out=False)
    assert "THE LAST STOP DID NOT FINISH" in human.stdout, human.stdout
    assert f"{saved}" in human.stdout
    said = h.run("report", json_out=False)
    assert "did not finish" in said.stdout


def test_after_sigint_the_report_and_the_exit_code_agree_and_never_say_nothing_to_do(tmp_path):
    import signal

    from tests.support import wait_for

    from .helpers import read_progress

    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_STOP_MAXWAIT=30)
    h.sim("latency", "save", "1.0")
    proc = h.popen("stop", json_out=False)
    try:
        wait_for(lambda: any(isinstance(e, ev.CommandStarted) for e in read_progress(h.progress)), what="a save")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode != 0, err
    report = _report(h)
    assert report["exit_code"] == proc.returncode, (report, proc.returncode)
    assert report["summary"] and "nothing to do" not in report["summary"]
    finished = [e for e in read_progress(h.progress) if isinstance(e, ev.RunFinished)]
    assert [e.exit_code for e in finished] == [proc.returncode]
    assert "nothing to do" not in out and "[done]" not in out
    assert "Traceback" not in err


def test_a_fifo_where_a_guest_policy_file_belongs_never_blocks_the_stop(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)])
    policies = tmp_path / "policy.d"
    policies.mkdir()
    os.mkfifo(policies / "web01")  # nobody writes to it: a blocking read would hang the shutdown
    h.configure(XENDOMAINS_POLICY_DIR=str(policies))

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    res.message_about("web01", str(policies / "web01"), "regular file")
    assert h.running() == set()
    no_traceback(res)


@pytest.mark.parametrize("verb", ["stop", "start", "status"])
def test_a_fifo_planted_in_the_save_journal_never_blocks_a_verb(tmp_path, verb):
    from xdcore.savedir import journal_dir

    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1)])
    jdir = journal_dir(h.save_dir)
    jdir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(jdir / "ghost.json")  # nobody writes to it

    res = h.run(verb)

    assert res.returncode in (0, 1, 3), res.describe()
    if verb == "stop":
        assert res.outcomes == {"web01": "saved"} and h.running() == set()
    no_traceback(res)


@pytest.mark.parametrize("text", ['{"save_mbps": 0}', '{"save_mbps": NaN, "shutdown_s": -Infinity}', "[1, 2]", "{"])
def test_a_corrupt_throughput_file_never_stops_the_evacuation(tmp_path, text):
    h = E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("db", 512, 1)], XENDOMAINS_STOP_DEADLINE=600)
    h.progress.parent.mkdir(parents=True, exist_ok=True)
    (h.progress.parent / "throughput.json").write_text(text)

    res = h.run("stop")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    no_traceback(res)
