"""Fixtures for the console's tests: a fast demo host, frozen providers, pinned time zone, waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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


@pytest.fixture
def demo(tmp_path) -> HostContext:
    """The simulator's demo host with tiny latencies, driven in-process."""
    return demo_host(tmp_path / "demo", fast=True)


def set_latency(state_dir: Path, **latency: float) -> None:
    with simhost.transaction(state_dir) as st:
        st.latency.update(latency)


async def wait_for(pilot, cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Let the app run until cond() is true (never a fixed sleep in an assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def wait_until(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
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
