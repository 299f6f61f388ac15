"""`xendomains` runs the console's choices headlessly: one stage for named guests, stages off, guests left out."""

from __future__ import annotations

from .helpers import E2EHost


def host(tmp_path) -> E2EHost:
    return E2EHost.make(tmp_path, guests=[("web01", 512, 1), ("web02", 512, 1), ("db", 512, 1)],
                        auto=["web01", "web02", "db"], XENDOMAINS_MIGRATE="host2")


def test_one_stage_saves_only_the_named_guests_and_sweeps_nothing_else(tmp_path):
    h = host(tmp_path)
    res = h.run("--stage", "save", "--on-hangup", "stop", "stop", "web01", "db")
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web01": "saved", "db": "saved"}
    assert h.running() == {"web02"}  # never shutdown --all
    assert not h.history("migrate")
    assert h.has_valid_image("web01") and h.has_valid_image("db")
    started = next(e for e in res.events if e.kind == "run_started")
    assert started.on_hangup == "stop"
    report = h.run("report", "stop", json_out=False)
    assert "if its terminal went away: stop at a clean point" in report.stdout


def test_stages_turned_off_and_guests_left_out_apply_to_a_whole_evacuation(tmp_path):
    h = host(tmp_path)
    res = h.run("--disable-stage", "migrate", "--leave-out", "db", "stop")
    assert res.returncode == 1, res.describe()  # a guest left running is not evacuated: exit 1, as for any skip
    assert res.outcomes == {"web01": "saved", "web02": "saved", "db": "skipped"}
    assert not h.history("migrate")
    assert h.running() == {"db"}  # left out means untouched: no shutdown --all either


def test_a_migration_target_given_for_the_run_wins_over_the_config(tmp_path):
    h = host(tmp_path)
    res = h.run("--stage", "migrate", "--migrate-target", "host3", "stop", "web02")
    assert res.returncode == 0, res.describe()
    assert res.outcomes == {"web02": "migrated"} and h.migrated_to("host3") == ["web02"]


def test_run_options_on_the_wrong_verb_or_without_guests_are_usage_errors(tmp_path):
    h = host(tmp_path)
    for args, words in ((("--stage", "save", "stop"), "named guests"),
                        (("--stage", "save", "status"), "options of start and stop"),
                        (("--disable-stage", "select", "stop"), "required")):
        res = h.run(*args, json_out=False)
        assert res.returncode == 2 and words in res.stderr, res.describe()
    assert h.running() == {"web01", "web02", "db"}
