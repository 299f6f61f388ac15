"""The real console driven by Pilot on the simulated demo host (fast latencies).

The console reads the host in-process; every run it starts is a headless `xendomains` process (the simulator's
`xl` first on PATH) that it follows through the progress file and steers through the control socket.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xdcore.events import RunFinished, from_json
from xdcore.sim import host as simhost
from xdtui.app import make_app
from xdtui.providers import Providers
from xdtui.screens.attach import AttachScreen
from xdtui.screens.dialogs import ConfirmDialog, PromptDialog
from xdtui.screens.host import HostScreen
from xdtui.screens.plan_dialog import PlanDialog
from xdtui.widgets.domain_table import DomainTable
from xdtui.widgets.stage_board import BoardTable

from xdcore.sim.testing import add_domain, config_of, guest_config_text
from xdtui.board import row_key

from .conftest import clear_faults, hang_sysrq_instead, set_latency, wait_for

SIZE = (100, 32)
RUNNING = ["web01", "web02", "db-primary", "db-replica", "mail", "build-ci", "dns1", "monitoring", "ldap", "proxy", "backup"]


def guests_on(state_dir: Path) -> set[str]:
    """The guests as `xl list` names them (the zombie legacy-app as "(null)")."""
    return {simhost.xl_name(d) for d in simhost.load(state_dir).domains if d.domid != 0}


async def ready(pilot, app) -> HostScreen:
    await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen and app.host_screen.autos,
                   what="the host view to fill")
    return app.host_screen


async def run_to_end(pilot, app, timeout: float = 40.0) -> None:
    await wait_for(pilot, lambda: not app.host_screen.run_active and app.host_screen.board_state.finished is not None,
                   timeout=timeout, what="the run to finish")


def running_stage(app, guest: str) -> str:
    row = app.host_screen.board_state.rows.get(guest)
    return row.running if row is not None and not row.outcome else ""


async def steering(pilot, app) -> None:
    await wait_for(pilot, lambda: app.host_screen.steering.allowed, what="steering the run over its socket")


async def confirm_plan(pilot, app) -> PlanDialog:
    await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), what="the plan dialog")
    dialog = app.screen
    await pilot.press("y")
    return dialog


async def evacuate_until_first_save(pilot, app) -> None:
    """Press e, accept the plan, and wait until the evacuation is saving its first guest."""
    await pilot.press("e")
    await confirm_plan(pilot, app)
    # the event it needs: web01's save has started (StageStarted reduced onto the board).  Not "is
    # saving right now": on a busy machine a short save can start and end between two looks.
    await wait_for(pilot, lambda: app.host_screen.board_state.rows.get("web01") is not None
                   and app.host_screen.board_state.rows["web01"].cell("save").status in ("running", "done"),
                   what="web01's save to start")
    await steering(pilot, app)


async def palette(pilot, app, title: str) -> None:
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette", what="the palette")
    await pilot.press(*title)
    await pilot.pause(0.3)
    await pilot.press("enter")


async def test_evacuating_from_the_palette_saves_every_guest_the_config_allows(demo):
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await palette(pilot, app, "Evacuate host")
        dialog = await confirm_plan(pilot, app)
        assert {g.guest for g in dialog.plan.guests} == set(RUNNING) | {"(null)"}  # the zombie legacy-app, as xl lists it
        await run_to_end(pilot, app)
        b = app.host_screen.board_state
        outcomes = {n: b.rows[n].outcome for n in b.order}
        # demo config: no migration target, a save dir, shutdown as the fallback; backup's save hangs until the
        # watchdog kills it, which leaves backup suspended (as real xl does): said, and the run exits 1
        assert outcomes["backup"] == "suspended"
        assert b.rows["backup"].cell("save").status in ("timeout", "failed")
        assert [outcomes[n] for n in b.order if b.rows[n].guest == "(null)"] == ["zombie"]
        assert all(outcomes[g] == "saved" for g in RUNNING if g != "backup")
        assert b.exit_code == 1
    assert guests_on(demo.demo_dir) == {"(null)", "backup"}
    assert not demo.cfg.lockfile.exists()
    events = [from_json(x) for x in demo.cfg.progress.read_text().splitlines()]
    assert isinstance(events[-1], RunFinished)  # the progress file a headless attach would read


async def test_migrate_selected_migrates_only_the_marked_guests_to_the_chosen_target(demo):
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptDialog), what="the target prompt")
        await pilot.press(*"host2", "enter")
        table = app.screen.query_one(DomainTable)
        table.move_cursor(row=table.get_row_index("web02"))
        await pilot.press("space", "space")  # marks web02, then the next row (db-primary)
        assert table.marked == {"web02", "db-primary"}
        await palette(pilot, app, "Migrate selected")
        dialog = await confirm_plan(pilot, app)
        assert [(g.guest, g.stages) for g in dialog.plan.guests] == [("web02", ("migrate",)), ("db-primary", ("migrate",))]
        await run_to_end(pilot, app)
        b = app.host_screen.board_state
        assert {n: b.rows[n].outcome for n in b.order} == {"web02": "migrated", "db-primary": "migrated"}
    assert guests_on(demo.demo_dir) == (set(RUNNING) | {"(null)"}) - {"web02", "db-primary"}
    assert {g["name"] for g in simhost.load(demo.demo_dir).targets["host2"]} == {"web02", "db-primary"}


async def test_turning_save_off_makes_the_plan_shut_guests_down(demo):
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("3")
        assert "save" in app.prefs.disabled
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), what="the plan dialog")
        plan = app.screen.plan
        assert {g.stages for g in plan.guests if g.guest != "(null)"} == {("shutdown",)}
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, HostScreen), what="the dialog to close")
    assert guests_on(demo.demo_dir) == set(RUNNING) | {"(null)"}  # cancelled: nothing touched


async def test_skipping_the_running_stage_falls_through_to_the_next(demo):
    hang_sysrq_instead(demo.demo_dir, "backup")  # the run reads its config file: SysRq on, backup's hangs
    host = dataclasses.replace(demo, cfg=demo.cfg.with_overrides(stop_maxwait=600, sysrq=("s",)))
    app = make_app(host, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        table = app.screen.query_one(DomainTable)
        table.move_cursor(row=table.get_row_index("backup"))  # backup's save hangs in the demo
        await pilot.press("E")
        await confirm_plan(pilot, app)
        await wait_for(pilot, lambda: running_stage(app, "backup") == "sysrq", what="backup's SysRq to hang")
        await steering(pilot, app)
        board = app.screen.query_one(BoardTable)
        board.focus()
        board.move_cursor(row=board.get_row_index("backup"))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the skip confirmation")
        await pilot.press("y")
        await run_to_end(pilot, app)
        row = app.host_screen.board_state.rows["backup"]
        assert row.cell("sysrq").status == "cancelled"
        assert row.cell("save").status == "done" and row.outcome == "saved"
    assert "backup" not in guests_on(demo.demo_dir)
    assert not list((demo.cfg.save_dir).glob(".xendomains-partial*"))


async def test_abort_keeps_handled_guests_handled_and_releases_the_lock(demo):
    set_latency(demo.demo_dir, save=1.0)  # 12 guests one by one: the abort lands long before the end (watchdog 2 s)
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("e")
        await confirm_plan(pilot, app)
        await wait_for(pilot, lambda: app.host_screen.board_state.progress()[0] >= 2, what="two guests handled")
        await steering(pilot, app)
        await palette(pilot, app, "Abort run")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the abort confirmation")
        await pilot.press("y")
        await run_to_end(pilot, app)
        b = app.host_screen.board_state
        outcomes = {b.rows[n].guest: b.rows[n].outcome for n in b.order}  # by name, as xl lists them (one zombie)
        saved = {n for n, o in outcomes.items() if o == "saved"}
        skipped = {n for n, o in outcomes.items() if o == "skipped"}
        assert len(saved) >= 2 and skipped and b.aborted
        assert "shutdown_all" not in b.host or b.host["shutdown_all"].status != "done"
    left = guests_on(demo.demo_dir)
    assert saved.isdisjoint(left) and skipped <= left  # handled stay handled, the rest still run
    assert not demo.cfg.lockfile.exists()


async def test_quitting_during_a_run_leaves_it_going_to_the_end_and_a_new_console_finds_it(demo):
    set_latency(demo.demo_dir, save=0.3)
    clear_faults(demo.demo_dir)
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await evacuate_until_first_save(pilot, app)
        run = app.state.own_run
        pid = app.host_screen.board_state.pid
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 0 and run and pid != os.getpid()
    again = make_app(demo, Providers.frozen(), attach_poll=0.05)
    async with again.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, AttachScreen), what="the new console to attach")
        screen = again.screen
        await wait_for(pilot, lambda: screen.board_state.run == run, what="the same run")
        await wait_for(pilot, lambda: screen.board_state.finished is not None, timeout=60, what="the run to finish")
        assert screen.board_state.exit_code == 0
    assert guests_on(demo.demo_dir) == {"(null)"}  # every guest evacuated although its console left
    assert not demo.cfg.lockfile.exists()


async def test_attach_follows_a_headless_xendomains_stop(demo):
    set_latency(demo.demo_dir, save=0.3)
    layout_env = dict(os.environ, PATH=f"{demo.demo_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
                      XDSIM_STATE=str(demo.demo_dir), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "xdcore.cli", "--config", str(demo.cfg.path), "stop"],
                            env=layout_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        app = make_app(demo, Providers(), attach="auto", attach_poll=0.05)
        # wait until the run holds the lock and has written its start, then start the console on its own
        from xdtui.follow import headless_run_in_progress

        from .conftest import wait_until

        await wait_until(lambda: headless_run_in_progress(demo.cfg.progress), what="the headless run to start")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen), what="the console to attach on its own")
            screen = app.screen
            await wait_for(pilot, lambda: screen.board_state.progress()[0] >= 1, what="a guest to finish")
            assert screen.board_state.active and screen.board_state.pid == proc.pid
            await wait_for(pilot, lambda: screen.board_state.finished is not None, timeout=40, what="the run to finish")
            b = screen.board_state
            assert b.exit_code == 1  # the demo's backup save hangs: killed, it leaves backup suspended (real xl)
            assert {n: b.rows[n].outcome for n in b.order}["web01"] == "saved"
            assert {n: b.rows[n].outcome for n in b.order}["backup"] == "suspended"
            await pilot.press("n")  # finished: skip stage does nothing
            assert isinstance(app.screen, AttachScreen)
            await pilot.press("h")
            await wait_for(pilot, lambda: isinstance(app.screen, HostScreen), what="the host view")
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 1


async def test_attach_starts_over_when_a_new_run_replaces_the_progress_file(demo, tmp_path):
    from xdcore.events import GuestPlanned, RunStarted

    progress = demo.cfg.progress
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text(RunStarted(run="old", verb="stop", pid=1).to_json() + "\n"
                        + GuestPlanned(run="old", guest="web01", stages=("save",)).to_json() + "\n")
    app = make_app(demo, Providers.frozen(), attach="force", attach_poll=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen), what="attach")
        screen = app.screen
        await wait_for(pilot, lambda: "web01" in screen.board_state.rows, what="the old run")
        tmp = progress.with_name(".new")
        tmp.write_text(RunStarted(run="new", verb="start", pid=2).to_json() + "\n")
        os.replace(tmp, progress)
        await wait_for(pilot, lambda: screen.board_state.run == "new", what="the new run")
        assert not screen.board_state.rows and screen.board_state.verb == "start"


@pytest.mark.parametrize("key", ["x", "n"])
async def test_run_only_actions_refuse_politely_without_a_run(demo, key):
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press(key)
        await pilot.pause(0.1)
        assert isinstance(app.screen, HostScreen)  # no dialog for nothing
        assert "Abort run" not in {c.title for c in app.screen.palette_commands()}


async def test_start_host_restores_saved_guests_and_creates_the_missing_auto_one(demo):
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await palette(pilot, app, "Start host")
        dialog = await confirm_plan(pilot, app)
        assert {(g.guest, g.stages) for g in dialog.plan.guests} == {
            ("wiki", ("restore",)), ("gitlab", ("restore",)), ("intranet", ("create",))}
        await run_to_end(pilot, app)
        b = app.host_screen.board_state
        assert b.verb == "start" and b.columns == ("restore", "create")
        assert {n: b.rows[n].outcome for n in ("wiki", "gitlab", "intranet")} == {
            "wiki": "restored", "gitlab": "restored", "intranet": "created"}
    assert {"wiki", "gitlab", "intranet"} <= guests_on(demo.demo_dir)
    assert demo.cfg.lockfile.exists()  # start leaves the "service started" marker, as the classic script


async def test_during_a_run_the_footer_offers_steering_and_starting_another_run_is_not_offered(demo):
    set_latency(demo.demo_dir, save=0.4)
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        footer = lambda: {b.binding.action.split("(")[0] for b in app.screen.active_bindings.values()  # noqa: E731
                          if b.enabled and b.binding.show}
        assert {"evacuate", "start", "mark", "help", "quit"} <= footer() and not {"skip_stage", "abort"} & footer()
        await evacuate_until_first_save(pilot, app)
        await wait_for(pilot, lambda: {"skip_stage", "abort", "parallel_step", "help", "quit"} <= footer(),
                       what="the footer to follow the run")
        assert not {"evacuate", "start", "mark"} & footer()
        assert "Save selected" not in {c.title for c in app.screen.palette_commands()}
        await pilot.press("v")  # save selected: not while a run holds the lock
        await pilot.pause(0.1)
        assert isinstance(app.screen, HostScreen)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the abort confirmation")
        await pilot.press("y")
        await run_to_end(pilot, app)
        await wait_for(pilot, lambda: "evacuate" in footer(), what="the footer to follow the end of the run")


async def test_turning_save_off_mid_run_shuts_the_remaining_guests_down(demo):
    set_latency(demo.demo_dir, save=0.4)
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await evacuate_until_first_save(pilot, app)
        await pilot.press("3")
        await wait_for(pilot, lambda: "save" in app.host_screen.board_state.disabled, what="save turned off in the run")
        await run_to_end(pilot, app, timeout=40)
        b = app.host_screen.board_state
        assert b.rows["web01"].outcome == "saved"
        assert b.rows["ldap"].outcome == "shutdown" and b.rows["ldap"].cell("save").status in ("disabled", "unneeded")
        assert "save" in b.disabled


async def test_a_failing_watcher_is_reported_in_the_log_and_started_again(demo, monkeypatch):
    from xdcore.errors import ToolstackError
    from xdtui.widgets.event_log import EventLog

    real = demo.toolstack.list_domains
    calls = {"n": 0}

    async def flaky():
        calls["n"] += 1
        if calls["n"] == 1:
            raise ToolstackError("xl list: simulated failure")
        return await real()

    monkeypatch.setattr(demo.toolstack, "list_domains", flaky)
    monkeypatch.setattr("xdtui.screens.run_view.POLLER_RETRY", 0.2)
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen, what="the watcher to recover")
        log = app.host_screen.query_one(EventLog)
        assert any("simulated failure" in line.text for line in log.lines)


async def test_the_timeline_of_a_finished_evacuation_shows_each_guest_planned_and_actual(demo):
    from xdtui.screens.run_timeline import RunTimeline
    from xdtui.widgets.timeline import TimelineView

    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        table = app.screen.query_one(DomainTable)
        table.move_cursor(row=table.get_row_index("web02"))
        await pilot.press("space", "space")  # web02 and the next row (db-primary)
        assert table.marked == {"web02", "db-primary"}
        await pilot.press("E")
        await confirm_plan(pilot, app)
        await run_to_end(pilot, app)
        run = app.host_screen.board_state.run
        await palette(pilot, app, "Timeline of the last run")
        await wait_for(pilot, lambda: isinstance(app.screen, RunTimeline), what="the timeline")
        screen = app.screen
        # the board may see RunFinished a moment before the report is final: the screen reads it again until then
        await wait_for(pilot, lambda: screen.report is not None and screen.report.run == run
                       and screen.report.exit_code is not None and not screen.waiting(), what="the run's final report")
        text = str(screen.query_one(TimelineView).render())
        lines = text.splitlines()
        assert "disk (save directory)" in text
        for guest in ("web02", "db-primary"):
            plan = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"{guest}") and " plan │" in ln)
            assert "░" in lines[plan] and "save" in lines[plan]
            assert " run  │" in lines[plan + 1] and "█" in lines[plan + 1] and "saved" in lines[plan + 1]
        assert f"run {run}" in str(screen.query_one("#timeline-heading").render())
        await pilot.press("s")  # the last start: none on this host yet
        await wait_for(pilot, lambda: screen.verb == "start", what="the start report")
        assert "No start report yet" in str(screen.query_one("#timeline-heading").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HostScreen), what="the host view")
        await pilot.press("T")  # the key opens the same view
        await wait_for(pilot, lambda: isinstance(app.screen, RunTimeline) and app.screen.report is not None,
                       what="the timeline by its key")
        assert "web02" in str(app.screen.query_one(TimelineView).render())


async def test_two_zombies_both_listed_as_null_each_have_their_own_row_by_domid(demo):
    cfg = demo.demo_dir / "configs" / "old-app.cfg"
    cfg.write_text(guest_config_text("old-app", 512, 1))
    second = add_domain(demo.demo_dir, config_of(cfg), config_path=str(cfg), flags=simhost.ZOMBIE_FLAGS)
    first = next(d.domid for d in simhost.load(demo.demo_dir).domains if d.name == "legacy-app")
    app = make_app(demo, Providers.frozen())
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        table = screen.query_one(DomainTable)
        zombies = sorted(k for k in table.names if table.domain(k).name == "(null)")
        assert zombies == sorted([row_key("(null)", first), row_key("(null)", second)]) \
            == sorted([f"(null) domid {first}", f"(null) domid {second}"])
        for key, domid in ((row_key("(null)", first), first), (row_key("(null)", second), second)):
            name, shown_id = (str(c) for c in table.get_row(key)[:2])
            assert (name.strip(), shown_id) == ("(null)", str(domid))  # "(null)" with its own domid
        table.keep_cursor_on("mail")
        await pilot.press("ctrl+s")  # sorted by name: both "(null)" rows first; the cursor stays on mail
        await wait_for(pilot, lambda: table.sort_column == "name", what="the sort by name")
        assert table.guest_at_cursor() == "mail" and table.get_row_index("mail") == 2 + sorted(RUNNING).index("mail")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), what="the plan dialog")
        plan_table = app.screen.query_one("#plan-table")  # the plan's table too: a row each (a second "(null)" crashed it)
        assert {str(plan_table.get_row(k)[0]) for k in zombies} == set(zombies)
        await pilot.press("y")
        await run_to_end(pilot, app, timeout=60)
        b = screen.board_state
        nameless = {n: (b.rows[n].domid, b.rows[n].outcome) for n in b.order if b.rows[n].guest == "(null)"}
        assert nameless == {row_key("(null)", first): (first, "zombie"), row_key("(null)", second): (second, "zombie")}
        board = screen.query_one(BoardTable)
        assert {str(board.get_row(k)[0]) for k in nameless} == {f"(null) domid {first}", f"(null) domid {second}"}
