"""The per-chunk accumulator: counts, time, a p95 within its bucket, errors, rows and bytes per hour
(event time), user and fingerprint; deltas of user-disjoint halves add up to the whole."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tests.helpers.events import T0
from tests.helpers.usage import delta, event
from usagewatch.config import CostConfig
from usagewatch.usage.aggregate import (
    BUCKETS,
    DURATION_MS,
    ERRORS,
    HIST,
    QUERIES,
    ROWS,
    TIMED,
    UsageDelta,
    bucket_bounds,
    bucket_of,
    percentile,
)

HOUR = int(T0.timestamp())


def test_counts_per_hour_of_event_time_user_and_fingerprint():
    events = [event("kim", T0 + timedelta(minutes=m), ms=100.0) for m in range(0, 60, 10)]  # 6 in hour 9
    events += [event("kim", T0 + timedelta(minutes=61), ms=None, error=True, rows=5, bytes_scanned=1000)]
    events += [event("lee", T0 + timedelta(minutes=5), ms=3.0, fingerprint="fp-b", tables=("orders", "companies"))]
    d = delta(events)
    kim9 = d.queries[(HOUR, "kim", "fp-a")]
    assert (kim9[QUERIES], kim9[ERRORS], kim9[TIMED], kim9[DURATION_MS]) == (6, 0, 6, 600.0)
    assert kim9[HIST + bucket_of(100.0)] == 6 and bucket_of(100.0) == 7  # [64, 128) ms
    kim10 = d.queries[(HOUR + 3600, "kim", "fp-a")]
    assert (kim10[QUERIES], kim10[ERRORS], kim10[TIMED], kim10[ROWS], sum(kim10[HIST:])) == (1, 1, 0, 5, 0)
    assert d.tables[(HOUR, "companies", "lee")] == [1, 0, 3.0]
    assert d.tables[(HOUR, "orders", "kim")] == [6, 0, 600.0]
    assert d.shapes == {"fp-a": ("SELECT /* fp-a */ ...", "select"), "fp-b": ("SELECT /* fp-b */ ...", "select")}


def test_histogram_buckets_are_powers_of_two_of_a_millisecond():
    assert [bucket_of(x) for x in (0.0, 0.99, 1.0, 1.99, 2.0, 1023.9, 1024.0)] == [0, 0, 1, 1, 2, 10, 11]
    assert bucket_of(10 ** 12) == BUCKETS - 1
    for i in range(1, BUCKETS - 1):
        low, high = bucket_bounds(i)
        assert bucket_of(low) == i and bucket_of(high - 0.001) == i


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_p95_is_within_the_bucket_of_the_true_value(seed):
    rnd = random.Random(seed)
    durations = [rnd.lognormvariate(4, 1.5) for _ in range(2000)]
    hist = [0] * BUCKETS
    for x in durations:
        hist[bucket_of(x)] += 1
    true = sorted(durations)[int(0.95 * len(durations)) - 1]
    low, high = bucket_bounds(bucket_of(true))
    p95 = percentile(hist, 0.95)
    assert p95 is not None and low / 1.0001 <= p95 <= high
    assert abs(p95 - true) / true < 0.5  # interpolation does better than the bucket's factor of two
    assert percentile([0] * BUCKETS, 0.95) is None


def test_the_deltas_of_user_disjoint_halves_add_up_to_the_whole():
    rnd = random.Random(7)
    users = [f"u{i}" for i in range(12)]
    events = [event(rnd.choice(users), T0 + timedelta(minutes=rnd.randrange(0, 600)), ms=rnd.choice([None, 0.5, 30.0, 900.0]),
                    fingerprint=rnd.choice(["fp-a", "fp-b", "fp-c"]), error=rnd.random() < 0.1,
                    tables=tuple(rnd.sample(["orders", "companies", "customers"], rnd.randint(0, 2))),
                    bytes_scanned=rnd.choice([None, 10 ** 9])) for _ in range(3000)]
    whole = delta(events)
    halves = [delta(e for e in events if (int(e.event.user[1:]) % 2) == k) for k in (0, 1)]  # type: ignore[index]
    merged = UsageDelta.merged(halves)
    assert merged.queries == whole.queries and merged.tables == whole.tables and merged.shapes == whole.shapes
    assert merged.totals()[QUERIES] == 3000


def test_cost_by_runtime_and_by_bytes_scanned():
    assert CostConfig(per_second=0.0001).of(duration_ms=2_000_000, bytes_scanned=0) == pytest.approx(0.2)
    assert CostConfig(per_tb_scanned=5.0).of(duration_ms=10, bytes_scanned=3 * 10 ** 12) == pytest.approx(15.0)
    both = CostConfig(per_second=1.0, per_tb_scanned=5.0)
    assert both.of(1500, 2 * 10 ** 11) == pytest.approx(1.5 + 1.0) and both.priced and not CostConfig().priced


def test_hours_are_utc_hours_of_the_event_time_whatever_the_zone_and_order():
    from datetime import timezone

    india = timezone(timedelta(hours=5, minutes=30))
    events = [event("kim", T0 + timedelta(minutes=59)), event("kim", T0 + timedelta(minutes=60)),
              event("kim", (T0 + timedelta(minutes=30)).astimezone(india)),  # 15:00 there, 09:30 UTC
              event("kim", T0 - timedelta(minutes=1))]
    d = delta(events)
    assert {k[0] - HOUR: row[QUERIES] for k, row in d.queries.items()} == {0: 2, 3600: 1, -3600: 1}
