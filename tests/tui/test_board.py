"""The stage board reducer: a pure function of the events, used live and when attached."""

from __future__ import annotations

from xdcore.events import (
    CommandFinished,
    CommandStarted,
    ControlApplied,
    GuestFinished,
    GuestPlanned,
    GuestSkipped,
    MessageLogged,
    RunFinished,
    RunStarted,
    StageDowngraded,
    StageFinished,
    StageStarted,
)
from xdtui import board as B
from xdtui.eventtext import describe


def stop_run(run="r1", at=100.0):
    return RunStarted(run=run, at=at, verb="stop", pid=42, parallel=2,
                      stages=("select", "sysrq", "migrate", "save", "shutdown", "shutdown_all", "cleanup"))


def test_run_started_resets_the_board_with_the_stop_stage_columns():
    b = B.reduce(B.EMPTY_BOARD, stop_run())
    assert b.columns == ("sysrq", "migrate", "save", "shutdown")
    assert b.active and b.verb == "stop" and b.parallel == 2 and b.pid == 42


def test_planned_stages_are_pending_and_the_rest_off():
    b = B.reduce_all(B.EMPTY_BOARD, [stop_run(), GuestPlanned(run="r1", guest="web01", domid=3, stages=("migrate", "save"))])
    row = b.rows["web01"]
    assert row.cell("migrate").status == B.PENDING
    assert row.cell("save").status == B.PENDING
    assert row.cell("sysrq").status == B.OFF
    assert b.progress() == (0, 1)


def test_a_failed_migration_falls_through_and_the_save_ends_the_guest():
    b = B.reduce_all(B.EMPTY_BOARD, [
        stop_run(),
        GuestPlanned(run="r1", guest="web01", stages=("migrate", "save", "shutdown")),
        StageStarted(run="r1", at=101, stage="migrate", guest="web01", timeout=300),
        StageFinished(run="r1", at=103, stage="migrate", guest="web01", outcome="failed", elapsed=2.0),
        StageStarted(run="r1", at=103, stage="save", guest="web01", timeout=300),
        StageFinished(run="r1", at=110, stage="save", guest="web01", outcome="done", elapsed=7.0),
        GuestFinished(run="r1", at=110, guest="web01", outcome="saved", elapsed=9.0),
    ])
    row = b.rows["web01"]
    assert [row.cell(s).status for s in ("migrate", "save", "shutdown")] == [B.FAILED, B.DONE, B.UNNEEDED]
    assert row.outcome == "saved" and b.progress() == (1, 1)


def test_the_watchdog_counts_down_from_the_running_command():
    b = B.reduce_all(B.EMPTY_BOARD, [
        stop_run(),
        StageStarted(run="r1", at=100, stage="save", guest="db", timeout=300),
        CommandStarted(run="r1", at=101, argv=("xl", "save", "3", "/x"), timeout=300, guest="db", stage="save"),
    ])
    assert b.rows["db"].watchdog_left(now=161) == 240
    b = B.reduce(b, CommandFinished(run="r1", at=170, argv=("xl",), returncode=0, guest="db", stage="save"))
    assert b.rows["db"].watchdog_left(now=171) == 229  # falls back to the stage's own watchdog


def test_an_event_that_changes_nothing_returns_the_same_board():
    b = B.reduce(B.EMPTY_BOARD, stop_run())
    assert B.reduce(b, MessageLogged(run="r1", level="info", text="hello")) is b


def test_untouched_rows_keep_their_identity():
    b = B.reduce_all(B.EMPTY_BOARD, [stop_run(), GuestPlanned(run="r1", guest="a", stages=("save",)),
                                     GuestPlanned(run="r1", guest="b", stages=("save",))])
    a_before = b.rows["a"]
    b2 = B.reduce(b, StageStarted(run="r1", stage="save", guest="b"))
    assert b2.rows["a"] is a_before and b2.rows["b"] is not b.rows["b"]


def test_turning_a_stage_off_mid_run_marks_its_pending_cells_and_back_on_restores_them():
    b = B.reduce_all(B.EMPTY_BOARD, [stop_run(), GuestPlanned(run="r1", guest="a", stages=("save", "shutdown"))])
    b = B.reduce(b, ControlApplied(run="r1", action="disable_stage", stage="save"))
    assert b.rows["a"].cell("save").status == B.DISABLED and "save" in b.disabled
    b = B.reduce(b, ControlApplied(run="r1", action="enable_stage", stage="save"))
    assert b.rows["a"].cell("save").status == B.PENDING and not b.disabled


