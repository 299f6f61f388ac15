"""Snapshot tests, one per screen, on a host that looks the same every time (see scripted.py).

Update after an intended change: `python -m pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest

import xdcore.plan
from xdtui.app import make_app
from xdtui.messages import EventsArrived
from xdtui.providers import Providers
from xdtui.screens.attach import AttachScreen
from xdtui.screens.plan_dialog import PlanDialog

from .conftest import wait_for
from .scripted import evacuation_events, scripted_host


@pytest.fixture(autouse=True)
def fixed_free_space(monkeypatch):
    monkeypatch.setattr(xdcore.plan, "free_bytes", lambda directory: 80 * 2**30)


async def _filled(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen and app.host_screen.autos
                   and app.host_screen._xen is not None, what="the host view to fill")
    await pilot.pause(0.2)


def test_host_view_at_80x24(snap_compare):
    """The host view fits a classic 80×24 terminal."""
    app = make_app(scripted_host("host80"), Providers.frozen())
    assert snap_compare(app, terminal_size=(80, 24), run_before=_filled)


def test_host_view_grows_with_the_terminal(snap_compare):
    """At 140×40 the same screen shows more rows and a wider log."""
    app = make_app(scripted_host("host140"), Providers.frozen())
    assert snap_compare(app, terminal_size=(140, 40), run_before=_filled)


def test_evacuation_in_progress(snap_compare):
    """The stage board mid-run: done, failed-then-saved, running with watchdog countdown, waiting."""
    app = make_app(scripted_host("running"), Providers.frozen())

    async def run_before(pilot):
        await _filled(pilot)
        app.host_screen.post_message(EventsArrived(evacuation_events()))
        await wait_for(pilot, lambda: app.host_screen.board_state.active, what="the board")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(100, 32), run_before=run_before)


def test_plan_confirmation(snap_compare):
    """Evacuate asks first, showing what each guest will go through."""
    app = make_app(scripted_host("plan"), Providers.frozen())

    async def run_before(pilot):
        await _filled(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), what="the plan dialog")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(100, 32), run_before=run_before)


def test_attach_mode(snap_compare):
    """Attached to a headless run: the same board from the progress file, read-only (the run has no control socket)."""
    from xdtui.steer import CHECKING

    host = scripted_host("attach")
    host.cfg.progress.write_text("".join(e.to_json() + "\n" for e in evacuation_events()))
    app = make_app(host, Providers.frozen(), attach="force", attach_poll=0.05)

    async def run_before(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen) and app.screen.batches
                       and app.screen.steering is not CHECKING, what="attach and the control socket asked")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(100, 32), run_before=run_before)


def test_command_palette(snap_compare):
    """ctrl+p finds the host view's actions by name ("stage": skip, toggles)."""
    from textual.command import CommandPalette
    from textual.widgets import Input, OptionList

    app = make_app(scripted_host("palette"), Providers.frozen())

    async def run_before(pilot):
        await _filled(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        app.screen.query_one(Input).cursor_blink = False
        await pilot.press(*"stage")
        options = app.screen.query_one(OptionList)
        await wait_for(pilot, lambda: options.option_count >= 5, what="the hits")
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=(100, 32), run_before=run_before)
