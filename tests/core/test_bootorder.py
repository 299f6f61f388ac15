"""Boot order: ascending groups, driver domains before their clients, cycles named."""

from __future__ import annotations

from xdcore.bootorder import boot_order
from xdcore.policy import Gate, GuestPolicy


def P(name, order=None, backends=(), up=None):
    return GuestPolicy(name, order=order, backends=tuple(backends), up_wait=up or Gate())


def groups(bo):
    return [list(g.guests) for g in bo.groups]


def test_no_policy_is_one_group_in_listing_order():
    bo = boot_order(["b", "a", "c"], {})
    assert groups(bo) == [["b", "a", "c"]] and bo.trivial and bo.ok


def test_ordered_groups_ascend_and_unordered_come_last():
    pols = {"app1": P("app1", 20), "db": P("db", 10, up=Gate("ready")), "misc": P("misc"), "app2": P("app2", 20)}
    bo = boot_order(["app1", "misc", "app2", "db"], pols)
    assert groups(bo) == [["db"], ["app1", "app2"], ["misc"]]
    assert bo.groups[0].gated and not bo.groups[1].gated and not bo.trivial
    assert [g.label for g in bo.groups] == ["order 10", "order 20", "unordered"]
    assert groups(type(bo)(bo.stop_groups())) == [["misc"], ["app1", "app2"], ["db"]]


def test_a_driver_domain_goes_just_before_its_earliest_client_without_any_order():
    pols = {"web": P("web", backends=["netdd"]), "netdd": P("netdd"), "other": P("other")}
    bo = boot_order(["web", "other", "netdd"], pols)
    assert groups(bo) == [["netdd"], ["web", "other"]]
    assert bo.depends == {"web": ("netdd",)}
    assert any("serves web" in w for w in bo.why["netdd"])


def test_a_storage_domain_serving_an_ordered_db_moves_before_the_db():
    pols = {"db": P("db", 10, backends=["stor"]), "app": P("app", 20, backends=["netdd"]), "stor": P("stor"),
            "netdd": P("netdd", 5)}
    bo = boot_order(["app", "db", "stor", "netdd"], pols)
    assert groups(bo) == [["stor"], ["netdd"], ["db"], ["app"]] or groups(bo) == [["netdd"], ["stor"], ["db"], ["app"]]
    assert bo.group_of("stor").rank < bo.group_of("db").rank


def test_chains_of_driver_domains_and_xenstore_edges_and_domid_backends():
    pols = {"c": P("c", backends=["7"]), "b": P("b"), "a": P("a")}
    bo = boot_order(["c", "b", "a"], pols, edges=[("a", "b")], domid_names={7: "b"})
    assert groups(bo) == [["a"], ["b"], ["c"]]


def test_a_cycle_is_named_and_its_members_kept_together():
    pols = {"x": P("x", backends=["y"]), "y": P("y", backends=["z"]), "z": P("z", backends=["x"]), "w": P("w")}
    bo = boot_order(["w", "x", "y", "z"], pols)
    assert not bo.ok and set(bo.cycles[0]) == {"x", "y", "z"}
    assert "dependency cycle:" in bo.cycle_errors()[0]
    assert bo.in_cycle == {"x", "y", "z"}


def test_a_backend_that_is_not_here_is_a_note_unless_it_runs():
    pols = {"web": P("web", backends=["netdd"])}
    assert boot_order(["web"], pols).notes
    assert not boot_order(["web"], pols, running=["netdd"]).notes
