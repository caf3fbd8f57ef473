"""Usage rows in the store, on SQLite and PostgreSQL: deltas add to existing rows in the batch's
transaction, hours roll up into days without changing any total, old days go, and a database at
revision 0002 gets the usage tables."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers.events import T0
from tests.helpers.usage import commit, delta, event, stored, totals
from tests.store.test_migrations import alembic_revision, upgrade_to
from usagewatch.errors import StoreError
from usagewatch.model import FileCursor
from usagewatch.store import Batch, Store, migrations
from usagewatch.store import usage as usage_store
from usagewatch.store.tables import usage_queries, usage_shapes


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def test_deltas_add_to_the_stored_rows(store):
    batch = [event("kim", T0, ms=100.0), event("kim", T0 + timedelta(minutes=5), ms=3000.0, error=True,
                                               bytes_scanned=10 ** 9, rows=7)]
    commit(store, batch)
    commit(store, batch)
    (row,) = stored(store)["queries"].values()
    assert (row["queries"], row["errors"], row["timed"], row["duration_ms"], row["rows"], row["bytes"]) == \
        (4, 2, 4, 6200.0, 14, 2 * 10 ** 9)
    assert row["h07"] == 2 and row["h12"] == 2  # 100 ms in [64, 128), 3 s in [2048, 4096)
    assert stored(store)["tables"][("h", T0, "orders", "kim")] == {"queries": 4, "errors": 2, "duration_ms": 6200.0}
    assert list(stored(store)["shapes"]) == [("fp-a",)]


def test_usage_is_saved_with_the_checkpoint_or_not_at_all(store, monkeypatch):
    cursor = FileCursor(source="s", path="/x.csv", dev=1, inode=2, head_len=0, head_hash="", offset=100)

    def broken(conn, d):
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(usage_store, "add", broken)
    with pytest.raises(StoreError):
        store.commit(Batch(cursors=[cursor], usage=delta([event("kim", T0)])))
    assert store.cursors("s") == {} and stored(store)["queries"] == {}


def test_hours_roll_up_into_days_keeping_every_total_and_old_days_go(store):
    events = [event(u, T0 + timedelta(hours=h), ms=ms, fingerprint=fp, error=(h % 5 == 0), bytes_scanned=1000)
              for h in range(0, 72, 3) for u in ("kim", "lee") for fp, ms in (("fp-a", 40.0), ("fp-b", 2500.0))]
    commit(store, events)
    before = totals(store)
    assert before["queries"] == 96
    now = T0 + timedelta(days=3)
    counts = usage_store.roll_up(store.engine, hourly_before=now - timedelta(days=1), keep_before=T0 - timedelta(days=30))
    assert counts["usage_queries rolled up"] == 2 * 2 * (5 + 8)  # the hours of the first two days, whole days only
    assert totals(store) == before
    rows = stored(store)["queries"]
    day0 = T0.replace(hour=0)
    assert rows[("d", day0, "kim", "fp-b")]["queries"] == 5  # 09:00 .. 21:00 of the first day
    assert rows[("d", day0, "kim", "fp-b")]["h12"] == 5
    assert {k[0] for k in rows if k[1] >= day0 + timedelta(days=2)} == {"h"}
    assert {k[0] for k in rows if k[1] < day0 + timedelta(days=2)} == {"d"}
    assert usage_store.roll_up(store.engine, now - timedelta(days=1), T0 - timedelta(days=30))["usage_queries rolled up"] == 0
    # days before keep_before are deleted, and shapes nothing refers to any more
    commit(store, [event("old", T0 - timedelta(days=500), fingerprint="fp-old")])
    counts = usage_store.roll_up(store.engine, now - timedelta(days=1), keep_before=now - timedelta(days=400))
    assert (counts["usage_queries"], counts["usage_tables"], counts["usage_shapes"]) == (1, 1, 1)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(usage_queries)
                            .where(usage_queries.c.user == "old")).scalar() == 0
        assert {r.fingerprint for r in conn.execute(sa.select(usage_shapes))} == {"fp-a", "fp-b"}
    assert totals(store) == before


def test_a_database_at_revision_0002_gets_the_usage_tables(store_url):
    upgrade_to(store_url, "0002")
    s = Store(store_url)
    assert s.upgraded is not None and (s.upgraded.before, s.upgraded.after) == ("0002", migrations.head())
    assert alembic_revision(store_url) == migrations.head()
    assert {"usage_queries", "usage_tables", "usage_shapes"} <= set(sa.inspect(s.engine).get_table_names())
    commit(s, [event("kim", T0)])
    assert totals(s)["queries"] == 1
    s.close()


def test_the_stored_columns_follow_the_accumulators_counter_layout():
    """``store.usage.add`` writes the counter lists as they are: their layouts must agree."""
    from usagewatch.usage import aggregate as a

    assert [usage_store.Q_VALUES.index(n) for n in ("queries", "errors", "timed", "duration_ms", "rows", "bytes",
                                                    "max_ms", "h00")] == \
        [a.QUERIES, a.ERRORS, a.TIMED, a.DURATION_MS, a.ROWS, a.BYTES, a.MAX_MS, a.HIST]
    assert len(usage_store.Q_VALUES) == a.QUERY_FIELDS
    assert [usage_store.T_VALUES.index(n) for n in ("queries", "errors", "duration_ms")] == \
        [a.T_QUERIES, a.T_ERRORS, a.T_DURATION_MS] and len(usage_store.T_VALUES) == a.TABLE_FIELDS


def test_the_retention_job_rolls_usage_up_by_the_configured_ages(store):
    from usagewatch.config import UsageConfig
    from usagewatch.store.retention import run_usage_retention

    commit(store, [event("kim", T0 - timedelta(days=d)) for d in (1, 20, 500)])
    before = totals(store)
    counts = run_usage_retention(store, UsageConfig(hourly_for=timedelta(days=14), keep=timedelta(days=400)), T0)
    assert (counts["usage_queries rolled up"], counts["usage_queries"]) == (2, 1)  # 20 and 500 days old; 500 gone
    grains = sorted((k[0], (T0 - k[1]).days) for k in stored(store)["queries"])
    assert grains == [("d", 20), ("h", 1)]
    assert totals(store)["queries"] == before["queries"] - 1


def test_two_daemons_adding_to_the_same_rows_at_once_both_count(store_url):
    import threading

    stores = [Store(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    batch = delta([event(u, T0 + timedelta(minutes=m), ms=10.0, fingerprint=fp)
                   for u in ("kim", "lee", "zoe") for fp in ("fp-a", "fp-b") for m in range(5)])

    def work(s: Store) -> None:
        barrier.wait()
        for _ in range(5):
            s.commit(Batch(usage=batch))

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert totals(stores[0])["queries"] == 4 * 5 * 30 and totals(stores[0])["duration_ms"] == 4 * 5 * 300.0
    for s in stores:
        s.close()


def test_the_daemons_retention_job_rolls_usage_up(tmp_path, caplog):
    import logging

    from tests.helpers.configs import write_config
    from usagewatch import config
    from usagewatch.jobs import Jobs

    cfg = config.load(write_config(tmp_path, [], usage={"hourly_for": "7d"}))
    store = Store(cfg.database)
    commit(store, [event("kim", T0 - timedelta(days=10)), event("kim", T0 - timedelta(days=10, hours=-2))])
    jobs = Jobs(cfg, store, None, clock=lambda: T0)  # type: ignore[arg-type]  # retention sends nothing
    with caplog.at_level(logging.INFO, logger="usagewatch.jobs"):
        jobs.retention()
    jobs.stop()
    assert [k[0] for k in stored(store)["queries"]] == ["d"] and totals(store)["queries"] == 2
    assert "retention: rolled 4 hourly usage rows up into days" in caplog.text  # 2 query rows, 2 table rows
    store.close()


def test_names_longer_than_their_columns_are_cut_not_refused(store):
    long_user, long_table = "u" * 250, "t" * 350
    commit(store, [event(long_user, T0, tables=(long_table,)), event(long_user + "x", T0, tables=(long_table,))])
    ((key, row),) = stored(store)["queries"].items()
    assert key[2] == "u" * 200 and row["queries"] == 2
    assert list(stored(store)["tables"]) == [("h", T0, "t" * 300, "u" * 200)]
