"""Several migration targets in the console: moving a guest to another target in the plan dialog, before the run.

The console's plan asks the targets over the simulator's ssh (SimToolstack.peer_argv); the choice
travels to the detached headless `xendomains stop` as `--place GUEST=TARGET`.  Witnesses: the dialog's plan,
the notices, the pool afterwards and the run's report.
"""

from __future__ import annotations

import json

from textual.widgets import DataTable

from tests.e2e.helpers import E2EHost, kill_xl_children
from xdcore.config import load_config
from xdcore.report import load_last
from xdcore.sim.inprocess import SimToolstack
from xdtui.app import make_app
from xdtui.host import HostContext
from xdtui.providers import Providers
from xdtui.screens.dialogs import PromptDialog
from xdtui.screens.plan_dialog import PlanDialog

from .conftest import wait_for
from .test_pilot import SIZE
from .test_steer import recorded_notices

GIB = 1024


def pool_host(tmp_path) -> E2EHost:
    """xen01 runs big (12 GiB) and web (2 GiB); xen02, xen03, xen04 have 16, 24 and 8 GiB free."""
    h = E2EHost.make(tmp_path / "h", guests=[("big", 12 * GIB, 2), ("web", 2 * GIB, 1)], XENDOMAINS_PARALLEL=4)
    for name, gib in (("xen02", 16), ("xen03", 24), ("xen04", 8)):
        h.add_peer(name, 2048 + gib * GIB)
    h.configure(XENDOMAINS_MIGRATE_TARGETS="xen02 xen03 xen04")
    return h


async def move(pilot, dialog: PlanDialog, guest: str, target: str) -> str:
    """Move `guest` to `target` with m and the prompt; the prompt's help text (the targets' room)."""
    await wait_for(pilot, lambda: dialog.is_mounted and dialog.query(DataTable), what="the plan dialog's table")
    table = dialog.query_one(DataTable)
    await wait_for(pilot, lambda: any(k.value == guest for k in table.rows), what=f"{guest}'s row in the plan")
    table.move_cursor(row=table.get_row_index(guest))
    await pilot.press("m")
    await wait_for(pilot, lambda: isinstance(dialog.app.screen, PromptDialog), what="the target prompt")
    help_text = str(dialog.app.screen.help)
    await pilot.press(*target, "enter")
    await wait_for(pilot, lambda: dialog.app.screen is dialog, what="the prompt to close")
    return help_text


async def test_a_guest_moved_in_the_plan_dialog_goes_there_in_the_headless_run_and_the_report_says_so(tmp_path):
    h = pool_host(tmp_path)
    env = h.env()
    # the console's own plan asks the targets through the simulator's pool (SimToolstack.peer_argv), the
    # headless run through the ssh shim on its PATH
    host = HostContext(load_config(str(h.config)), SimToolstack(h.state), label="test host", watch_interval=0.5,
                       lock_wait=5.0, run_env=env)
    app = make_app(host, Providers())
    notices = recorded_notices(app)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen, what="the host view")
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), timeout=30, what="the plan dialog")
            dialog = app.screen
            assert {g.guest: g.target for g in dialog.plan.guests} == {"big": "xen03", "web": "xen02"}
            assert {r.name: r.room_left_mib for r in dialog.plan.targets} == {"xen02": 13 * GIB, "xen03": 11 * GIB,
                                                                              "xen04": 7 * GIB}
            # big (12 GiB) does not fit in xen04's 7 GiB of room: refused at once, nothing changes
            shown = await move(pilot, dialog, "big", "xen04")
            assert shown == "Now: xen03. One of: xen02 13312 MiB left, xen03 11264 MiB left, xen04 7168 MiB left."
            assert ("Cannot move big to xen04: xen04 has 7168 MiB of room, needs 12288 MiB", "error") in notices
            assert dialog.placements == {}
            # a host that is not one of the targets
            await move(pilot, dialog, "web", "xen09")
            assert any(n.startswith("Cannot move web to xen09: xen09 is not one of the migration targets")
                       for n, _ in notices)
            await move(pilot, dialog, "web", "xen04")
            await wait_for(pilot, lambda: dialog.placements == {"web": "xen04"}, timeout=30, what="the plan made again")
            web = next(g for g in dialog.plan.guests if g.guest == "web")
            assert (web.target, web.placed_by) == ("xen04", "operator")
            assert {r.name: r.room_left_mib for r in dialog.plan.targets}["xen04"] == 5 * GIB
            row = dialog.query_one(DataTable).get_row("web")
            assert "Migrate to xen04 (moved)" in str(row[1])
            await pilot.press("y")
            await wait_for(pilot, lambda: app.state.launched is not None, what="the run to be launched")
            assert "--place" in app.state.launched.argv and "web=xen04" in app.state.launched.argv
            await wait_for(pilot, lambda: (r := load_last(host.cfg, "stop")) is not None and r.exit_code is not None,
                           timeout=60, what="the headless run's report")
    finally:
        kill_xl_children(h.layout.bin_dir)
    pool = h.pool_guests()
    assert "web" in pool["xen04"] and "big" in pool["xen03"] and not pool["xen01"]
    report = json.loads((h.progress.parent / "last-stop.json").read_text())
    assert report["exit_code"] == 0, report
    assert {g["guest"]: (g["outcome"], g["target"], g["placed_by"]) for g in report["guests"]} == {
        "web": ("migrated", "xen04", "operator"), "big": ("migrated", "xen03", "placement")}


