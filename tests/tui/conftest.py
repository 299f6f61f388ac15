"""Fixtures for the console's tests: a fast demo host, frozen providers, pinned time zone, waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import PATIENCE

from xdcore.sim import host as simhost
from xdtui.demo import demo_host
from xdtui.host import HostContext


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Log lines show HH:MM:SS in local time: pin it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch):
    """Runs the console starts are never real systemd units here, even where systemd runs (CI as root):
    a unit's output and life are outside the test's reach.  tests/tui/test_systemd_run.py lifts this
    for its stand-in `systemd-run`."""
    monkeypatch.setenv("XDTUI_NO_SYSTEMD", "1")


@pytest.fixture
def demo(tmp_path) -> HostContext:
    """The simulator's demo host with tiny latencies, driven in-process."""
    return demo_host(tmp_path / "demo", fast=True)


def set_latency(state_dir: Path, **latency: float) -> None:
    with simhost.transaction(state_dir) as st:
        st.latency.update(latency)


async def wait_for(pilot, cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Let the app run until cond() is true (never a fixed sleep in an assertion)."""
    deadline = time.monotonic() + max(timeout, PATIENCE)  # a timeout only ends a test that already failed
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def wait_until(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + max(timeout, PATIENCE)  # a timeout only ends a test that already failed
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def hang_sysrq_instead(state_dir: Path, guest: str = "backup", watchdog: int = 600) -> None:
    """The demo host with SysRq on and `guest`'s SysRq hanging instead of its save (skipping a hung SysRq
    falls through to the save; skipping a save leaves the guest suspended, as real xl does)."""
    conf = state_dir / "xendomains.conf"
    text = conf.read_text().replace('XENDOMAINS_SYSRQ=""', 'XENDOMAINS_SYSRQ="s"')
    for maxwait in ("XENDOMAINS_STOP_MAXWAIT=2\n", "XENDOMAINS_STOP_MAXWAIT=20\n"):
        text = text.replace(maxwait, f"XENDOMAINS_STOP_MAXWAIT={watchdog}\n")
    conf.write_text(text)
    with simhost.transaction(state_dir) as st:
        st.faults = [f for f in st.faults if not (f.op == "save" and f.guest == guest)]
        st.faults.append(simhost.Fault("sysrq", guest, "hang"))


def clear_faults(state_dir: Path) -> None:
    with simhost.transaction(state_dir) as st:
        st.faults = []
