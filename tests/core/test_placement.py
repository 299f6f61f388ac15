"""Placement of guests on several migration targets (xdcore.placement): pure, so checked exhaustively."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xdcore.placement import GuestNeed, Ledger, TargetHost, leave_out_older, place

T = [TargetHost("xen02", 16384), TargetHost("xen03", 24576), TargetHost("xen04", 8192)]


def test_largest_first_onto_the_target_with_most_room_after_the_reserve():
    ledger, decisions = place(T, [GuestNeed("small", 1024), GuestNeed("big", 12288), GuestNeed("mid", 8192)], 1024)
    assert [(d.guest, d.target) for d in decisions] == [("big", "xen03"), ("mid", "xen02"), ("small", "xen03")]
    assert ledger.room == {"xen02": 15360 - 8192, "xen03": 23552 - 12288 - 1024, "xen04": 7168}


def test_a_guest_that_fits_nowhere_gets_no_target_and_says_why():
    _, [d] = place(T, [GuestNeed("huge", 30000)], 1024)
    assert d.target == "" and "no target can take 30000 MiB" in d.reason and "xen03 has 23552 MiB" in d.reason


def test_an_unreachable_target_is_never_chosen():
    targets = [TargetHost("xen02", 4096), TargetHost("xen03", error="No route to host")]
    _, [d] = place(targets, [GuestNeed("web", 1024)], 1024)
    assert d.target == "xen02"


def test_a_target_on_an_older_xen_is_left_out_and_the_same_or_newer_kept():
    targets = [TargetHost("old", 65536, xen_version="4.16.5", xen_release=(4, 16)),
               TargetHost("same", 4096, xen_version="4.17.2", xen_release=(4, 17)),
               TargetHost("newer", 8192, xen_version="4.18.0", xen_release=(4, 18)),
               TargetHost("major", 2048, xen_version="3.4.0", xen_release=(3, 4)),
               TargetHost("silent", 2048)]  # states no version: not judged
    checked = {t.name: t for t in leave_out_older(targets, "4.17.7", (4, 17))}
    assert [n for n, t in checked.items() if not t.reachable] == ["old", "major"]
    assert checked["old"].error.startswith("runs Xen 4.16.5, older than this host's Xen 4.17.7 (4.16 < 4.17)")
    _, [d] = place(list(checked.values()), [GuestNeed("web", 3000)], 1024)
    assert d.target == "newer"  # "old" had by far the most room
    assert leave_out_older(targets, "", None) == targets  # this host's version unknown: nothing judged


def test_the_operators_placements_come_first_and_the_rest_is_placed_by_room_around_them():
    ledger = Ledger(T, [GuestNeed("big", 12288), GuestNeed("mid", 8192), GuestNeed("small", 1024, targets=("xen03",))],
                    1024)
    decisions = ledger.place_all({"mid": "xen03", "small": "xen04"})  # a pin the operator overrides
    assert [(d.guest, d.target, d.by) for d in decisions] == [
        ("mid", "xen03", "operator"), ("small", "xen04", "operator"), ("big", "xen02", "placement")]
    assert decisions[0].reason == "placed by the operator (15360 MiB left there)"
    assert ledger.refused == [] and ledger.room == {"xen02": 15360 - 12288, "xen03": 23552 - 8192, "xen04": 7168 - 1024}


def test_an_operators_placement_that_would_over_commit_or_names_a_left_out_target_is_refused_and_takes_nothing():
    targets = [TargetHost("xen02", 4096), TargetHost("xen03", error="No route to host")]
    ledger = Ledger(targets, [GuestNeed("web", 2048), GuestNeed("db", 8192), GuestNeed("app", 1024)], 1024)
    decisions = ledger.place_all({"db": "xen02", "web": "xen03", "ghost": "xen02"})
    assert ledger.refused == [("db", "xen02", "xen02 has 3072 MiB of room, needs 8192 MiB"),
                              ("web", "xen03", "xen03 is left out (No route to host)"),
                              ("ghost", "xen02", "ghost does not migrate in this evacuation (not selected, dying, "
                                                 "or its xendomains_stop has no migrate)")]
    assert {d.guest: d.target for d in decisions} == {"web": "xen02", "app": "xen02", "db": ""}
    assert ledger.room["xen02"] == 3072 - 2048 - 1024  # never below zero


def test_a_pinned_guest_goes_only_to_its_targets_even_with_less_room():
    _, [d] = place(T, [GuestNeed("app", 1024, targets=("xen04",))], 1024)
    assert d.target == "xen04"
    _, [d] = place(T, [GuestNeed("app", 9000, targets=("xen04",))], 1024)
    assert d.target == "" and "xen04 has 7168 MiB" in d.reason


def test_guests_kept_apart_never_share_a_target_whichever_names_the_other():
    needs = [GuestNeed("db1", 2048, apart=("db2",)), GuestNeed("db2", 2048), GuestNeed("db3", 1024, apart=("db1", "db2"))]
    _, decisions = place(T, needs, 1024)
    where = {d.guest: d.target for d in decisions}
    assert len(set(where.values())) == 3


def test_a_failed_migration_re_places_on_an_untried_target_then_gives_up():
    ledger, _ = place(T, [GuestNeed("web", 4096)], 1024)
    assert ledger.target_of("web") == "xen03"
    assert ledger.failed("web", "xen03").target == "xen02"
    assert ledger.failed("web", "xen02").target == "xen04"
    last = ledger.failed("web", "xen04")
    assert last.target == "" and "migration to xen03 failed" in last.reason
    assert ledger.room == {"xen02": 15360, "xen03": 23552, "xen04": 7168}  # all room given back


def test_the_operator_may_move_a_guest_within_room_and_apart_but_not_beyond():
    ledger, _ = place(T, [GuestNeed("a", 7500), GuestNeed("b", 2000, apart=("a",))], 1024)
    assert ledger.move("b", "xen04") is None and ledger.target_of("b") == "xen04"
    assert "kept apart from a" in (ledger.move("b", ledger.target_of("a")) or "")
    assert ledger.move("a", "xen04") == "kept apart from b (on xen04)"
    ledger.move("b", "xen02")
    assert ledger.move("a", "xen04") == "xen04 has 7168 MiB of room, needs 7500 MiB"
    assert "not one of the migration targets" in (ledger.move("a", "xen09") or "")
    ledger.migrated("a", ledger.target_of("a"))
    assert "already migrated" in (ledger.move("a", "xen02") or "")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 20000), max_size=25), st.lists(st.integers(0, 40000), min_size=1, max_size=4),
       st.integers(0, 4096))
def test_no_target_is_ever_promised_more_than_its_free_memory_less_the_reserve(sizes, frees, reserve):
    targets = [TargetHost(f"t{i}", f) for i, f in enumerate(frees)]
    needs = [GuestNeed(f"g{i}", m) for i, m in enumerate(sizes)]
    ledger, decisions = place(targets, needs, reserve)
    for t in targets:
        promised = sum(n.memory_mib for n in needs if ledger.target_of(n.name) == t.name)
        assert promised <= max(0, t.free_mib - reserve)
    # a guest left without a target fits in no target's room that was left when its turn came
    for d in decisions:
        if not d.target:
            size = sizes[int(d.guest[1:])]
            assert all(ledger.room[t.name] < size for t in targets)
