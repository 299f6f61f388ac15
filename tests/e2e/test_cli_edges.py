"""The command line's edges as an administrator expects them (issue 13).

A mistyped guest is an error that names it and does nothing; a reader that
goes away (`| head`) ends the output quietly; a restored guest is "restored"
in every place that reports it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

from .helpers import E2EHost


def test_stopping_a_guest_that_does_not_exist_names_it_and_stops_nothing(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 256, 1), ("web02", 256, 1)])

    res = h.run("stop", "web01", "web02", "web0l", json_out=False)

    assert res.returncode == 2, res.describe()
    assert "no such guest: web0l" in res.stderr and "nothing done" in res.stderr
    assert "web01" in res.stderr  # what there is, to compare with
    assert h.running() == {"web01", "web02"}  # nothing stopped, not even the guests that exist
    assert h.history() == []  # no xl save/shutdown/… at all
    assert not h.lock.exists()


def test_planning_a_guest_that_does_not_exist_is_the_same_error(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 256, 1)])

    res = h.run("plan", "stop", "nosuch", json_out=False)

    assert res.returncode == 2, res.describe()
    assert "no such guest: nosuch" in res.stderr
    assert res.stdout == ""
    ok = h.run("plan", "stop", "web01", json_out=False)
    assert ok.returncode == 0 and "web01" in ok.stdout


def test_domain0_is_not_a_guest_to_stop(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 256, 1)])

    res = h.run("stop", "Domain-0", json_out=False)

    assert res.returncode == 2 and "no such guest: Domain-0" in res.stderr
    assert h.running() == {"web01"}


def _into_closed_pipe(h: E2EHost, args: list[str]) -> subprocess.CompletedProcess:
    """`xendomains ARGS | head -0`, made deterministic: the pipe's reader is gone before the first write."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.Popen(h.argv(*args, json_out=False), stdout=w, stderr=subprocess.PIPE, env=h.env(), text=True)
    finally:
        os.close(w)
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, "", err)


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 64, 1), ("web02", 64, 1)], auto=["web01", "web02"])
    for args in (["status"], ["plan", "stop"], ["plan", "start"], ["--json", "status"]):
        res = _into_closed_pipe(h, args)
        assert res.stderr == "", (args, res.stderr)
        assert res.returncode in (0, 1, 3), (args, res.returncode)

    # a stop whose reader went away keeps evacuating (SIGPIPE must not kill it half way)
    res = _into_closed_pipe(h, ["stop"])
    assert res.stderr == "" and res.returncode == 0, res
    assert h.running() == set()
    res = _into_closed_pipe(h, ["report", "stop"])
    assert res.stderr == "" and res.returncode == 0, res
    assert h.run("start").returncode == 0
    res = _into_closed_pipe(h, ["report", "start"])  # `report start | head`
    assert res.stderr == "" and res.returncode == 0, res


def test_head_reads_the_first_lines(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 64, 1)], auto=["web01"])
    done = subprocess.run(f"{shlex.join(h.argv('plan', 'stop', json_out=False))} | head -1", shell=True,
                          capture_output=True, text=True, env=h.env(), timeout=60)
    assert done.stdout.startswith("Plan for stop") and len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_restored_guest_is_restored_everywhere_never_skipped(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 256, 1)], auto=["web01", "wiki"], saved=[("wiki", 256, 1)])

    res = h.run("start")

    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"wiki": "restored"}
    skipped = {e.guest: e.reason for e in res.of(__import__("xdcore.events", fromlist=["GuestSkipped"]).GuestSkipped)}
    assert "wiki" not in skipped and skipped.get("web01") == "already running"
    report = json.loads(h.run("report", "start").stdout)
    assert {g["guest"]: g["outcome"] for g in report["guests"]} == {"wiki": "restored", "web01": "skipped"}
    text = h.run("report", "start", json_out=False).stdout
    wiki = next(line for line in text.splitlines() if line.strip().startswith("wiki"))
    assert "restored" in wiki and "skipped" not in text.split("wiki", 1)[1].split("\n  web01")[0]
    human = h.run("stop", json_out=False)
    assert human.returncode == 0
    h.run("start", json_out=False)  # the human printer: a restored guest has one line, "restored"
    again = h.run("start", json_out=False)  # the lock is there: nothing to do
    assert again.returncode == 0


def test_the_human_start_output_says_restored_once(tmp_path):
    h = E2EHost.make(tmp_path, guests=[], auto=["wiki"], saved=[("wiki", 256, 1)])

    res = h.run("start", json_out=False)

    assert res.returncode == 0, res.describe()
    lines = [line for line in res.stdout.splitlines() if "wiki" in line]
    assert len(lines) == 1 and "restored" in lines[0], res.stdout


# -- wording and the verbs that behave like the others -------------------------------------------------------


def test_report_without_a_config_exits_6_like_every_other_verb(tmp_path):
    h = E2EHost.make(tmp_path, guests=[])
    env = h.env()
    env["XENDOMAINS_CONFIG"] = str(tmp_path / "missing.conf")
    for verb in ("report", "status", "plan"):
        done = subprocess.run([h.argv()[0], verb], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 6, (verb, done.stderr)
        assert "missing.conf" in done.stderr


def test_a_malformed_config_is_refused_in_words(tmp_path):
    h = E2EHost.make(tmp_path, guests=[], XENDOMAINS_STOP_MAXWAIT="soon")
    res = h.run("status", json_out=False)
    assert res.returncode == 6 and "refusing to report the status with a malformed config" in res.stderr


def test_one_guest_is_one_guest(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("web01", 256, 1)])
    first = h.run("plan", "stop", json_out=False).stdout.splitlines()[0]
    assert first.startswith("Plan for stop (1 guest, 1 at a time, about ")


def test_install_into_a_prefix_says_which_init_system_and_what_to_run_next(tmp_path):
    h = E2EHost.make(tmp_path, guests=[])
    done = subprocess.run([*h.argv(json_out=False), "install", "--prefix", str(tmp_path / "root")],
                          capture_output=True, text=True, env=h.env(), timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "run/systemd/system does not exist: writing the SysV init script" in out
    assert f"the service runs {h.argv()[0]} --config {h.config}" in out  # the absolute path of this install
    assert "next (on the system that boots from" in out and "update-rc.d xendomains defaults" in out
    script = (tmp_path / "root" / "etc" / "init.d" / "xendomains").read_text()
    assert h.argv()[0] in script


def test_the_migration_prompt_suggests_only_what_xl_takes():
    import inspect

    from xdtui.screens import dialogs

    text = inspect.getsource(dialogs)
    assert "--live host2" not in text and "ssh -p 2222" in text
