"""Readiness gates: a delay, the admin's command (run without a shell, killed at its timeout), the limit."""

from __future__ import annotations

import asyncio
import time

from xdcore import gates
from xdcore.policy import Gate, GuestPolicy


def run(coro):
    return asyncio.run(coro)


def test_no_gate_opens_at_once_and_a_delay_waits():
    assert run(gates.wait_gate(Gate(), GuestPolicy("g"), "g", 1, 10)).outcome == "open"
    r = run(gates.wait_gate(Gate("delay", 0.2), GuestPolicy("g"), "g", 1, 10))
    assert r.outcome == "open" and r.elapsed >= 0.2


def test_a_delay_longer_than_the_limit_times_out_at_the_limit():
    r = run(gates.wait_gate(Gate("delay", 30), GuestPolicy("g"), "g", 1, 0.2))
    assert r.outcome == "timeout" and "XENDOMAINS_START_MAXWAIT" in r.how


def test_the_ready_command_gets_the_guest_and_opens_the_gate(tmp_path):
    out = tmp_path / "seen"
    script = tmp_path / "ready"
    script.write_text(f'#!/bin/sh\necho "$XENDOMAINS_GUEST $XENDOMAINS_DOMID $1" > {out}\nexit 0\n')
    script.chmod(0o755)
    pol = GuestPolicy("db", ready_cmd=(str(script), "a b; rm -rf /"))
    r = run(gates.wait_gate(Gate("ready"), pol, "db", None, 10))
    assert r.outcome == "open" and "exited 0" in r.how
    assert out.read_text() == "db  a b; rm -rf /\n"  # one argument, never a shell


def test_a_hung_ready_command_is_killed_and_the_gate_ends_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(gates, "READY_CMD_TIMEOUT", 0.3)
    script = tmp_path / "hang"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    t0 = time.monotonic()
    r = run(gates.wait_gate(Gate("ready"), GuestPolicy("db", ready_cmd=(str(script),)), "db", None, 1.0))
    assert r.outcome == "timeout" and time.monotonic() - t0 < 10


def test_a_command_that_cannot_run_ends_the_gate_at_once_saying_why(tmp_path):
    r = run(gates.wait_gate(Gate("ready"), GuestPolicy("db", ready_cmd=(str(tmp_path / "nope"),)), "db", None, 30))
    assert r.outcome == "timeout" and "cannot run" in r.how and r.elapsed < 10
