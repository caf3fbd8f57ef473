"""The store: one open finding per rule and key, outbox row with a new finding, atomic batches."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers.events import at
from usagewatch.errors import StoreError
from usagewatch.model import FileCursor, FindingUpdate
from usagewatch.store import Batch, Store
from usagewatch.store.tables import findings


def update(count: int, episode: str = "e1", key: str = "user=kim fingerprint=f", distinct: int | None = None) -> FindingUpdate:
    return FindingUpdate(rule="same-query-different-ids", key=key, episode=episode, user="kim", database="dw",
                         count=count, distinct_values=count if distinct is None else distinct,
                         first_seen=at(0), last_seen=at(count), fingerprint="f", sample_sql="SELECT 1",
                         normalized_sql="SELECT ?", varying=["company_id"], sample_values=["1", "2"],
                         title=f"kim ran one query {count} times", intervention="do x", howto="batch.md")


@pytest.fixture
def store(store_url):
    s = Store(store_url, "https://wiki.example.com/howto/")
    yield s
    s.close()


def test_new_finding_gets_one_outbox_row_and_repeats_update_it(store):
    r1 = store.commit(Batch([update(20)]))
    r2 = store.commit(Batch([update(136)]))
    assert r1.new_outbox == 1 and r2.new_outbox == 0
    rows = store.findings()
    assert len(rows) == 1
    f = rows[0]
    assert (f["count"], f["distinct_values"], f["status"]) == (136, 136, "open")
    assert f["howto"] == "https://wiki.example.com/howto/batch.md"
    assert f["last_seen"] == at(136).isoformat()
    assert len(store.outbox_rows()) == 1


def test_a_new_episode_of_an_open_finding_adds_to_it(store):
    store.commit(Batch([update(30)]))
    store.commit(Batch([update(20, episode="e2")]))
    store.commit(Batch([update(25, episode="e2")]))
    assert store.findings()[0]["count"] == 55
    assert len(store.outbox_rows()) == 1


def test_a_resolved_finding_does_not_absorb_a_new_one(store):
    store.commit(Batch([update(30)]))
    with store.engine.begin() as conn:
        conn.execute(findings.update().values(status="resolved"))
    store.commit(Batch([update(21, episode="e2")]))
    assert [(f["status"], f["count"]) for f in store.findings()] == [("resolved", 30), ("open", 21)]


def test_the_database_refuses_two_open_findings_for_one_rule_and_key(store):
    store.commit(Batch([update(30)]))
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as conn:
            row = dict(conn.execute(sa.select(findings)).first()._mapping)
            row.pop("id")
            conn.execute(findings.insert().values(**row))


def test_checkpoint_and_findings_are_one_transaction(store):
    """A failing batch saves neither its finding nor its cursor."""
    good = FileCursor("src", "/logs/a.csv", 1, 2, 10, "h", 500, {})
    store.commit(Batch([update(20)], [good]))
    bad_cursor = FileCursor("src", "/logs/a.csv", 1, 2, 10, "h", 900, {})
    broken = update(40, key="user=lee fingerprint=g")
    broken.first_seen = broken.first_seen.replace(tzinfo=None)  # the store refuses naive times
    with pytest.raises(StoreError):
        store.commit(Batch([update(30), broken], [bad_cursor]))
    assert store.cursors("src")["1:2"].offset == 500  # keyed by device:inode, not path
    assert [(f["user"], f["count"]) for f in store.findings()] == [("kim", 20)]


def test_outbox_backoff_and_dead_letter(store):
    store.commit(Batch([update(20)]))
    row = store.due_notifications(at(0) + timedelta(days=400))[0]
    store.mark_failed(row["id"], "connection refused", at(10))
    assert store.due_notifications(at(5)) == []
    assert [r["id"] for r in store.due_notifications(at(10))] == [row["id"]]
    store.mark_failed(row["id"], "auth refused", None)
    (r,) = store.outbox_rows()
    assert (r["status"], r["attempts"], r["last_error"]) == ("dead", 2, "auth refused")


def test_bad_database_url_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(f"sqlite:///{tmp_path}/no/such/dir/uw.db")


def test_a_store_of_an_unknown_schema_version_is_refused_clearly(tmp_path):
    """(More in test_migrations.py: upgrades, newer revisions, other databases.)"""
    url = f"sqlite:///{tmp_path}/old.db"
    s = Store(url)
    with s.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("UPDATE usagewatch_meta SET value = '1' WHERE name = 'schema_version'"))
    s.close()
    with pytest.raises(StoreError, match=r"written by an older version of usagewatch \(schema 1\) that this version cannot upgrade"):
        Store(url)