def test_skipped_and_downgraded_guests_show_why():
    b = B.reduce_all(B.EMPTY_BOARD, [
        stop_run(),
        GuestPlanned(run="r1", guest="a", stages=("migrate", "shutdown")),
        StageDowngraded(run="r1", guest="a", from_stage="migrate", to_stage="shutdown", reason="deadline"),
        GuestSkipped(run="r1", guest="b", reason="not in the auto directory"),
    ])
    assert b.rows["a"].cell("migrate").status == B.SKIPPED
    assert b.rows["b"].outcome == "skipped" and b.rows["b"].detail == "not in the auto directory"


def test_host_wide_stages_are_kept_apart_from_guests():
    b = B.reduce_all(B.EMPTY_BOARD, [stop_run(), StageStarted(run="r1", stage="shutdown_all", timeout=300),
                                     StageFinished(run="r1", stage="shutdown_all", outcome="done", elapsed=4)])
    assert b.host["shutdown_all"].status == B.DONE and not b.rows


def test_run_finished_ends_the_board():
    b = B.reduce_all(B.EMPTY_BOARD, [stop_run(), RunFinished(run="r1", at=150, verb="stop", exit_code=1, summary="1 failed")])
    assert not b.active and b.finished == 150 and b.exit_code == 1


def test_a_side_run_owns_the_guests_it_planned_and_late_events_of_the_main_run_are_ignored():
    b = B.reduce_all(B.EMPTY_BOARD, [
        stop_run("main"),
        GuestPlanned(run="main", guest="web01", stages=("save", "shutdown")),
        RunStarted(run="side", verb="stop", pid=42),
        GuestPlanned(run="side", guest="web01", stages=("migrate",)),
        StageStarted(run="side", stage="migrate", guest="web01"),
        StageFinished(run="side", stage="migrate", guest="web01", outcome="done", elapsed=1),
        GuestFinished(run="side", guest="web01", outcome="migrated"),
        RunFinished(run="side", verb="stop", exit_code=0),
        GuestSkipped(run="main", guest="web01", reason="skipped by operator"),
    ])
    assert b.rows["web01"].outcome == "migrated"
    assert b.active and b.run == "main"  # the main run goes on


def test_start_columns_are_restore_and_create():
    b = B.reduce(B.EMPTY_BOARD, RunStarted(run="s", verb="start", pid=1))
    assert b.columns == ("restore", "create")


def test_the_log_leaves_out_chatty_successes_and_keeps_failures():
    assert describe(StageStarted(stage="save", guest="a")) is None
    assert describe(CommandFinished(argv=("xl", "save"), returncode=0)) is None
    level, text = describe(StageFinished(stage="save", guest="a", outcome="timeout", elapsed=300, detail="killed"))
    assert level == "error" and "a: Save timeout" in text
    level, text = describe(ControlApplied(action="abort"))
    assert level == "warning" and "abort" in text


def test_rows_are_grouped_by_order_and_show_each_gate():
    from xdcore.events import GateFinished, GateWaiting, GroupStarted
    from xdtui.widgets.stage_board import row_specs

    start = RunStarted(run="r1", verb="start", pid=1, toolstack="xl", parallel=1, at=100.0)
    evs = [start] + [GuestPlanned(run="r1", guest=g, stages=("create",)) for g in ("web", "app", "db")]
    evs += [GroupStarted(run="r1", verb="start", index=0, of=3, label="order 10", guests=("db",)),
            GateWaiting(run="r1", guest="db", gate="ready", timeout=300.0)]
    b = B.reduce_all(B.EMPTY_BOARD, evs)
    assert b.order == ("db", "web", "app") and b.rows["db"].group == 0 and b.rows["db"].gate == "waiting"
    specs = row_specs(b.rows["db"], b.columns, 101.0)
    assert specs[0][0] == "1│db" and specs[-1][0] == "up, waiting…"
    b = B.reduce_all(b, [GateFinished(run="r1", guest="db", outcome="timeout", elapsed=300.0),
                         GroupStarted(run="r1", verb="start", index=1, of=3, label="order 20", guests=("app",))])
    assert b.order == ("db", "app", "web") and b.rows["db"].gate == "not ready"
    assert row_specs(b.rows["db"], b.columns, 400.0)[-1][0] == "up, not ready"
    assert describe(GateFinished(run="r1", guest="db", outcome="open", elapsed=2.0))[0] == "success"


