"""Small helpers every test layer shares: where the real xl captures are, and waiting on a condition."""

from __future__ import annotations

import time
from pathlib import Path

# The least any wait gives the awaited thing.  Waits end as soon as it happens; a timeout only
# decides how long a test that has already failed takes to say so, so it is generous: a busy
# CI machine (a real-Xen QEMU beside the suite) must never turn a slow success into a failure.
PATIENCE = 90.0

#: outputs captured from Debian's real xl 4.17.7 (copied from shared/xen-fixtures)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "xen"


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.02):
    """Poll until predicate() is truthy and return its value; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + max(timeout, PATIENCE)  # a timeout only ends a test that already failed
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
