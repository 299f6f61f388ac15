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
    report = h.run("report", "start", json_out=False)
    assert "gate: up, not ready" in report.stdout and "order group 1/2 (order 10)" in report.stdout
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


def test_a_driver_domain_starts_first_and_stops_last_without_any_order(tmp_path, serve):
    h = E2EHost.make(tmp_path, XENDOMAINS_SAVE="")
    # ls order puts the clients first; nothing says "order"
    add_config(h, "app", extra="disk = [ 'phy:/dev/vg0/app,xvda,w' ]\nvif = [ 'bridge=xenbr0,backend=zz-netdd' ]")
    add_config(h, "db", extra="disk = [ 'format=raw, vdev=xvda, access=rw, backend=zz-netdd, target=/dev/vg0/db' ]")
    add_config(h, "zz-netdd")
    r = h.run("plan", "start")
    assert r.returncode == 0, r.describe()
    r = h.run("start")
    assert r.returncode == 0, r.describe()
    assert [e.guests for e in r.of(ev.GroupStarted)] == [("zz-netdd",), ("app", "db")]
    c = creates(h)
    assert c["zz-netdd"]["end"] <= min(c["app"]["t"], c["db"]["t"])
    # stop: the driver domain goes down after its clients; here the order comes from the auto configs
    # and, with a xenstored, from the backend tree it serves
    env = serve(h)
    from tests.support import wait_for
    import subprocess

    wait_for(lambda: subprocess.run(["xenstore-ls", f"/local/domain/{h.domains()['zz-netdd'].domid}/backend"],
                                    env=env, capture_output=True).returncode == 0, what="the backend tree")
    r = h.run("stop", env=env)
    assert r.returncode == 0, r.describe()
    assert [e.guests for e in r.of(ev.GroupStarted)] == [("app", "db"), ("zz-netdd",)]
    finished = {e.guest: e.at for e in r.of(ev.GuestFinished)}
    started = {e.guest: e.at for e in r.of(ev.StageStarted) if e.guest}
    assert started["zz-netdd"] >= max(finished["app"], finished["db"])
    shutdowns = h.history("shutdown")
    assert len(shutdowns) == 3 and shutdowns[-1]["t"] >= max(s["end"] for s in shutdowns[:2])


def test_without_the_driver_domain_order_its_clients_could_not_start(tmp_path):
    """The simulator refuses a backend= that is not running, as libxl does: the order is what makes start work."""
    h = E2EHost.make(tmp_path)
    add_config(h, "app", extra="vif = [ 'bridge=xenbr0,backend=netdd' ]", auto=True)
    r = h.xl("create", str(h.layout.configs["app"]))
    assert r.returncode != 0 and "Unable to set nic defaults" in r.stderr


def test_xenstore_backend_tree_orders_stop_even_without_configs(tmp_path, serve):
    h = E2EHost.make(tmp_path, XENDOMAINS_SAVE="", XENDOMAINS_AUTO="")
    for name, extra in (("netdd", ""), ("web", "vif = [ 'bridge=xenbr0,backend=netdd' ]")):
        add_config(h, name, extra=extra, auto=False)
        assert h.xl("create", str(h.layout.configs[name])).returncode == 0
    env = serve(h)
    r = h.run("plan", "stop", env=env, json_out=True)
    import json

    plan = json.loads(r.stdout.strip().splitlines()[-1])
    assert [g["guests"] for g in plan["order"]["groups"]] == [["web"], ["netdd"]]
    assert any("XenStore backend tree" in w for w in plan["order"]["why"]["netdd"])


def test_a_dependency_cycle_is_reported_by_plan_with_exit_1_and_no_run(tmp_path):
    h = E2EHost.make(tmp_path)
    add_config(h, "a", extra="vif = [ 'bridge=xenbr0,backend=b' ]")
    add_config(h, "b", extra="vif = [ 'bridge=xenbr0,backend=a' ]")
    add_config(h, "c")
    r = h.run("plan", "start", json_out=False)
    assert r.returncode == 1
    assert "dependency cycle: a → b → a" in r.stdout and "dependency cycle" in r.stderr
    assert h.history() == [] and not h.lock.exists()


def test_per_guest_stage_lists_and_down_wait(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("db", 256, 1), ("web", 256, 1)], auto=["db", "web"], XENDOMAINS_STOP_MAXWAIT=30)
    with open(h.layout.configs["db"], "a") as f:
        f.write('xendomains_stop = "shutdown"\nxendomains_down_wait = 7\n')
    plan = h.run("plan", "stop", json_out=False)
    assert plan.returncode == 0 and "policy: down: 7s; stop: shutdown" in plan.stdout and "watchdog 7s" in plan.stdout
    r = h.run("stop")
    assert r.returncode == 0, r.describe()
    assert r.outcomes == {"db": "shutdown", "web": "saved"}  # XENDOMAINS_SAVE is set: db is never saved
    assert not h.image_of("db").exists() and h.has_valid_image("web")
    timeouts = {e.guest: e.timeout for e in r.of(ev.StageStarted) if e.stage == "shutdown"}
    assert timeouts == {"db": 7.0}


def test_a_bad_policy_on_stop_warns_and_uses_the_defaults(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("db", 256, 1)], auto=["db"])
    with open(h.layout.configs["db"], "a") as f:
        f.write('xendomains_stop = "teleport"\n')
    r = h.run("stop")
    assert r.returncode == 0 and r.outcomes == {"db": "saved"}
    r.message_about("db", "xendomains_stop", "default policy")


def test_priorities_under_a_deadline(tmp_path):
    h = E2EHost.make(tmp_path, guests=[("low", 512, 1), ("mid", 512, 1), ("high", 512, 1)], auto=["low", "mid", "high"],
                     XENDOMAINS_STOP_DEADLINE=3, XENDOMAINS_STOP_MAXWAIT=300, XENDOMAINS_PARALLEL=1)
    h.sim("latency", "save", "1.2")
    for name, prio in (("high", 10), ("mid", 5)):
        with open(h.layout.configs[name], "a") as f:
            f.write(f"xendomains_priority = {prio}\n")
    r = h.run("stop")
    assert r.returncode == 0, r.describe()
    order = [e.guest for e in r.of(ev.StageStarted) if e.guest and e.stage in ("save", "shutdown")]
    assert order[0] == "high"
    got = r.outcomes
    assert got["high"] == "saved" and got["low"] == "shutdown"


def test_stopping_a_named_driver_domain_warns_about_its_running_clients(tmp_path):
    h = E2EHost.make(tmp_path, XENDOMAINS_SAVE="")
    add_config(h, "netdd")
    add_config(h, "web", extra="vif = [ 'bridge=xenbr0,backend=netdd' ]")
    assert h.run("start").returncode == 0
    r = h.run("stop", "netdd")
    assert r.returncode == 0 and r.outcomes == {"netdd": "shutdown"}
    r.message_about("netdd", "serves devices of web", "keeps running")
    r = h.run("stop", "web")
    assert not [m for m in r.messages("warning") if "serves devices" in m.text]