def test_the_board_keeps_each_migration_targets_room_and_the_migrations_in_flight():
    from xdcore.events import GuestPlaced, StageFinished, StageStarted, TargetProbed
    from xdtui.widgets.stage_board import host_line

    b = B.reduce_all(B.EMPTY_BOARD, [
        stop_run(),
        TargetProbed(run="r1", target="xen02", free_mib=16384, total_mib=18432, reserve_mib=1024, at_once=2),
        TargetProbed(run="r1", target="xen03", error="ssh: connect to host xen03 port 22: No route to host"),
        GuestPlaced(run="r1", guest="web", target="xen02", memory_mib=2048),
        GuestPlaced(run="r1", guest="db", target="xen02", memory_mib=4096),
        StageStarted(run="r1", stage="migrate", guest="web", detail="xen02"),
    ])
    t = b.targets["xen02"]
    assert t.room_left_mib == 15360 - 6144 and t.in_flight == ("web",) and b.targets["xen03"].error
    assert t.at_once == 2
    assert "xen02 1/2 migrating · 9.0 GiB left" in host_line(b, 200.0).plain
    assert "xen03 left out" in host_line(b, 200.0).plain
    moved = B.reduce_all(b, [GuestPlaced(run="r1", guest="db", target="", by="operator"),
                             StageFinished(run="r1", stage="migrate", guest="web", outcome="done", detail="xen02")])
    assert moved.targets["xen02"].room_left_mib == 15360 - 2048 and moved.targets["xen02"].in_flight == ()
    assert "xen02 0/2 migrating · 13.0 GiB left" in host_line(moved, 200.0).plain  # the cap, also with none in flight
    # a target announced without a cap (no bound of its own, or a progress file from before the field): the count alone
    old = B.reduce_all(B.EMPTY_BOARD, [stop_run(), TargetProbed(run="r1", target="xen02", free_mib=16384, reserve_mib=1024),
                                       StageStarted(run="r1", stage="migrate", guest="web", detail="xen02")])
    assert "xen02 1 migrating · " in host_line(old, 200.0).plain
    assert describe(TargetProbed(target="xen03", error="No route to host")) == (
        "warning", "target xen03 left out: No route to host")
    assert describe(GuestPlaced(guest="huge", target="", reason="no target can take 30720 MiB"))[0] == "warning"


def test_time_left_comes_from_the_plans_finish_of_the_guests_not_yet_done():
    from xdcore.events import GuestScheduled

    b = B.reduce_all(B.EMPTY_BOARD, [
        stop_run(at=100.0),
        GuestScheduled(run="r1", at=101.0, guest="web", stage="migrate", resource="link:xen02", finish=30.0),
        GuestScheduled(run="r1", at=101.0, guest="db", stage="save", resource="disk", finish=90.0),
        GuestPlanned(run="r1", at=101.0, guest="web", stages=("migrate", "save")),
        GuestPlanned(run="r1", at=101.0, guest="db", stages=("migrate", "save")),
    ])
    assert b.plan_origin == 101.0
    assert b.remaining(111.0) == 80.0  # db's predicted finish 101 + 90, ten seconds in
    b = B.reduce(b, GuestFinished(run="r1", at=150.0, guest="db", outcome="saved", elapsed=49.0))
    assert b.remaining(120.0) == 11.0  # only web is left: 101 + 30
    assert b.remaining(200.0) == 0.0  # past its estimate: never negative
    done = B.reduce(b, GuestFinished(run="r1", at=201.0, guest="web", outcome="migrated", elapsed=100.0))
    assert done.remaining(202.0) is None  # every scheduled guest is done: nothing to estimate


def test_no_time_left_is_shown_without_a_schedule_or_after_the_run():
    from xdcore.events import GuestScheduled

    plain = B.reduce_all(B.EMPTY_BOARD, [stop_run(), GuestPlanned(run="r1", guest="web", stages=("save",))])
    assert plain.remaining(150.0) is None  # absent, not 0
    side = B.reduce(B.reduce(plain, stop_run(run="r2")),
                    GuestScheduled(run="r2", guest="web", stage="save", finish=60.0))
    assert side.remaining(150.0) is None  # a side run's schedule is not the main run's
    sched = B.reduce(plain, GuestScheduled(run="r1", at=100.0, guest="web", stage="save", finish=60.0))
    assert sched.remaining(130.0) == 30.0
    over = B.reduce(sched, RunFinished(run="r1", at=140.0, verb="stop", exit_code=1, summary="aborted"))
    assert over.remaining(141.0) is None
