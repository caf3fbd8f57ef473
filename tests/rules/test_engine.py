"""Stock rules on timelines of hand-made events (event time, no I/O)."""

from __future__ import annotations

import pytest

from tests.helpers.configs import STORY_RULES
from tests.helpers.events import run
from tests.helpers.windows import restored, save, window_store
from usagewatch.config import stock_rules_dir
from usagewatch.rules import RuleEngine, load_rules

STOCK = stock_rules_dir()


def engine() -> RuleEngine:
    return RuleEngine(load_rules(STORY_RULES))


def feed(e: RuleEngine, events):
    """The rendered updates a batch of ``events`` produces (one per rule and key)."""
    return e.updates(e.feed_all(events))


def test_twenty_different_ids_in_an_hour_fire_once_with_the_column():
    e = engine()
    ups = feed(e, [run("kim", m * 2, str(1000 + m)) for m in range(20)])
    assert [u.rule for u in ups] == ["same-query-different-ids"]
    u = ups[0]
    assert (u.user, u.count, u.distinct_values, u.varying) == ("kim", 20, 20, ["company_id"])
    assert u.sample_values == ["1000", "1001", "1002", "1003", "1004"]
    assert u.title == "kim ran one query 20 times with different company_id values"
    assert "company_id IN (1000, 1001, 1002, 1003, 1004, ...)" in u.intervention


def test_nineteen_runs_do_not_fire():
    assert feed(engine(), [run("ann", m, str(m)) for m in range(19)]) == []


def test_runs_spread_over_more_than_an_hour_do_not_fire():
    # 20 runs, one every 4 minutes: never 20 inside one hour
    assert feed(engine(), [run("lee", m * 4, str(m)) for m in range(20)]) == []


def test_same_value_twenty_times_is_the_repeated_rule_not_the_ids_rule():
    ups = feed(engine(), [run("dash", m, "7") for m in range(25)])
    assert [(u.rule, u.count, u.distinct_values) for u in ups] == [("same-query-repeated", 25, 1)]


def test_later_runs_update_the_same_episode_cumulatively():
    e = engine()
    first = feed(e, [run("kim", m * 0.5, str(m)) for m in range(70)])
    later = feed(e, [run("kim", 35 + m * 0.5, str(1000 + m)) for m in range(66)])
    assert first[0].episode == later[0].episode
    assert later[0].count == 136 and later[0].distinct_values == 136


def test_an_episode_that_ends_and_restarts_inside_one_batch_gives_both_updates():
    """A replay commits many chunks at once: a key that fired, went quiet for over an hour and
    fired again inside one batch must still report the first episode (its runs would be lost)."""
    e = engine()
    first = [run("kim", m, str(m)) for m in range(25)]
    second = [run("kim", 200 + m, str(500 + m)) for m in range(30)]
    ups = [u for u in feed(e, first + second) if u.rule == "same-query-different-ids"]
    assert [u.count for u in ups] == [25, 30]
    assert ups[0].episode != ups[1].episode


def test_window_state_survives_a_restart(tmp_path):
    """70 runs before a restart plus 66 after make one episode of 136 runs (DESIGN invariant)."""
    store = window_store(tmp_path)
    e1 = engine()
    feed(e1, [run("kim", m * 0.4, str(m)) for m in range(70)])
    save(e1, store)
    e2 = restored(store, engine().rules)
    ups = feed(e2, [run("kim", 28 + m * 0.4, str(1000 + m)) for m in range(66)])
    assert [(u.count, u.distinct_values) for u in ups if u.rule == "same-query-different-ids"] == [(136, 136)]


def test_users_are_separate_keys():
    events = [run(u, m, f"{u}{m}") for m in range(15) for u in ("a", "b")]
    assert feed(engine(), events) == []


def test_quiet_longer_than_the_window_starts_a_new_episode():
    e = engine()
    one = feed(e, [run("kim", m, str(m)) for m in range(20)])
    two = feed(e, [run("kim", 200 + m, str(100 + m)) for m in range(20)])
    # the first episode's final update comes again (idempotent: counts are absolute), then the new one
    assert [(u.episode, u.count) for u in two] == [(one[0].episode, 20), (two[-1].episode, 20)]
    assert one[0].episode != two[-1].episode


def test_filter_excludes_non_select_statements():
    assert feed(engine(), [run("etl", m, str(m), kind="insert") for m in range(30)]) == []


@pytest.mark.parametrize("name", sorted(p.name for p in STOCK.glob("*.yaml")))
def test_stock_rule_files_load(name):
    assert load_rules([str(STOCK / name)])


def _rule_file(tmp_path, min_runs: int, title: str = "{{ user }} ran it {{ count }} times") -> str:
    text = (STOCK / "same-query-different-ids.yaml").read_text()
    text = text.replace("min_runs: 20", f"min_runs: {min_runs}").replace("min_distinct: 20", f"min_distinct: {min_runs}")
    f = tmp_path / "r.yaml"
    f.write_text(text.replace(text[text.index("title: >-"):text.index("intervention:")], f"title: \"{title}\"\n"))
    return str(f)


def test_reload_keeps_windows_when_only_wording_changes(tmp_path):
    e = RuleEngine(load_rules([_rule_file(tmp_path, 20)]))
    feed(e, [run("kim", m, str(m)) for m in range(15)])
    report = e.replace(load_rules([_rule_file(tmp_path, 20, title="{{ user }}: {{ count }} runs")]))
    assert report["kept"] == ["same-query-different-ids"]
    ups = feed(e, [run("kim", 15 + m, str(100 + m)) for m in range(5)])
    assert [(u.count, u.title) for u in ups] == [(20, "kim: 20 runs")]


def test_reload_with_changed_logic_starts_empty_and_drops_saved_windows(tmp_path):
    store = window_store(tmp_path)
    e = RuleEngine(load_rules([_rule_file(tmp_path, 20)]))
    feed(e, [run("kim", m, str(m)) for m in range(15)])
    save(e, store)
    # windows saved under the old logic are not restored into the new one after a restart
    fresh = restored(store, load_rules([_rule_file(tmp_path, 10)]))
    assert feed(fresh, [run("kim", 15 + m, str(200 + m)) for m in range(5)]) == []
    report = e.replace(load_rules([_rule_file(tmp_path, 10)]))
    assert report["changed"] == ["same-query-different-ids"]
    assert feed(e, [run("kim", 15 + m, str(100 + m)) for m in range(5)]) == []
    save(e, store)  # the old logic's saved events are deleted; the new logic's 5 runs are saved
    assert [logic for _, logic, _ in store.window_log()] == [e.rules[0].logic]
    again = restored(store, load_rules([_rule_file(tmp_path, 10)]))
    ups = feed(again, [run("kim", 20 + m, str(300 + m)) for m in range(5)])
    assert [u.count for u in ups] == [10]
