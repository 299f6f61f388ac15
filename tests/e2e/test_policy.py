"""Boot order, readiness gates and per-guest policy, end to end on the simulator.

Witnesses: the run's --json events, the simulated host's history (`xdsim
history`: when each xl command started and ended) and the XenStore nodes the
simulated xenstored serves.
"""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.helpers import E2EHost
from tests.xenstore.conftest import needs_lib, start_server
from xdcore import events as ev
from xdcore.sim.testing import guest_config_text


def add_config(h: E2EHost, name: str, policy: str = "", mem: int = 256, extra: str = "", auto: bool = True):
    """A guest config in the configs dir (with policy lines and device specs), linked into auto/."""
    text = guest_config_text(name, mem, 1)
    if extra:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("disk", "vif"))) + "\n" + extra + "\n"
    path = h.layout.configs_dir / f"{name}.cfg"
    path.write_text(text + policy)
    h.layout.configs[name] = path
    if auto:
        (h.layout.auto_dir / f"{name}.cfg").symlink_to(path)
    return path


@pytest.fixture
def serve(tmp_path):
    """serve(host): a simulated xenstored mirroring that host; the env to run xendomains with it."""
    servers = []

    def start(h: E2EHost) -> dict[str, str]:
        server = start_server(h.state, tmp_path / "xs.sock")
        servers.append(server)
        return {**h.env(), "XENSTORED_PATH": str(server.socket)}

    yield start
    for s in servers:
        s.stop()


def creates(h: E2EHost) -> dict[str, dict]:
    """guest -> its `xl create` history entry (t: started, end: finished)."""
    out = {}
    for e in h.history("create"):
        name = e["argv"][-1].rsplit("/", 1)[-1].removesuffix(".cfg")
        out[name] = e
    return out


@needs_lib
def test_three_ordered_groups_start_each_when_the_previous_is_ready(tmp_path, serve):
    h = E2EHost.make(tmp_path)
    add_config(h, "web", "xendomains_order = 30\n")
    add_config(h, "app1", 'xendomains_order = 20\nxendomains_up_wait = "1s"\n')
    add_config(h, "app2", 'xendomains_order = 20\nxendomains_up_wait = "1s"\n')
    add_config(h, "db", 'xendomains_order = 10\nxendomains_up_wait = "ready"\n')
    add_config(h, "misc")
    h.sim("ready", "db", "after", "1.5")
    env = serve(h)
    r = h.run("start", env=env)
    assert r.returncode == 0, r.describe()
    assert r.outcomes == {n: "created" for n in ("db", "app1", "app2", "web", "misc")}
    groups = [e.guests for e in r.of(ev.GroupStarted)]
    assert groups == [("db",), ("app1", "app2"), ("web",), ("misc",)]
    gates = {e.guest: e for e in r.of(ev.GateFinished)}
    assert gates["db"].outcome == "open" and "data/ready" in gates["db"].detail
    assert gates["app1"].outcome == "open" and gates["app2"].outcome == "open"
    c = creates(h)
    # db's agent says ready 1.5 s after db started; only then do app1 and app2 start
    assert min(c["app1"]["t"], c["app2"]["t"]) >= c["db"]["t"] + 1.5
    # the apps' gate is a plain 1 s wait after both are up
    assert c["web"]["t"] >= max(c["app1"]["end"], c["app2"]["end"]) + 1.0
    assert c["misc"]["t"] >= c["web"]["end"]


@needs_lib
def test_a_gate_that_never_opens_ends_after_start_maxwait_and_the_next_group_starts(tmp_path, serve):
    h = E2EHost.make(tmp_path, XENDOMAINS_START_MAXWAIT=1)
    add_config(h, "db", 'xendomains_order = 10\nxendomains_up_wait = "ready"\n')
    add_config(h, "app", "xendomains_order = 20\n")
    env = serve(h)
    r = h.run("start", env=env)
    assert r.returncode == 0, r.describe()
    assert r.outcomes == {"db": "created", "app": "created"}
    gate = r.of(ev.GateFinished)[0]
    assert gate.guest == "db" and gate.outcome == "timeout" and gate.elapsed >= 1.0
    r.message_about("db", "up, not ready", "next group starts anyway")
    c = creates(h)
    assert c["app"]["t"] >= c["db"]["end"] + 1.0


@needs_lib
def test_ready_fail_wait_holds_the_later_groups(tmp_path, serve):
    h = E2EHost.make(tmp_path, XENDOMAINS_START_MAXWAIT=1)
    add_config(h, "db", 'xendomains_order = 10\nxendomains_up_wait = "ready"\nxendomains_ready_fail = "wait"\n')
    add_config(h, "app", "xendomains_order = 20\n")
    r = h.run("start", env=serve(h))
    assert r.returncode == 1
    assert r.outcomes == {"db": "created", "app": "skipped"}
    assert "app" not in creates(h) and h.running() == {"db"}


def test_a_ready_command_opens_the_gate(tmp_path):
    h = E2EHost.make(tmp_path, XENDOMAINS_START_MAXWAIT=20)
    flag = tmp_path / "db-is-ready"
    script = tmp_path / "db-ready"
    script.write_text(f'#!/bin/sh\n[ "$XENDOMAINS_GUEST" = db ] && [ -e {flag} ]\n')
    script.chmod(0o755)
    add_config(h, "db", f'xendomains_order = 1\nxendomains_up_wait = "ready"\nxendomains_ready_cmd = ["{script}"]\n')
    add_config(h, "app", "xendomains_order = 2\n")
    proc = h.popen("start", env={**h.env(), "XENSTORED_PATH": str(tmp_path / "no-xenstored")})
    from tests.support import wait_for

    wait_for(lambda: "db" in h.running(), what="db to be created")
    assert "app" not in h.running()
    flag.touch()
    r = h.finish(proc)
    assert r.returncode == 0, r.describe()
    gate = r.of(ev.GateFinished)[0]
    assert gate.outcome == "open" and "exited 0" in gate.detail


def test_a_guest_with_a_bad_policy_key_is_refused_alone(tmp_path):
    h = E2EHost.make(tmp_path)
    add_config(h, "db", "xendomains_ordre = 10\n")
    add_config(h, "app")
    r = h.run("start")
    assert r.returncode == 1
    assert r.outcomes == {"db": "failed", "app": "created"}
    m = r.message_about("db", "xendomains_ordre")
    assert m.text.startswith(f"{h.layout.auto_dir / 'db.cfg'}:13: xendomains_ordre:") and "did you mean xendomains_order" in m.text
    assert h.running() == {"app"}
