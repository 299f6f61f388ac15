"""Where an estimate comes from (issue 13): measured runs, else a simulated host's own figures, else assumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xdcore import events as ev
from xdcore import savedir
from xdcore.config import Config
from xdcore.model import Domain
from xdcore.plan import ThroughputRecorder, Throughputs, estimator, simulated_state_dir, simulated_throughputs
from xdcore.sim import host as simhost
from xdcore.sim.inprocess import SimToolstack
from xdcore.sim.testing import make_host, write_shims


def test_a_real_host_before_its_first_run_says_assumed_and_after_it_measured():
    assert estimator(Config(), Throughputs()).source == "assumed"
    t = Throughputs()
    t.observe("shutdown", 0, 3.0)
    est = estimator(Config(), t)
    assert est.source_of("shutdown") == "measured" and est.source_of("save") == "assumed"
    assert est.source_for(["shutdown"]) == "measured"
    assert est.source_for(["save", "shutdown"]) == "measured + assumed"  # only what a run measured says measured
    assert est("shutdown", Domain(3, "web01")) == pytest.approx(3.0)  # the first sample replaces the default
    t.observe("shutdown", 0, 4.0)
    assert est("shutdown", Domain(3, "web01")) == pytest.approx(0.7 * 3.0 + 0.3 * 4.0)  # later ones are smoothed


def test_each_stage_is_measured_on_its_own_a_restore_after_the_first_stop_is_still_the_hosts_figure(tmp_path):
    state = simhost.init_state(tmp_path / "host", fast=True)
    with simhost.transaction(state) as st:
        st.latency.update({"save": 0.5, "restore": 1.0, "shutdown": 3.0, "ack": 0.2})
        st.rate.update({"save": 600.0, "restore": 1200.0})
        st.resources["disk"] = 500.0
    stored = Throughputs()
    stored.observe_resource("save", 4096, 8.0)  # the first stop measured the disk's writes: 512 MB/s
    stored.observe("shutdown", 0, 3.5)
    est = estimator(Config(), stored, toolstack=SimToolstack(state))
    big = Domain(-1, "db", memory_mib=5000)
    assert est.source_of("save") == "measured" and est("save", big) == pytest.approx(5000 / 512 + 0.5)
    assert est.source_of("restore") == "simulated"  # no restore has run: the host's own read speed, not a default
    assert est("restore", big) == pytest.approx(5000 / 500 + 1.0)
    assert est.source_for(["restore", "create"]) == "simulated"
    assert est.source_for(["save", "shutdown"]) == "measured"
    assert "restore: disk 500 MB/s + 1.0s (simulated)" in est.basis(["restore"])
    stored.observe_resource("restore", 5000, 5.0)
    assert est.source_of("restore") == "measured" and est("restore", big) == pytest.approx(5000 / 1000 + 1.0)


def test_the_first_measurement_of_a_link_or_a_fixed_part_replaces_the_hosts_figure():
    t = Throughputs(links={"peer": 999.0})
    t.observe_resource("link:peer", 1000, 2.0)
    assert t.links["peer"] == pytest.approx(500.0) and t.is_measured("link:peer")
    t.observe_resource("link:peer", 1000, 1.0)
    assert t.links["peer"] == pytest.approx(750.0)
    t.observe_fixed("save", 0.8)
    assert t.fixed["save"] == pytest.approx(0.8)
    t.observe_fixed("save", 0.6)
    assert t.fixed["save"] == pytest.approx(0.7)
    view = t.over(Throughputs(fixed={"save": 9.0, "migrate": 9.0, "restore": 9.0}))
    assert view.fixed == {"save": pytest.approx(0.7), "migrate": 9.0, "restore": 9.0}


def test_a_throughputs_file_from_before_the_per_stage_counts_still_loads(tmp_path):
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"save_mbps": 480.5, "migrate_mbps": 110.0, "restore_mbps": 300.0, "shutdown_s": 11.2,
                                "create_s": 5.0, "sysrq_s": 0.5, "samples": 7, "links": {"peer": 900.0},
                                "fixed": {"save": 0.62, "migrate": 1.0, "restore": 0.5}}))
    t = Throughputs.load(path)
    assert t.problems == [] and t.samples == 7 and t.save_mbps == 480.5
    # what differs from its default was measured; what still is its default was not
    assert t.measured == {"save": 1, "shutdown": 1, "link:peer": 1, "fixed:save": 1}
    est = estimator(Config(), t)
    assert est.source_of("save") == "measured" and est.source_of("restore") == "assumed"
    t.save(path)
    again = Throughputs.load(path)
    assert again.measured == t.measured and again == t and "problems" not in json.loads(path.read_text())


def test_a_file_that_is_not_json_is_a_warning_naming_it_and_is_kept_when_the_next_run_stores(tmp_path):
    path = tmp_path / "throughput.json"
    path.write_text('{\n "save_mbps": 480.5,\n "samples": 3\n')  # cut short
    t = Throughputs.load(path)
    assert t == Throughputs()
    assert len(t.problems) == 1 and t.problems[0].startswith(f"{path}:4: the stored throughputs are not JSON")
    rec = ThroughputRecorder(Config(), path=path)
    assert rec.warnings == t.problems
    rec(ev.GuestPlanned(guest="web01", memory_mib=1024))
    rec(ev.StageFinished(guest="web01", stage="shutdown", outcome="done", elapsed=2.0, at=10.0))
    rec(ev.RunFinished(verb="stop", exit_code=0))
    assert rec.error is None
    assert (tmp_path / "throughput.json.bad").read_text() == '{\n "save_mbps": 480.5,\n "samples": 3\n'  # nothing lost
    assert any("kept as" in w and "throughput.json.bad" in w for w in rec.warnings)
    stored = Throughputs.load(path)
    assert stored.problems == [] and stored.shutdown_s == 2.0 and stored.is_measured("shutdown")
    path.write_text("[1, 2]")
    assert "not a JSON object" in Throughputs.load(path).problems[0]
    ThroughputRecorder(Config(), path=path)(ev.RunFinished(verb="stop", exit_code=0))
    assert (tmp_path / "throughput.json.bad.1").read_text() == "[1, 2]"  # a second bad file does not replace the first


def test_a_bad_value_is_a_warning_naming_its_line_and_the_rest_of_the_file_stands(tmp_path):
    path = tmp_path / "throughput.json"
    path.write_text('{\n "save_mbps": 480.5,\n "restore_mbps": 0,\n "samples": 2,\n "links": {"peer": "fast"},\n'
                    ' "measured": {"save": 1, "restore": 1, "link:peer": 1}\n}')
    t = Throughputs.load(path)
    assert t.save_mbps == 480.5 and t.restore_mbps == 300.0 and t.links == {}
    assert f"{path}:3: restore_mbps: 0 is not a positive number; estimated as if never measured" in t.problems
    assert t.measured == {"save": 1}  # a rejected value is not "measured": the host's own figure stands in
    assert any(p.startswith(f"{path}:5: links.peer") for p in t.problems), t.problems
    est = estimator(Config(), t)
    assert est.warnings == tuple(t.problems)


def test_a_simulated_host_before_its_first_run_is_estimated_from_its_own_figures(tmp_path):
    state = simhost.init_state(tmp_path / "host", fast=True)
    assert estimator(Config(), Throughputs(), toolstack=SimToolstack(state)).source == "assumed"  # no bandwidths
    with simhost.transaction(state) as st:
        st.latency.update({"save": 0.5, "shutdown": 3.0, "ack": 0.2, "create": 1.5})
        st.rate["save"] = 600.0
        st.resources["link:peer"] = 1000.0  # it declares its bandwidths (as the demo host does)
    est = estimator(Config(), Throughputs(), toolstack=SimToolstack(state))  # in-process: no spawn cost
    assert est.source == "simulated"
    assert est("save", Domain(3, "web01", memory_mib=1200)) == pytest.approx(0.5 + 1200 / 600)
    assert est("shutdown", Domain(3, "web01")) == pytest.approx(3.2)
    assert est("create", Domain(3, "web01")) == pytest.approx(1.5)
    assert "save: disk 600 MB/s + 0.5s (simulated)" in est.basis(["save", "shutdown"])
    with simhost.transaction(state) as st:
        st.resources["disk"] = 400.0  # a shared disk's bandwidth wins over the op's own rate, as in the simulator
    est = estimator(Config(), Throughputs(), toolstack=SimToolstack(state))
    assert est("save", Domain(3, "web01", memory_mib=1200)) == pytest.approx(0.5 + 1200 / 400)
    measured = Throughputs()
    measured.observe("shutdown", 0, 9.0)
    est = estimator(Config(), measured, toolstack=SimToolstack(state))
    assert est.source_of("shutdown") == "measured" and est.source_of("save") == "simulated"  # runs win, stage by stage


def test_the_cli_recognises_a_simulated_xl_on_path(tmp_path, monkeypatch):
    state = simhost.init_state(tmp_path / "host", fast=True)
    with simhost.transaction(state) as st:
        st.resources["disk"] = 500.0
    write_shims(state, tmp_path / "bin")

    class Xl:
        name = "xl"

    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert simulated_state_dir(Xl()) == Path(state).resolve()
    assert simulated_throughputs(Xl()) is not None
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert simulated_state_dir(Xl()) is None


def test_a_restore_is_estimated_from_the_memory_its_image_names(tmp_path):
    layout = make_host(tmp_path / "host", guests=[], saved=[("wiki", 2048, 1)], fast=True)
    (image,) = savedir.scan(layout.save_dir)
    assert image.size < 2**20  # the simulator's images are small files …
    assert savedir.image_memory_mib(image) == 2048  # … whose header names the guest's memory


def test_a_run_learns_its_time_beside_the_guests_stages_and_the_plan_adds_it(tmp_path):
    path = tmp_path / "throughput.json"
    rec = ThroughputRecorder(Config(), path=path)
    rec.started_at = 99.5  # the process began half a second before its run: starting up is part of the run
    rec(ev.RunStarted(verb="stop", at=100.0))
    rec(ev.GuestPlanned(guest="web01", memory_mib=1024, at=100.2))
    rec(ev.StageFinished(guest="web01", stage="save", outcome="done", elapsed=2.0, at=103.0))  # 101 → 103
    rec(ev.StageFinished(guest="db", stage="shutdown", outcome="timeout", elapsed=3.0, at=105.0))  # a watchdog's too
    rec(ev.RunFinished(verb="stop", exit_code=1, at=106.0))
    stored = Throughputs.load(path)
    assert stored.overhead["stop"] == pytest.approx(106.0 - 99.5 - (105.0 - 101.0))
    assert stored.is_measured("overhead:stop") and not stored.is_measured("overhead:start")
    est = estimator(Config(), stored)
    assert est.overhead("stop") == pytest.approx(2.5) and est.overhead_source("stop") == "measured"
    assert est.overhead("start") == pytest.approx(1.0) and est.overhead_source("start") == "assumed"
    assert est.run_basis("stop") == "run 2.5s beside the guests (measured)"


def test_a_simulated_hosts_faults_are_what_it_says_of_single_guests(tmp_path):
    state = simhost.init_state(tmp_path / "host", fast=True)
    with simhost.transaction(state) as st:
        st.resources["disk"] = 500.0
        st.faults += [simhost.Fault("save", "backup", "hang"), simhost.Fault("shutdown", "mute", "ignore"),
                      simhost.Fault("*", "slow", "delay", 4.0), simhost.Fault("save", "web01", "fail")]
    est = estimator(Config(), Throughputs(), toolstack=SimToolstack(state))
    assert est.fault_of("save", Domain(7, "backup")) == ("hang", 0.0)
    assert est.fault_of("shutdown", Domain(7, "backup")) is None
    assert est.fault_of("shutdown", Domain(8, "mute")) == ("hang", 0.0)  # a shutdown it ignores lasts as long
    assert est.fault_of("migrate", Domain(9, "slow")) == ("delay", 4.0)
    assert est.fault_of("save", Domain(3, "web01")) is None  # a failure takes no time to speak of
    assert estimator(Config(), Throughputs()).fault_of("save", Domain(7, "backup")) is None  # a real host: no faults
