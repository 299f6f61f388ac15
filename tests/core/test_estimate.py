"""Where an estimate comes from (issue 13): measured runs, else a simulated host's own figures, else assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdcore import savedir
from xdcore.config import Config
from xdcore.model import Domain
from xdcore.plan import Throughputs, estimator, simulated_state_dir, simulated_throughputs
from xdcore.sim import host as simhost
from xdcore.sim.inprocess import SimToolstack
from xdcore.sim.testing import make_host, write_shims


def test_a_real_host_before_its_first_run_says_assumed_and_after_it_measured():
    assert estimator(Config(), Throughputs()).source == "assumed"
    t = Throughputs()
    t.observe("shutdown", 0, 3.0)
    assert estimator(Config(), t).source == "measured"


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
    assert "save: disk 600 MB/s + 0.5s" in est.basis(["save", "shutdown"])
    with simhost.transaction(state) as st:
        st.resources["disk"] = 400.0  # a shared disk's bandwidth wins over the op's own rate, as in the simulator
    est = estimator(Config(), Throughputs(), toolstack=SimToolstack(state))
    assert est("save", Domain(3, "web01", memory_mib=1200)) == pytest.approx(0.5 + 1200 / 400)
    measured = Throughputs()
    measured.observe("shutdown", 0, 9.0)
    assert estimator(Config(), measured, toolstack=SimToolstack(state)).source == "measured"  # runs win


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
