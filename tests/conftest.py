"""Fixtures shared by the whole suite: a simulated Xen host and its `xl`/`xm` on PATH.

    def test_something(sim_env):            # PATH has BINDIR first, XDSIM_STATE is set
        subprocess.run(["xl", "list"], check=True)

`sim_state` is a fresh host (Domain-0 only, tiny latencies); populate it with
`xdcore.sim.testing.make_host(sim_state, guests=[("web01", 1024, 2)], auto=["web01"])`
or `xdsim --state DIR add …`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI runs the property tests on a fixed set of examples (the same every run), so a red CI always
# means a change broke something; developers' runs keep exploring new random examples, and what they
# find becomes an explicit @example.  Loaded here, before any test module makes its own settings.
# No profile has a deadline or the too-slow health check: both are timed assertions, and a busy
# machine must not fail a test (hypothesis's default 200 ms deadline did, under load).
UNTIMED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("dev", **UNTIMED)
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, **UNTIMED)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

from xdcore.sim import host
from xdcore.sim.testing import write_shims


@pytest.fixture
def sim_state(tmp_path: Path) -> Path:
    """A fresh simulated host (dom0 only, fast latencies) in tmp_path/host."""
    return host.init_state(tmp_path / "host", fast=True)


@pytest.fixture
def sim_bin(sim_state: Path) -> Path:
    """A directory with the `xl` and `xm` shims acting on sim_state."""
    bindir = sim_state / "bin"
    write_shims(sim_state, bindir)
    return bindir


@pytest.fixture
def sim_env(sim_bin: Path, sim_state: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """os.environ with sim_bin first on PATH and XDSIM_STATE set; returns the patched values."""
    import os

    monkeypatch.setenv("PATH", f"{sim_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("XDSIM_STATE", str(sim_state))
    return {"PATH": os.environ["PATH"], "XDSIM_STATE": str(sim_state)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`needs_apt`: every test skipped when a Debian package is missing (its reason says `apt-get install …`).

    `pytest -m "not needs_apt"` runs the rest on a machine without them; `.ci/run` installs them.
    """
    for item in items:
        for mark in item.iter_markers("skipif"):
            if "apt-get install" in str(mark.kwargs.get("reason", "")):
                item.add_marker(pytest.mark.needs_apt)
                break
