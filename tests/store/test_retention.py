"""Retention (store/retention.py): what goes, what stays, and a year of synthetic findings that
stays bounded; on SQLite and on a real PostgreSQL (which enforces the foreign keys)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from tests.store.test_locks import pg_url  # noqa: F401  (fixture)
from tests.store.test_store import update
from usagewatch.config import RetentionConfig
from usagewatch.model import WindowChanges
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dq
from usagewatch.store.retention import TABLES, run_retention
from usagewatch.store.tables import (
    deliveries,
    digest_items,
    digests,
    finding_days,
    finding_events,
    findings,
    outbox,
    rule_window_log,
    rule_windows,
)

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
CFG = RetentionConfig(closed_findings=timedelta(days=30), evidence=timedelta(days=14), every=timedelta(hours=6))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path}/uw.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(url)
    yield s
    s.close()


def rows(store: Store) -> dict[str, int]:
    tables = {"findings": findings, "finding_events": finding_events, "finding_days": finding_days,
              "outbox": outbox, "deliveries": deliveries, "digest_items": digest_items, "digests": digests,
              "rule_windows": rule_windows, "rule_window_log": rule_window_log}
    with store.engine.connect() as conn:
        return {n: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                for n, t in tables.items()}


def day_of_work(store: Store, day: int, n: int, seq: int) -> None:
    """``n`` findings opened on ``day``, each emailed and put in that day's digest; the findings
    opened 3 days earlier resolved (every 5th dismissed); the day's rule windows saved."""
    now = T0 + timedelta(days=day)
    ups = []
    for i in range(n):
        u = update(30, key=f"user=u{i} fingerprint=d{day}")
        u.first_seen, u.last_seen = now - timedelta(hours=1), now
        ups.append(u)
    ts = now.timestamp()
    states: dict[tuple[str, str], dict[str, Any] | None] = {("same-query-different-ids", f"user=u{i} fingerprint=d{day}"): {"last_ts": ts}
                                                            for i in range(n)}
    # the day's logged events, of a rule no longer configured: nothing but retention drops them
    log = [("gone-rule", "0" * 16, ts, [[f"user=u{i} fingerprint=d{day}", ts] for i in range(n)])]
    result = store.commit(Batch(ups, [], WindowChanges(states, log)), now=now)
    for row in dq.unrouted(store):
        dq.route(store, row, [dq.Planned("default", "email", "pending"), dq.Planned("team", "email", "queued")], now)
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.status == "pending")
                     .values(status="sent", sent_at=now, message_id="<m>", attempts=1))
    queued = [d["id"] for d in dq.queued(store, "team", "email")]
    items = [{"finding_id": f, "change": "opened", "count": 30, "distinct_values": 30} for f in result.new_findings]
    dq.record_digest(store, "team", "email", seq, f"<d{seq}>", now, items, queued)
    for f in store.findings(status="open"):
        if datetime.fromisoformat(f["first_seen"]) < now - timedelta(days=3):
            store.transition(f["id"], "dismissed" if f["id"] % 5 == 0 else "resolved", "ann", now=now)


def test_a_year_of_findings_stays_bounded(tmp_path):
    """SQLite only, for time; the PostgreSQL case of the same deletions is the test below."""
    store = Store(f"sqlite:///{tmp_path}/uw.db")
    n = 8
    sizes = {}
    deleted = dict.fromkeys(TABLES, 0)
    for day in range(365):
        day_of_work(store, day, n, day + 1)
        for k, v in run_retention(store, CFG, T0 + timedelta(days=day, hours=1), batch=50).items():
            deleted[k] += v  # the job: daily here (every 6 hours by default)
        if day in (100, 364):
            sizes[day] = rows(store)
    print(f"\n{n}/day for a year; kept at day 100: {sizes[100]}; at day 364: {sizes[364]}; deleted: {deleted}")
    for table in TABLES:
        assert sizes[364][table] <= sizes[100][table] + n, table  # flat after the first months
    assert sizes[364]["findings"] <= n * (3 + 1 + 30 + 1)  # open ones + closed within 30 days
    assert deleted["findings"] >= n * 300
    # digests: the last 14 days', plus older ones still holding the latest item of a kept finding
    assert sizes[364]["digests"] <= 30 + 3 + 1
    store.close()


def test_what_goes_and_what_stays(store):
    for day in range(60):
        day_of_work(store, day, 3, day + 1)
    now = T0 + timedelta(days=60)
    active = {f["id"] for f in store.findings() if f["status"] in ("open", "acknowledged", "coached")}
    run_retention(store, CFG, now)
    left = store.findings()
    assert {f["id"] for f in left} >= active  # active findings are never deleted
    closed = [f for f in left if f["status"] in ("resolved", "dismissed")]
    assert closed and all(datetime.fromisoformat(f["resolved_at"]) >= now - CFG.closed_findings for f in closed)
    with store.engine.connect() as conn:
        ids = {f["id"] for f in left}
        for t in (finding_events, finding_days, outbox, deliveries, digest_items):
            orphans = conn.execute(sa.select(t.c.finding_id).where(t.c.finding_id.not_in(ids))).all()
            assert orphans == [], t.name
        # the evidence of closed findings older than 14 days is gone, its finding kept
        old_sent = conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                                .where(deliveries.c.sent_at < now - CFG.evidence)).scalar()
        assert old_sent == 0  # (the active findings are younger than that here)
        assert conn.execute(sa.select(sa.func.min(finding_days.c.day))).scalar() >= "2025-02-15"
        latest = conn.execute(sa.select(sa.func.max(digests.c.seq))).scalar()
        assert latest == 60
        # an active finding keeps its latest digest item, whatever its age
        for fid in active:
            assert conn.execute(sa.select(sa.func.count()).select_from(digest_items)
                                .where(digest_items.c.finding_id == fid)).scalar() == 1
    assert rows(store)["rule_windows"] == 3 * 14  # windows of the last 14 days
    assert rows(store)["rule_window_log"] == 14
    assert run_retention(store, CFG, now) == dict.fromkeys(TABLES, 0)  # nothing more to do
