"""The real-Xen tests: one QEMU boot per session runs every selected scenario (tests/realxen/harness.py).

They run when asked for: `-m realxen` (or any -m expression naming it), or XENDOMAINS_REALXEN=1 (.ci/run
sets it); otherwise they are deselected, so that the everyday suite stays minutes long.  They skip only
where QEMU cannot run at all, and never under CI (the CI variable set): there they fail, so a green CI
run is one in which real Xen ran.
"""

from __future__ import annotations

import os

import pytest

from tests.realxen import harness
from tests.realxen.dom0.scenarios import ORDER

#: scenarios that continue with the guests an earlier one left
NEEDS = {"stop": ["start"], "sysrq": ["start", "stop"]}


def _wanted(config: pytest.Config) -> bool:
    return "realxen" in (config.getoption("-m") or "") or os.environ.get("XENDOMAINS_REALXEN") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _wanted(config):
        return
    drop = [it for it in items if it.get_closest_marker("realxen")]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [it for it in items if not it.get_closest_marker("realxen")]


def pytest_report_header(config: pytest.Config) -> str:
    return ("real Xen (QEMU) tests: selected" if _wanted(config)
            else "real Xen (QEMU) tests: deselected (-m realxen or XENDOMAINS_REALXEN=1 runs them)")


@pytest.fixture(scope="session")
def realxen(request: pytest.FixtureRequest) -> harness.Boot:
    """Boot Xen once for the whole session and run the scenarios the selected tests need, in ORDER."""
    why = harness.qemu_unavailable()
    if why and os.environ.get("CI"):  # CI asked for real Xen: a green run must mean it ran
        pytest.fail(f"QEMU cannot run here, and CI is set: {why}")
    if why:
        pytest.skip(f"QEMU cannot run here: {why}")
    wanted: set[str] = set()
    for item in request.session.items:
        m = item.get_closest_marker("realxen")
        if m and m.args:
            wanted.add(m.args[0])
            wanted.update(NEEDS.get(m.args[0], []))
    scenarios = [s for s in ORDER if s in wanted] or list(ORDER)
    return harness.boot(scenarios, options={"tui": "stop" in wanted})
