"""The console's conventions, one Pilot test each, on the scripted host (no runs: events are posted).

k9s/lazygit/htop keys (? / j k Enter, sortable columns), the cursor staying on its guest, the 80×24
layout (idle board collapsed, the log full width during a run, z zooms), honest progress, words where
colour is absent, one log line per fact, the plan dialog's chains, caps, omissions and watchdog warning,
and the liveness of the host view.
"""

from __future__ import annotations

import dataclasses

from rich.text import Text

from xdcore.events import CommandFinished, GuestFinished, GuestSkipped, StageFinished
from xdcore.model import Domain, DomainState
from xdcore.plan import GuestPlan, Plan
from xdtui import board as B
from xdtui.app import make_app
from xdtui.messages import EventsArrived
from xdtui.providers import Providers
from xdtui.screens.guest_detail import GuestDetail
from xdtui.screens.help import HelpScreen
from xdtui.screens.plan_dialog import PlanDialog, chain, over_watchdog, plan_summary
from xdtui.widgets.domain_table import DomainTable
from xdtui.widgets.event_log import EventLog
from xdtui.widgets.stage_board import BoardTable, toggle_line, watchdog_style

from .conftest import wait_for
from .scripted import evacuation_events, scripted_host

RUN = "20251009T085000-abc123"


async def filled(pilot, app):
    await wait_for(pilot, lambda: app.host_screen and app.host_screen.domains_seen and app.host_screen.autos,
                   what="the host view")
    return app.host_screen


async def running(pilot, app):
    screen = await filled(pilot, app)
    screen.post_message(EventsArrived(evacuation_events()))
    await wait_for(pilot, lambda: screen.board_state.active, what="the board")
    return screen


