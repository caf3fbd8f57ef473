"""The usage report on a crafted month of events: the Pareto sentence, every segment, the top
shapes with who runs them, error hot spots, teams, per-user rows with open findings, the series."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers.configs import write_config
from tests.helpers.events import T0
from tests.helpers.usage import commit, event
from tests.store.test_store import update
from usagewatch import config
from usagewatch.store import Batch, Store
from usagewatch.usage.report import build

DAY = timedelta(days=1)
NOW = T0 + 28 * DAY  # the report covers the 28 days from T0


def month() -> list:
    """Six users over the 28 days before T0 (the period before) and the 28 days after it."""
    ev = []
    at = lambda d, n=0: T0 + d * DAY + timedelta(minutes=n)  # noqa: E731
    ev += [event("whale", at(d), ms=50_000, fingerprint="fp-whale") for d in range(-20, 0)]
    ev += [event("whale", at(d), ms=36_000, fingerprint="fp-whale") for d in range(28)]
    ev += [event("newbie", at(d), ms=115_000, fingerprint="fp-new", tables=("events",)) for d in range(21, 28)]
    ev += [event("reg", at(-10), ms=100)]
    ev += [event("reg", at(d, n), ms=200) for d in range(0, 28, 3) for n in (0, 1)]
    ev += [event("quiet", at(d, n), ms=100) for d in range(-7, 21) for n in (0, 1, 2)]  # weeks 1-3, then nothing
    ev += [event("occ", at(-3), ms=100), event("occ", at(10), ms=100)]
    ev += [event("oops", at(-5), ms=100)]
    ev += [event("oops", at(12, n), ms=100, fingerprint="fp-oops", error=n < 4) for n in range(10)]
    return ev


@pytest.fixture
def report_of(tmp_path):
    def make(**usage):
        cfg = config.load(write_config(tmp_path, [], usage={"teams": {"data": ["whale", "newbie"]}, **usage}))
        store = Store(cfg.database)
        if not store.findings():
            commit(store, month())
            u = update(12, key="user=oops fingerprint=fp-oops")
            u.user = "oops"
            store.commit(Batch([u]))
        try:
            return build(store, cfg, timedelta(days=28), NOW)
        finally:
            store.close()
    return make


def test_pareto_sentence_and_curve(report_of):
    r = report_of()
    assert r.measure == "time"
    assert r.pareto.sentence == "33% of users (2 of 6) account for 99% of warehouse time."
    assert r.pareto.curve[0] == (0.0, 0.0) and r.pareto.curve[-1] == (1.0, 1.0) and len(r.pareto.curve) == 7
    assert [u.user for u in r.users] == ["whale", "newbie", "quiet", "reg", "oops", "occ"]


def test_each_segment(report_of):
    r = report_of()
    members = {s.key: s.members for s in r.segments}
    assert members == {
        "heavy": ["whale", "newbie"],          # the fewest users making up 80%, each above average
        "regular": ["quiet", "reg"],           # active on 7 or more of the 28 days
        "occasional": ["oops", "occ"],
        "new": ["newbie"],                     # first seen in the period (the others were seen before it)
        "gone_quiet": ["quiet"],               # 21 queries a week, then none in the last week
        "struggling": ["oops"],                # 4 of 10 failed
    }
    assert r.new_heavy == ["newbie"]  # whale was heavy in the period before too
    assert r.segment("regular").definition == "active on 7 or more of the period's 28 days"
    by = {u.user: u for u in r.users}
    assert by["quiet"].segments == ["regular", "gone_quiet"] and by["oops"].segments == ["occasional", "struggling"]


def test_users_fingerprints_tables_hot_spots_teams_and_series(report_of):
    r = report_of()
    by = {u.user: u for u in r.users}
    whale = by["whale"]
    assert (whale.queries, whale.time_s, whale.active_days, whale.team, whale.errors) == (28, 1008.0, 28, "data", 0)
    assert 32_768 <= whale.p95_ms <= 36_000  # the bucket [32768, 65536) ms, never above the total  # type: ignore[operator]
    assert (by["oops"].errors, by["oops"].error_rate, by["oops"].open_findings) == (4, 0.4, 1)
    assert by["newbie"].first_seen == (T0 + 21 * DAY).replace(minute=0)
    assert [f.fingerprint for f in r.fingerprints][:2] == ["fp-whale", "fp-new"]
    assert r.fingerprints[0].users == [("whale", 28)] and r.fingerprints[0].sql == "SELECT /* fp-whale */ ..."
    assert [(t.table, t.queries, t.user_count) for t in r.tables] == [("orders", 28 + 20 + 63 + 1 + 10, 5),
                                                                      ("events", 7, 1)]
    assert [(h.user, h.fingerprint, h.errors, h.queries) for h in r.hot_spots] == [("oops", "fp-oops", 4, 10)]
    assert [(t.team, t.users, t.queries) for t in r.teams] == [("data", 2, 35), ("(no team)", 4, 94)]
    assert r.granularity == "day" and len(r.series) == 29  # from T0's day to NOW's
    assert sum(p.queries for p in r.series) == r.totals["queries"] == 129
    assert r.series[12].errors == 4 and r.series[12].start == T0.replace(hour=0) + 12 * DAY


def test_cost_ranks_when_priced(report_of):
    r = report_of(cost={"per_second": 0.01, "currency": "EUR"})
    assert r.measure == "cost" and r.priced and r.currency == "EUR"
    assert r.pareto.sentence == "33% of users (2 of 6) account for 99% of the estimated cost."
    assert r.users[0].cost == pytest.approx(10.08)
    j = r.to_json()
    assert j["cost"] == {"currency": "EUR", "priced": True} and j["totals"]["cost"] == pytest.approx(18.244, abs=1e-3)


def test_an_empty_store_gives_an_empty_report(tmp_path):
    cfg = config.load(write_config(tmp_path, []))
    store = Store(cfg.database)
    r = build(store, cfg, timedelta(days=7), NOW)
    store.close()
    assert r.users == [] and r.pareto.sentence == "No usage in this period." and len(r.series) == 8
    assert all(s.members == [] for s in r.segments) and r.to_json()["totals"]["queries"] == 0


def test_the_same_report_from_postgresql(tmp_path, postgres_url):
    def made(url: str) -> dict:
        cfg = config.load(write_config(tmp_path, [], database=url, usage={"cost": {"per_second": 0.01}}))
        store = Store(cfg.database)
        try:
            commit(store, month())
            return build(store, cfg, timedelta(days=28), NOW).to_json()
        finally:
            store.close()

    assert made(postgres_url) == made(f"sqlite:///{tmp_path}/other.db")
