"""Debian's real xenstore-utils (xenstore-ls/-read/-write/-watch) against the simulated xenstored."""

from __future__ import annotations

import subprocess

from .conftest import needs_utils

pytestmark = needs_utils


def run(server, *argv, check=True):
    return subprocess.run(list(argv), env=server.env(), capture_output=True, text=True, timeout=20, check=check)


def test_xenstore_write_then_read_round_trips(xenstored, base):
    run(xenstored, "xenstore-write", f"{base}/name", "web1", f"{base}/memory/target", "524288")
    assert run(xenstored, "xenstore-read", f"{base}/name").stdout == "web1\n"
    assert run(xenstored, "xenstore-read", f"{base}/memory/target").stdout == "524288\n"


def test_xenstore_read_of_a_missing_path_fails_like_on_a_real_host(xenstored, base):
    out = run(xenstored, "xenstore-read", f"{base}/missing", check=False)
    assert out.returncode == 1
    assert f"couldn't read path {base}/missing" in out.stderr


def test_xenstore_ls_shows_the_tree_with_values_and_permissions(xenstored, base):
    run(xenstored, "xenstore-write", f"{base}/a", "1", f"{base}/b/c", "deep")
    plain = run(xenstored, "xenstore-ls", base).stdout.splitlines()
    assert plain == ['a = "1"', 'b = ""', ' c = "deep"']
    with_perms = run(xenstored, "xenstore-ls", "-p", base).stdout
    assert "(n0)" in with_perms


def test_xenstore_watch_prints_the_initial_event_and_each_change(xenstored, base):
    run(xenstored, "xenstore-write", f"{base}/w", "")
    proc = subprocess.Popen(
        ["xenstore-watch", "-n", "3", f"{base}/w"], env=xenstored.env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == f"{base}/w"  # the immediate first event
        run(xenstored, "xenstore-write", f"{base}/w/x", "1")
        assert proc.stdout.readline().strip() == f"{base}/w/x"
        run(xenstored, "xenstore-rm", f"{base}/w")
        assert proc.stdout.readline().strip() == f"{base}/w"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_xenstore_watch_sees_introduce_domain(xenstored):
    proc = subprocess.Popen(
        ["xenstore-watch", "-n", "1", "@introduceDomain"], env=xenstored.env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "@introduceDomain"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_xenstore_utils_fail_cleanly_without_a_server(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "XENSTORED_PATH": str(tmp_path / "none")}
    out = subprocess.run(["xenstore-read", "/x"], env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and "xs_open" in out.stderr