async def test_question_mark_lists_every_key_of_the_screen():
    app = make_app(scripted_host("c-help"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = str(app.screen.query("Static").last().render())
        for words in ("Evacuate host", "Skip stage", "Filter guests", "j / k", "Guest detail", "Zoom pane"):
            assert words in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help to close")


async def test_j_and_k_move_and_enter_opens_the_guest_detail():
    app = make_app(scripted_host("c-jk"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        table = app.screen.query_one(DomainTable)
        assert table.guest_at_cursor() == "web01"
        await pilot.press("j", "j", "k")
        assert table.guest_at_cursor() == "web02"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GuestDetail), what="the detail")
        body = str(app.screen.query_one("#detail-body").render())
        assert "web02" in app.screen.facts.name and "name = \"web02\"" in body and "Save image" in body


async def test_slash_filters_and_the_columns_sort_while_the_cursor_stays_on_its_guest():
    app = make_app(scripted_host("c-filter"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await filled(pilot, app)
        table = app.screen.query_one(DomainTable)
        table.move_cursor(row=table.get_row_index("db-replica"))
        table.sort_by("mem")  # biggest first
        assert [table.get_row_at(i)[0].strip() for i in range(2)] == ["db-primary", "db-replica"]
        assert table.guest_at_cursor() == "db-replica"  # the cursor followed its guest
        await pilot.press("slash")
        await pilot.press(*"db", "enter")
        await wait_for(pilot, lambda: table.row_count == 2, what="the filter")
        assert "/db: 2 shown" in str(screen.query_one("#domains-pane").border_title)
        assert table.guest_at_cursor() == "db-replica"
        gone = [d for d in table._domains.values() if d.name != "db-primary"]
        extra = Domain(99, "db-new", memory_mib=16384, vcpus=1, state=DomainState.from_flags("-b----"))
        table.set_domains([*gone, extra])  # rows come and go
        assert table.guest_at_cursor() == "db-replica"


async def test_the_idle_board_is_collapsed_and_during_a_run_the_log_is_full_width_and_z_zooms():
    app = make_app(scripted_host("c-layout"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await filled(pilot, app)
        assert screen.has_class("-idle") and screen.query_one("#board").size.height <= 3
        assert screen.query_one("#auto").display
        await running(pilot, app)
        await pilot.pause(0.1)
        assert not screen.has_class("-idle") and screen.has_class("-running")
        assert screen.query_one("#log").size.width >= 78 and not screen.query_one("#auto").display
        board = screen.query_one(BoardTable)
        board.focus()
        await pilot.press("z")
        assert screen.maximized is board
        await pilot.press("z")
        assert screen.maximized is None


async def test_progress_counts_handled_skipped_and_failed_apart_and_an_aborted_run_never_reads_100():
    app = make_app(scripted_host("c-progress"), Providers.frozen())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await running(pilot, app)
        at = evacuation_events()[-1].at
        end = [GuestFinished(run=RUN, at=at, guest="db-primary", outcome="failed", detail="xl migrate exited 1"),
               GuestFinished(run=RUN, at=at, guest="db-replica", outcome="skipped", detail="run aborted"),
               GuestSkipped(run=RUN, at=at, guest="backup", reason="run aborted"),
               GuestFinished(run=RUN, at=at, guest="backup", outcome="skipped", detail="run aborted")]
        from xdcore.events import ControlApplied, RunFinished

        screen.post_message(EventsArrived([ControlApplied(run=RUN, at=at, action="abort"), *end,
                                           RunFinished(run=RUN, at=at + 1, verb="stop", exit_code=1, summary="…")]))
        await wait_for(pilot, lambda: screen.board_state.finished is not None, what="the end")
        status = str(screen.query_one("#board-status").render())
        assert "4/8 handled" in status and "3 skipped" in status and "1 failed" in status and "aborted" in status
        bar = screen.query_one("#board-progress")
        assert bar.progress < bar.total  # never 100 %
        lines = [str(line.text) for line in screen.query_one(EventLog).lines]
        assert sum("backup" in line and "skipped" in line for line in lines) == 1  # one line per fact


def test_a_killed_command_is_said_once_by_its_stage():
    from xdtui.eventtext import describe

    killed = CommandFinished(argv=("xl", "save", "3", "/s/x"), returncode=None, guest="x", stage="save")
    assert describe(killed) is None
    assert describe(StageFinished(stage="save", guest="x", outcome="timeout", elapsed=300))[0] == "error"


def test_toggles_read_without_colour_and_the_watchdog_colours_by_closeness():
    line = toggle_line({"sysrq": "n/a", "migrate": "on", "save": "off", "shutdown": "on", "shutdown_all": "on"}, None, 2)
    assert "SysRq:n/a" in line.plain and "Save:off" in line.plain and "Migr " in line.plain
    assert watchdog_style(250, 300) == "" and watchdog_style(120, 300) == "yellow" and watchdog_style(40, 300) == "bold red"
    assert watchdog_style(5, 20) == "bold red"


def test_running_cells_are_not_red():
    from xdtui.widgets.stage_board import cell_spec

    text, style = cell_spec(B.Cell(B.RUNNING, started=0.0), 5.0)
    assert "red" not in style and text.startswith("▶")


def _plan(n: int) -> Plan:
    guests = tuple(GuestPlan(f"vm{i:03d}", i + 1, 1024, ("sysrq", "save", "shutdown"), (), 400.0 if i == 0 else 10.0)
                   for i in range(n))
    return Plan("stop", guests, (("legacy", "dying: no migrate, save or shutdown"),), ("select", "cleanup"), 100.0, 2)


def test_the_plan_reads_as_a_fallback_chain_and_warns_when_an_estimate_exceeds_the_watchdog():
    assert chain(("sysrq", "migrate", "save", "shutdown")) == "SysRq, then Migrate, else Save, else Shutdown"
    plan = _plan(3)
    assert [g.guest for g in over_watchdog(plan, 300)] == ["vm000"]
    summary = plan_summary(plan, 300).plain
    assert "shorter than the estimate of vm000 (6m40s)" in summary and "1 left out" in summary


async def test_the_plan_dialog_caps_long_lists_names_who_is_left_out_and_keeps_its_buttons():
    app = make_app(scripted_host("c-plan"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        dialog = PlanDialog("Evacuate host", dataclasses.replace(_plan(636)), run_label="Evacuate")
        app.push_screen(dialog)
        await wait_for(pilot, lambda: app.screen is dialog, what="the dialog")
        await pilot.pause(0.2)
        table = dialog.query_one("#plan-table")
        assert table.row_count == 201
        assert str(table.get_row_at(200)[0]) == "… and 437 more"  # 636 planned + 1 left out, 200 shown
        run = dialog.query_one("#run")
        assert run.region.bottom <= 24 and run.region.height >= 1 and run.size.height > 0
        await pilot.press("t")
        assert dialog.on_hangup == "stop" and "stop at a clean point" in str(dialog.query_one("#plan-hangup").render())


async def test_the_host_view_says_a_headless_run_is_in_progress_and_that_it_is_live():
    app = make_app(scripted_host("c-live"), Providers.frozen())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await running(pilot, app)
        assert "headless stop in progress, pid 4242" in str(screen.query_one("#board").border_title)
        await wait_for(pilot, lambda: "08:53:20" in str(screen.query_one("#figures").render()), what="the clock")
        assert "No run" not in str(screen.query_one("#board-status").render())


async def test_the_board_says_the_time_left_and_a_failed_xenstored_probe_is_one_dim_note_per_session():
    from xdcore.events import GuestScheduled, RunStarted

    app = make_app(scripted_host("c-left"), Providers.frozen())
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await filled(pilot, app)
        evs = evacuation_events()
        t0 = evs[0].at
        probe = ("xenstore-read", "/tool/xenstored/domid")
        failed = CommandFinished(run=RUN, at=t0 + 0.1, argv=probe, returncode=1,
                                 stderr="xenstore-read: could not connect to xenstored\n")
        sched = [GuestScheduled(run=RUN, at=t0 + 0.3, guest=g, stage="migrate", finish=f)
                 for g, f in (("web01", 15.0), ("db-primary", 150.0), ("db-replica", 185.5))]
        from xdcore.events import CommandStarted

        screen.post_message(EventsArrived([evs[0], CommandStarted(run=RUN, at=t0 + 0.1, argv=probe), failed,
                                           *sched, *evs[1:]]))
        await wait_for(pilot, lambda: screen.board_state.active, what="the board")
        status = str(screen.query_one("#board-status").render())
        assert "about 1m05s left" in status  # db-replica: t0 + 0.3 + 185.5, and the clock is t0 + 120
        # a second run on the same console (the progress file replaced): the probe fails again, said no more
        run2 = "20251009T090000-def456"
        screen.post_message(EventsArrived([RunStarted(run=run2, at=t0 + 200, verb="stop", pid=4343),
                                           CommandStarted(run=run2, at=t0 + 200, argv=probe),
                                           CommandFinished(run=run2, at=t0 + 200, argv=probe, returncode=1,
                                                           stderr="could not connect to xenstored")], reset=True))
        await wait_for(pilot, lambda: screen.board_state.run == run2, what="the second run")
        log = screen.query_one(EventLog)
        text = [line.text for line in log.lines]
        assert sum("no xenstored answered" in t for t in text) == 1  # once for the two runs
        assert not any("$ xenstore-read" in t for t in text)  # neither run's probe is a line of its own
        note = next(line for line in log.lines if "no xenstored answered" in line.text)
        assert all(seg.style.dim and not seg.style.color for seg in note if seg.text.strip())  # dim, not red
        assert "no xenstored answered" not in status and "left" not in str(screen.query_one("#board-status").render())


async def test_log_lines_are_never_cut_and_a_long_command_is_shortened_in_the_middle():
    from xdcore.events import CommandStarted, RunFinished

    app = make_app(scripted_host("c-log"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await running(pilot, app)
        log = screen.query_one(EventLog)
        at = evacuation_events()[-1].at
        path = "/var/lib/xen/save/.xendomains-partial." + "a-guest-with-a-very-long-name-indeed"
        screen.post_message(EventsArrived([CommandStarted(run=RUN, at=at, argv=("xl", "save", "11", path), timeout=20,
                                                          guest="backup", stage="save")]))
        await wait_for(pilot, lambda: any("xl save 11" in line.text for line in log.lines), what="the command line")
        width = log.scrollable_content_region.width
        line = next(line.text for line in log.lines if "xl save 11" in line.text)
        assert len(line.rstrip()) == width and "…" in line  # one line, its middle gives way
        assert line.split(" ", 1)[1].startswith("$ xl save 11 /var/lib") and line.rstrip().endswith("(watchdog 20s)")
        summary = "10 saved, 1 suspended, 1 zombie — every word of this long summary line stays readable"
        screen.post_message(EventsArrived([RunFinished(run=RUN, at=at + 1, verb="stop", exit_code=1, summary=summary)]))
        await wait_for(pilot, lambda: screen.board_state.finished is not None, what="the end of the run")
        await wait_for(pilot, lambda: not screen.has_class("-running"), what="the log to narrow")
        await pilot.pause()
        narrow = log.scrollable_content_region.width
        assert narrow < width
        texts = [line.text.rstrip() for line in log.lines]
        assert all(len(t) <= narrow for t in texts)  # drawn again at the new width: wrapped, not cut
        assert summary.replace(" ", "") in "".join(texts).replace(" ", "")
        command = [t for t in texts if "$ xl sa" in t and "…" in t and t.endswith("20s)")]
        assert len(command) == 1, texts  # still one line, shortened to the narrower width


async def test_the_plan_dialog_with_its_timeline_keeps_the_hangup_choice_whole_and_its_buttons_on_screen():
    from textual.containers import Vertical

    app = make_app(scripted_host("c-plan-tl"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PlanDialog), what="the plan dialog", timeout=60)
        dialog = app.screen
        await pilot.pause()
        assert dialog.plan.scheduled and dialog.query("#plan-timeline")  # the tallest dialog there is
        inside = dialog.query_one(Vertical).content_region
        for button in ("#run", "#cancel"):
            region = dialog.query_one(button).region
            assert region.height >= 1 and inside.y <= region.y and region.bottom <= inside.bottom
        hangup = dialog.query_one("#plan-hangup")
        assert hangup.region.bottom <= inside.bottom
        assert len(hangup.render().plain) <= hangup.content_region.width  # "t If this terminal goes away: …" whole


def test_the_guest_detail_says_each_fact_once():
    from xdcore.config import Config
    from xdcore.report import GuestRecord, RunReport, StageRecord
    from xdtui.screens.guest_detail import GuestFacts, detail_text

    why = "save killed by the watchdog; backup was left SUSPENDED"
    rep = RunReport("stop", RUN, 1000.0, 1100.0, 1, guests=(GuestRecord(
        "backup", "suspended", why, 20.0, stages=(StageRecord("save", "timeout", 20.0, why),),
        notes=(f"error: {why}",)),))
    board = B.reduce_all(B.EMPTY_BOARD, evacuation_events())
    facts = GuestFacts("backup", row=board.rows["backup"], verb="stop", run=RUN)
    text = detail_text(facts, Config(), {"stop": rep, "start": None}).plain
    assert "stop at" in text and "the run above" in text  # the board's run: not told twice
    other = detail_text(dataclasses.replace(facts, run="another-run"), Config(), {"stop": rep, "start": None}).plain
    assert other.count(why) == 1  # the guest's reason; its stage and its note do not repeat it
    assert "(as above)" in other


async def test_a_refresh_draws_again_only_the_cells_that_changed_and_shows_every_change(monkeypatch):
    from textual.widgets import DataTable

    app = make_app(scripted_host("c-draw"), Providers.frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await filled(pilot, app)
        table = app.screen.query_one(DomainTable)
        await pilot.pause()
        drawn: list[tuple[int, int]] = []
        real = DataTable._render_cell

        def counting(self, row_index, column_index, *a, **kw):
            if self is table:
                drawn.append((row_index, column_index))
            return real(self, row_index, column_index, *a, **kw)

        monkeypatch.setattr(DataTable, "_render_cell", counting)
        table.set_domains([dataclasses.replace(d, cpu_time=d.cpu_time + 3600.0) if d.name == "web02" else d
                           for d in table._domains.values()])
        await wait_for(pilot, lambda: drawn, what="a frame")
        await pilot.pause()
        row = table.get_row_index("web02")
        assert set(drawn) == {(row, table._keys.index("cpu"))}  # one cell changed: one cell drawn again
        line = "".join(seg.text for seg in table.render_line(row + 1))  # + the header line
        assert "web02" in line and "2h23m" in line and "1h23m" not in line  # and it shows the new value
