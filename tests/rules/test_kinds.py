"""The rule kinds on timelines of hand-made events: query_pattern, threshold, spike, and the
filters every kind shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers.events import query
from usagewatch.errors import ConfigError
from usagewatch.rules import RuleEngine, load_rules


def engine(tmp_path: Path, **rule) -> RuleEngine:
    spec = {"id": "r", "title": "{{ user }} {{ count }}", "intervention": "-", "howto": "x.md", **rule}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(spec))
    return RuleEngine(load_rules([str(tmp_path / "r.yaml")]))


def fired(e: RuleEngine, events) -> list[tuple[str | None, int]]:
    return [(u.user, u.count) for u in e.updates(e.feed_all(events))]


def test_query_pattern_fires_on_the_first_matching_query_and_groups_repeats(tmp_path):
    e = engine(tmp_path, kind="query_pattern", params={"traits": ["select_star"]})
    assert fired(e, [query("kim", 0, traits=frozenset({"no_where"}))]) == []
    assert fired(e, [query("kim", 1, traits=frozenset({"select_star"}))]) == [("kim", 1)]
    assert fired(e, [query("kim", 2 + m, traits=frozenset({"select_star"})) for m in range(49)]) == [("kim", 50)]


def test_no_where_counts_only_on_tables_listed_as_large(tmp_path):
    e = engine(tmp_path, kind="query_pattern", params={"traits": ["no_where"], "large_tables": ["events*"]})
    nw = frozenset({"no_where"})
    assert fired(e, [query("a", 0, traits=nw, tables=("dim_country",), unfiltered=("dim_country",))]) == []
    assert fired(e, [query("a", 1, traits=nw, tables=("events_2026",), unfiltered=("events_2026",))]) == [("a", 1)]


def test_large_in_list_is_derived_per_rule(tmp_path):
    e = engine(tmp_path, kind="query_pattern", params={"traits": ["large_in_list"], "in_list_min": 500})
    assert fired(e, [query("a", 0, in_list_max=499)]) == []
    assert fired(e, [query("a", 1, in_list_max=500)]) == [("a", 1)]


def test_generic_expression_matcher(tmp_path):
    e = engine(tmp_path, kind="query_pattern", params={"expressions": ["Window", "join"]})
    assert fired(e, [query("a", 0, expressions=frozenset({"select", "window"}))]) == []
    assert fired(e, [query("a", 1, expressions=frozenset({"select", "window", "join"}))]) == [("a", 1)]


def test_unknown_trait_is_a_load_error_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match='unknown trait "select_start". Did you mean "select_star"'):
        engine(tmp_path, kind="query_pattern", params={"traits": ["select_start"]})


def test_threshold_counts_matching_events_in_the_window(tmp_path):
    e = engine(tmp_path, kind="threshold",
               params={"window": "15m", "min_runs": 10, "match": {"status": "failed"}})
    ok = [query("ann", m) for m in range(30)]
    failing = [query("ann", m, error_code="42P01", fingerprint=f"f{m % 3}") for m in range(9)]
    assert fired(e, ok + failing) == []
    ups = e.updates(e.feed_all([query("ann", 9, error_code="42601")]))
    assert [(u.user, u.count, u.distinct_values) for u in ups] == [("ann", 10, 4)]


def test_threshold_on_duration_ignores_events_without_one(tmp_path):
    e = engine(tmp_path, kind="threshold", params={"min_runs": 2, "match": {"min_duration": "5m"}})
    events = [query("a", 0), query("a", 1, duration_ms=299_000), query("a", 2, duration_ms=300_000)]
    assert fired(e, events) == []
    assert fired(e, [query("a", 3, duration_ms=900_000)]) == [("a", 2)]


def test_spike_against_the_groups_own_baseline(tmp_path):
    e = engine(tmp_path, kind="spike",
               params={"window": "1h", "baseline": "1d", "factor": 5, "min_runs": 50, "min_history": "12h"})
    history = [query("bob", h * 60 + m) for h in range(24) for m in range(0, 60, 6)]  # 10 an hour for a day
    assert fired(e, history) == []
    normal = [query("bob", 24 * 60 + m * 1.2) for m in range(45)]  # a busy hour, not a spike
    assert fired(e, normal) == []
    burst = [query("bob", 25 * 60 + m * 0.5) for m in range(60)]  # 60 in an hour against ~10
    assert fired(e, burst) == [("bob", 60)]


def test_a_spike_is_reported_for_its_bucket_when_a_quieter_one_follows_in_the_same_batch(tmp_path):
    """A burst that runs on past the end of its bucket: the finding is the bucket that spiked (its
    count, its start), not the quieter next bucket the batch's latest events fell in."""
    e = engine(tmp_path, kind="spike",
               params={"window": "1h", "baseline": "1d", "factor": 5, "min_runs": 50, "min_history": "12h"})
    history = [query("bob", h * 60 + m) for h in range(24) for m in range(0, 60, 6)]  # 10 an hour for a day
    assert fired(e, history) == []
    burst = [query("bob", 25 * 60 + 30 + m * 0.5) for m in range(60)]  # 60 in hour 25's last half hour
    burst += [query("bob", 26 * 60 + m) for m in range(12)]  # runs on into hour 26: 12, no spike there
    (update,) = e.updates(e.feed_all(burst))
    assert (update.user, update.count) == ("bob", 60)
    assert update.episode == update.first_seen.isoformat() and update.first_seen.hour == (9 + 25) % 24  # T0 09:00


def test_spike_needs_history(tmp_path):
    e = engine(tmp_path, kind="spike", params={"min_runs": 50, "min_history": "1d"})
    assert fired(e, [query("new", m * 0.1) for m in range(500)]) == []


@pytest.mark.parametrize("flt,user,minute,kept", [
    ({"allow": ["svc_*"]}, "svc_etl", 0, False),
    ({"allow": ["svc_*"]}, "kim", 0, True),
    ({"tables": ["orders"]}, "kim", 0, True),
    ({"exclude_tables": ["ord*"]}, "kim", 0, False),
    ({"sources": ["other"]}, "kim", 0, False),
    ({"hours": "09:30-17:00"}, "kim", 0, False),  # T0 is 09:00 UTC
    ({"hours": "09:30-17:00"}, "kim", 45, True),
    ({"hours": "09:30-17:00", "timezone": "Europe/Oslo"}, "kim", 45, True),  # 10:45 in Oslo
    ({"hours": "22:00-06:00"}, "kim", 45, False),
    ({"weekdays": ["sat", "sun"]}, "kim", 0, False),  # T0 is a Monday
])
def test_filters(tmp_path, flt, user, minute, kept):
    e = engine(tmp_path, kind="query_pattern", params={"traits": ["select_star"]}, filter=flt)
    got = fired(e, [query(user, minute, traits=frozenset({"select_star"}))])
    assert bool(got) == kept


def test_bad_hours_and_zone_are_load_errors(tmp_path):
    with pytest.raises(ConfigError) as info:
        engine(tmp_path, kind="threshold", filter={"hours": "9-17", "timezone": "Mars/Olympus"})
    text = str(info.value)
    assert "hours '9-17' must look like 08:00-18:00" in text and "unknown time zone 'Mars/Olympus'" in text
