"""Estimates and their source: measured on this host, else the simulator's own figures, else assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdcore.config import Config
from xdcore.estimate import (ASSUMED_DISK_MBPS, ASSUMED_LINK_MBPS, Estimator, Measurements, estimator_for,
                             simulated_state_dir)
from xdcore.model import Domain
from xdcore.sim import host as simhost
from xdcore.sim.inprocess import SimToolstack
from xdcore.sim.testing import write_shims


def guest(name: str = "web01", mem: int = 1000) -> Domain:
    return Domain(3, name, memory_mib=mem)


def test_before_any_run_a_real_host_gets_conservative_assumed_rates():
    est = Estimator(Config(), Measurements())
    assert est.source("save") == est.source("migrate") == est.source("shutdown") == "assumed"
    assert est("save", guest(mem=1500)) == pytest.approx(1.0 + 1500 / ASSUMED_DISK_MBPS)
    assert est("migrate", guest(mem=1000)) == pytest.approx(2.0 + 1000 / ASSUMED_LINK_MBPS)
    assert "save 1.0s + 150 MB/s disk (assumed)" in est.basis(["save"])


def test_one_run_with_guests_of_several_sizes_measures_the_fixed_part_and_the_rate():
    m = Measurements()
    for mem in (512, 1024, 2048, 8192):
        m.observe("save", mem, 0.5 + mem / 500)  # the host's truth: 0.5 s + 500 MB/s
    m.observe("shutdown", 0, 3.0)
    est = Estimator(Config(), m)
    assert est.source("save") == "measured" and est.source("migrate") == "assumed"
    assert est("save", guest(mem=4096)) == pytest.approx(0.5 + 4096 / 500)
    assert est("shutdown", guest()) == pytest.approx(3.0)
    assert est.overall_source(["save", "migrate"]) == "measured+assumed"


def test_guests_of_one_size_keep_the_prior_split_scaled_to_what_was_measured():
    m = Measurements()
    for _ in range(3):
        m.observe("save", 1000, 10.0)
    est = Estimator(Config(), m)
    assert est("save", guest(mem=1000)) == pytest.approx(10.0)


def test_measurements_survive_a_round_trip_and_an_old_file_is_ignored(tmp_path):
    m = Measurements()
    m.observe("restore", 2048, 5.0)
    m.observe_outcome("backup", "save", "timeout")
    path = tmp_path / "throughput.json"
    m.save(path)
    again = Measurements.load(path)
    assert again.fits["restore"].n == 1 and again.timeouts == {"backup": "save"}
    path.write_text('{"save_mbps": 1.0, "samples": 3}')  # the format before sources
    assert Measurements.load(path).samples == 0
    path.write_text("not json")
    assert Measurements.load(path).samples == 0


def test_the_file_is_read_again_when_a_run_updated_it(tmp_path):
    path = tmp_path / "throughput.json"
    est = Estimator(Config(), path=path)
    assert est.source("create") == "assumed"
    m = Measurements()
    m.observe("create", 0, 1.5)
    m.save(path)
    assert est.source("create") == "measured" and est("create", guest()) == pytest.approx(1.5)


def test_a_stage_that_timed_out_last_run_is_expected_to_again_until_it_succeeds():
    m = Measurements()
    m.observe_outcome("backup", "save", "timeout")
    est = Estimator(Config(stop_maxwait=20), m)
    fall = est.falls_through("save", guest("backup"))
    assert fall is not None and fall.seconds == 20 and "timed out in the last run" in fall.why
    assert est.falls_through("save", guest("web01")) is None
    m.observe_outcome("backup", "save", "done")
    assert est.falls_through("save", guest("backup")) is None


def test_a_simulated_host_is_estimated_from_its_own_latencies_bandwidths_and_faults(tmp_path, monkeypatch):
    state = simhost.init_state(tmp_path / "host", fast=True)
    with simhost.transaction(state) as st:
        st.latency.update({"save": 0.5, "shutdown": 3.0, "ack": 0.2})
        st.rate["save"] = 600.0
        st.faults.append(simhost.Fault("save", "backup", "hang"))
    cfg = Config(stop_maxwait=20)
    est = estimator_for(cfg, SimToolstack(state), Measurements())  # in-process: no spawn cost
    assert est.source("save") == "simulated"
    assert est("save", guest(mem=1200)) == pytest.approx(0.5 + 1200 / 600)
    assert est("shutdown", guest()) == pytest.approx(3.2)
    assert est.falls_through("save", guest("backup")).seconds == 20
    with simhost.transaction(state) as st:
        st.resources["disk"] = 400.0  # a shared disk's bandwidth wins over the op's own rate, as in the simulator
    est = estimator_for(cfg, SimToolstack(state), Measurements())
    assert est("save", guest(mem=1200)) == pytest.approx(0.5 + 1200 / 400)

    # the CLI's case: `xl` on PATH is an xdsim shim naming its state directory
    bindir = tmp_path / "bin"
    write_shims(state, bindir)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")

    class Xl:
        name = "xl"

    assert simulated_state_dir(Xl()) == Path(state).resolve()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert simulated_state_dir(Xl()) is None