async def test_migrate_selected_with_several_targets_places_the_marked_guest_where_the_operator_moved_it(tmp_path):
    from xdtui.widgets.domain_table import DomainTable

    h = pool_host(tmp_path)
    host = HostContext(load_config(str(h.config)), SimToolstack(h.state), label="test host", watch_interval=0.5,
                       lock_wait=5.0, run_env=h.env())
    app = make_app(host, Providers())
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen, what="the host view")
            table = app.screen.query_one(DomainTable)
            await wait_for(pilot, lambda: any(k.value == "web" for k in table.rows), what="web's row")
            table.move_cursor(row=table.get_row_index("web"))
            await pilot.press("space", "m")  # mark web, migrate the marked guests now
            await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), timeout=30, what="the plan dialog")
            dialog = app.screen
            assert [(g.guest, g.stages, g.target) for g in dialog.plan.guests] == [("web", ("migrate",), "xen03")]
            await move(pilot, dialog, "web", "xen04")
            await wait_for(pilot, lambda: dialog.placements == {"web": "xen04"}, timeout=30, what="the plan made again")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.state.launched is not None, what="the run to be launched")
            await wait_for(pilot, lambda: (r := load_last(host.cfg, "stop")) is not None and r.exit_code is not None,
                           timeout=60, what="the headless run's report")
    finally:
        kill_xl_children(h.layout.bin_dir)
    pool = h.pool_guests()
    assert pool["xen01"] == {"big"} and pool["xen04"] == {"web"}
    rec = load_last(host.cfg, "stop").guest("web")
    assert (rec.outcome, rec.target, rec.placed_by) == ("migrated", "xen04", "operator")


async def test_the_attached_board_shows_each_targets_migrations_in_flight_of_its_links_cap(tmp_path):
    from xdcore import events as ev
    from xdcore.control_socket import ControlClient, socket_path

    from .test_steer import attached, console_for, start_headless, stop_headless

    # three 1 GiB guests all fit on xen03 (most room); two migrations at once per target, a1 and a2 hold both
    h = E2EHost.make(tmp_path / "h", guests=[("a1", GIB, 1), ("a2", GIB, 1), ("a3", GIB, 1)], XENDOMAINS_PARALLEL=4,
                     XENDOMAINS_PARALLEL_MIGRATE=2, XENDOMAINS_STOP_MAXWAIT=300)
    for name, gib in (("xen02", 16), ("xen03", 24)):
        h.add_peer(name, 2048 + gib * GIB)
    h.configure(XENDOMAINS_MIGRATE_TARGETS="xen02 xen03")
    h.sim("fault", "migrate", "a1", "hang")
    h.sim("fault", "migrate", "a2", "hang")
    proc = await start_headless(h)
    try:
        app = make_app(console_for(h), Providers(), attach="auto", attach_poll=0.05)
        async with app.run_test(size=SIZE) as pilot:
            screen = await attached(pilot, app)
            shown = lambda: str(screen.query_one("#board-host").render())  # noqa: E731 - the line as drawn
            await wait_for(pilot, lambda: "xen03 2/2 migrating" in shown(), timeout=60,
                           what=f"xen03's two migrations of two at once on the board (it shows {shown()!r})")
            assert set(screen.board_state.targets["xen03"].in_flight) == {"a1", "a2"}
            assert "xen02 0/2 migrating · 15.0 GiB left" in shown()  # its cap, nothing placed there
            for g in ("a1", "a2"):
                ControlClient(socket_path(h.progress)).skip_stage(g, "migrate")
            await wait_for(pilot, lambda: screen.board_state.finished is not None, timeout=60, what="the run to finish")
        res = h.finish(proc)
    finally:
        stop_headless(h, proc)
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"a1": "saved", "a2": "saved", "a3": "migrated"}
    assert {e.target: e.at_once for e in res.of(ev.TargetProbed)} == {"xen02": 2, "xen03": 2}
