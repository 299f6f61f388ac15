"""Snapshot tests, at 80×24 (the classic terminal, first) and 120×40, on a host that looks the same every time.

One per screen: host view, plan dialog (small host and a 500-guest host), the running board, guest
detail, help — plus attach and the command palette.  Update after an intended change:
`python -m pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest

import xdcore.plan
from xdtui.app import make_app
from xdtui.messages import EventsArrived
from xdtui.providers import Providers
from xdtui.screens.attach import AttachScreen
from xdtui.screens.guest_detail import GuestDetail
from xdtui.screens.help import HelpScreen
from xdtui.screens.plan_dialog import PlanDialog

from .conftest import wait_for
from .scripted import evacuation_events, scripted_host

SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


@pytest.fixture(autouse=True)
def fixed_free_space(monkeypatch):
    monkeypatch.setattr(xdcore.plan, "free_bytes", lambda directory: 80 * 2**30)


async def _filled(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen and app.host_screen.autos
                   and app.host_screen._xen is not None, what="the host view to fill")
    await pilot.pause(0.2)


async def _running(pilot) -> None:
    app = pilot.app
    await _filled(pilot)
    app.host_screen.post_message(EventsArrived(evacuation_events()))
    await wait_for(pilot, lambda: app.host_screen.board_state.active, what="the board")
    await pilot.pause(0.2)


async def _opened(pilot, key: str, screen: type, what: str, *, timeout: float = 15.0, settle: float = 0.2) -> None:
    """The host view filled, then `key` pressed until `screen` is on top."""
    app = pilot.app
    await _filled(pilot)
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, screen), what=what, timeout=timeout)
    await pilot.pause(settle)


@SIZES
def test_host_view(snap_compare, size):
    """The host view: idle stage board collapsed to its status lines, the lists below."""
    app = make_app(scripted_host(f"host{size[0]}"), Providers.frozen())
    assert snap_compare(app, terminal_size=size, run_before=_filled)


@SIZES
def test_evacuation_in_progress(snap_compare, size):
    """The running board: handled / skipped / failed apart, watchdog by closeness, the log full width."""
    app = make_app(scripted_host(f"running{size[0]}"), Providers.frozen())
    assert snap_compare(app, terminal_size=size, run_before=_running)


@SIZES
@pytest.mark.parametrize("extra", [0, 500], ids=["small", "500-guests"])
def test_plan_confirmation(snap_compare, size, extra):
    """Evacuate asks first: fallback chains, guests left out, the hangup choice; long lists capped, buttons visible."""
    app = make_app(scripted_host(f"plan{size[0]}-{extra}", extra=extra), Providers.frozen())

    async def run_before(pilot):
        await _opened(pilot, "e", PlanDialog, "the plan dialog", timeout=60, settle=0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_guest_detail(snap_compare, size):
    """Enter on a guest mid-run: config, image, every stage with times, the failed command's stderr."""
    from xdcore.events import CommandFinished

    app = make_app(scripted_host(f"detail{size[0]}"), Providers.frozen())

    async def run_before(pilot):
        await _running(pilot)
        at = evacuation_events()[-1].at
        app.host_screen.post_message(EventsArrived([CommandFinished(
            run="20251009T085000-abc123", at=at, argv=("xl", "migrate", "2", "host2"), returncode=1, guest="web02",
            stage="migrate", stderr="migration target: Ready to receive domain.\nxc: error: Failed to send memory: "
                                    "Broken pipe\nlibxl: error: libxl_stream_write.c:350: Migration failed")]))
        await pilot.pause(0.2)
        app.host_screen.open_detail("web02")
        await wait_for(pilot, lambda: isinstance(app.screen, GuestDetail), what="the detail")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_help(snap_compare, size):
    """? lists every key of the host view."""
    app = make_app(scripted_host(f"help{size[0]}"), Providers.frozen())

    async def run_before(pilot):
        await _opened(pilot, "question_mark", HelpScreen, "help")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


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
    """ctrl+p finds the host view's actions by name ("stage": the toggles)."""
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
