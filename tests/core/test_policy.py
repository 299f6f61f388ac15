"""Per-guest policy read from the guest's xl config (keys xl ignores) and POLICY_DIR/GUEST overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdcore.config import parse_config
from xdcore.policy import NO_GATE, Gate, GuestPolicy, load_policies, parse_duration, read_policy

BASE = """\
name = "db"
type = "pvh"
kernel = "/boot/vmlinuz"
memory = 1024
disk = [ 'phy:/dev/vg0/db,xvda,w', 'format=raw, vdev=xvdb, access=rw, backend=stor1, target=/dev/sdb' ]
vif = [ 'bridge=xenbr0,backend=net1', 'bridge=xenbr1' ]
"""


def write(tmp_path: Path, text: str, name: str = "db.cfg") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_no_policy_keys_gives_the_defaults_and_the_backends(tmp_path):
    p = read_policy("db", write(tmp_path, BASE), None)
    assert p.ok and p.is_default
    assert p.order is None and p.up_wait == NO_GATE and p.stop_stages is None and p.priority == 0
    assert p.ready_key == "data/ready" and p.ready_fail == "go"
    assert p.backends == ("stor1", "net1")


def test_every_key_is_read(tmp_path):
    text = BASE + """\
xendomains_order = 10
xendomains_up_wait = "ready"
xendomains_down_wait = 120
xendomains_stop = "migrate, shutdown"
xendomains_priority = 2
xendomains_ready_key = "data/db-ready"
xendomains_ready_cmd = [ "/usr/local/bin/db-ready", "--quiet" ]
xendomains_ready_fail = "wait"
xendomains_targets = [ "hostb", "hostc" ]
xendomains_apart = "db2, db"
"""
    cfg = write(tmp_path, text)
    p = read_policy("db", cfg, None)
    assert p.ok, p.problems
    assert p.order == 10 and p.up_wait == Gate("ready") and p.down_wait == 120.0
    assert p.stop_stages == ("migrate", "shutdown") and p.priority == 2
    assert p.ready_key == "data/db-ready" and p.ready_cmd == ("/usr/local/bin/db-ready", "--quiet")
    assert p.ready_fail == "wait" and p.targets == ("hostb", "hostc") and p.apart == ("db2",)
    assert p.where["order"] == f"{cfg}:7"
    assert p.stop_order(["sysrq", "migrate", "save", "shutdown"]) == ["migrate", "shutdown"]
    assert not p.allows("save")


@pytest.mark.parametrize("text,secs", [("30", 30), ("30s", 30), ("2m", 120), ("1m30s", 90), ("1.5h", 5400)])
def test_durations(text, secs):
    assert parse_duration(text) == secs


def test_a_delay_gate(tmp_path):
    p = read_policy("db", write(tmp_path, BASE + 'xendomains_up_wait = "30s"\n'), None)
    assert p.up_wait == Gate("delay", 30.0) and str(p.up_wait) == "wait 30s"


def test_unknown_and_malformed_keys_are_file_line_errors_and_keep_defaults(tmp_path):
    cfg = write(tmp_path, BASE + 'xendomains_ordr = 3\nxendomains_order = "soon"\nxendomains_stop = "save, fly"\n'
                'xendomains_priority = 4\n')
    p = read_policy("db", cfg, None)
    msgs = [str(e) for e in p.problems]
    assert len(msgs) == 3, msgs
    assert msgs[0].startswith(f"{cfg}:7: xendomains_ordr: expected a known policy key (did you mean xendomains_order?)")
    assert msgs[1] == f"{cfg}:8: xendomains_order: expected an integer, got 'soon'"
    assert msgs[2].startswith(f"{cfg}:9: xendomains_stop: expected stage names among sysrq, migrate, save, shutdown")
    assert p.order is None and p.stop_stages is None and p.priority == 4  # good keys still read
    assert p.defaults().priority == 0 and p.defaults().ok


def test_override_file_wins_and_serves_guests_without_config(tmp_path):
    pdir = tmp_path / "xendomains.d"
    pdir.mkdir()
    (pdir / "db").write_text("xendomains_order = 5\nxendomains_up_wait = \"ready\"\n")
    (pdir / "orphan").write_text("xendomains_stop = \"shutdown\"\n")
    cfg = write(tmp_path, BASE + "xendomains_order = 10\nxendomains_priority = 1\n")
    pols = load_policies({"db": cfg, "orphan": None, "plain": None}, pdir)
    assert pols["db"].order == 5 and pols["db"].priority == 1 and pols["db"].up_wait.kind == "ready"
    assert pols["db"].sources == (str(cfg), str(pdir / "db"))
    assert pols["orphan"].stop_stages == ("shutdown",)
    assert pols["plain"].is_default and pols["never-read"] == GuestPolicy("never-read")


def test_override_file_with_bad_syntax_is_a_problem(tmp_path):
    pdir = tmp_path / "d"
    pdir.mkdir()
    (pdir / "db").write_text("xendomains_order = 5\nxendomains_stop = = \n")
    p = read_policy("db", None, pdir)
    assert not p.ok and str(p.problems[0]).startswith(f"{pdir / 'db'}:2: syntax:")


def test_guest_config_with_bad_syntax_warns_only(tmp_path):
    p = read_policy("db", write(tmp_path, "name = \"db\"\nmemory = = 3\nxendomains_order = 1\n"), None)
    assert p.ok and p.warnings and "policy keys of this file not read" in p.warnings[0]
    # a file with no policy text is not parsed at all (xl create reports its syntax error)
    q = read_policy("db", write(tmp_path, "name = \"db\"\nmemory = = 3\n", "plain.cfg"), None)
    assert q.ok and not q.warnings and q.is_default


def test_policy_names_cannot_escape_the_directory(tmp_path):
    (tmp_path / "secret").write_text("xendomains_order = 1\n")
    p = read_policy("../secret", None, tmp_path / "d")
    assert p.order is None and p.sources == ()


def test_config_keys_for_policy():
    c = parse_config("XENDOMAINS_POLICY_DIR=/srv/pol\nXENDOMAINS_START_MAXWAIT=0\n", "/x")
    assert c.policy_dir == Path("/srv/pol") and c.start_maxwait == 0 and not c.problems
    d = parse_config("", "/x")
    assert d.policy_dir == Path("/etc/xen/xendomains.d") and d.start_maxwait == 300


def test_policy_configs_names_only_files_that_could_hold_policy(tmp_path):
    from xdcore.policy import policy_configs

    a = write(tmp_path, BASE, "a.cfg")
    b = write(tmp_path, 'name = "plain"\nmemory = 3\n', "b.cfg")
    c = write(tmp_path, 'name = "ordered"\nxendomains_order = 3\n', "c.cfg")
    assert policy_configs([a, b, c, tmp_path / "missing.cfg"]) == {"db": a, "ordered": c}
