"""Small helpers every test layer shares: where the real xl captures are, and waiting on a condition."""

from __future__ import annotations

import time
from pathlib import Path

#: outputs captured from Debian's real xl 4.17.7 (copied from shared/xen-fixtures)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "xen"


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.02):
    """Poll until predicate() is truthy and return its value; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
