"""Schema migrations (Alembic): an empty database is created at head, an older one upgraded without
loss, one this version does not know refused with a sentence; on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.store.test_store import update
from usagewatch.cli import cli
from usagewatch.errors import StoreError
from usagewatch.store import Batch, Store, migrations
from usagewatch.store.tables import SCHEMA_VERSION, metadata

PREVIOUS_RELEASE = Path(__file__).parents[1] / "data" / "store" / "schema5.db"
HEAD = migrations.head()
TABLES = ("findings", "finding_events", "finding_days", "silences", "outbox", "deliveries", "digests",
          "digest_items", "checkpoints", "rule_windows", "usagewatch_meta")


def alembic_revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_version(store: Store) -> str:
    with store.engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT value FROM usagewatch_meta WHERE name = 'schema_version'")).scalar())


def upgrade_to(url: str, revision: str) -> None:
    """What an older release with migrations would have made: the schema at ``revision``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), revision)
    engine.dispose()


def schema_of(engine: sa.engine.Engine) -> dict[str, Any]:
    """Columns, keys, indexes (with partial-index predicates) and unique constraints, comparable."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for t in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        out[t] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t)["constrained_columns"],
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(t)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]),
                               " ".join(str(v) for k, v in (i.get("dialect_options") or {}).items() if k.endswith("_where")))
                              for i in insp.get_indexes(t)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(t)),
        }
    return out


def counts(engine: sa.engine.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() or 0) for t in TABLES}


def previous_release_in(url: str) -> None:
    """Make ``url`` hold what the release before migrations left: the fixture database itself on
    SQLite; on PostgreSQL its rows copied into the schema of revision 0001 without alembic_version."""
    target = sa.engine.make_url(url)
    if target.get_backend_name() == "sqlite":
        assert target.database
        shutil.copy(PREVIOUS_RELEASE, target.database)
        return
    upgrade_to(url, "0001")
    src, dst = sa.create_engine(f"sqlite:///{PREVIOUS_RELEASE}"), sa.create_engine(url)
    with src.connect() as s, dst.begin() as d:
        d.execute(sa.text("DROP TABLE alembic_version"))
        d.execute(sa.text("DELETE FROM usagewatch_meta"))
        old_tables = set(sa.inspect(s).get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in old_tables:  # added by a later revision
                continue
            rows = [dict(r._mapping) for r in s.execute(sa.select(table))]
            if rows:
                d.execute(table.insert(), rows)
            if "id" in table.c:  # explicit ids: move the sequence past them, as the old release's inserts did
                d.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                  f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"))
    src.dispose()
    dst.dispose()


# --- creating ---------------------------------------------------------------------------------------
def test_an_empty_database_is_created_at_head_exactly_as_the_tables_module_says(store_url):
    store = Store(store_url)
    assert store.upgraded is not None and (store.upgraded.before, store.upgraded.after) == (None, HEAD)
    assert alembic_revision(store_url) == HEAD and schema_version(store) == str(SCHEMA_VERSION)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
    # compare_metadata does not look at partial-index predicates: the one-open-finding index must keep its own
    # (test_store.py shows it at work: a second open finding for one rule and key is refused)
    (one_open,) = [i for i in sa.inspect(store.engine).get_indexes("findings") if i["name"] == "findings_one_open_per_rule_key"]
    where = " ".join(str(v) for k, v in one_open.get("dialect_options", {}).items() if k.endswith("_where"))
    assert one_open["unique"] and all(status in where for status in ("'open'", "'acknowledged'", "'coached'"))
    store.close()
    again = Store(store_url)
    assert again.upgraded is None  # at head: nothing to do, and no second anything
    again.close()


def test_two_daemons_starting_together_on_a_new_database_create_it_once(store_url):
    barrier = threading.Barrier(4)
    done: list[Any] = []

    def start() -> None:
        barrier.wait()
        s = Store(store_url)
        done.append(s.upgraded)
        s.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 4 and sum(u is not None for u in done) == 1
    assert alembic_revision(store_url) == HEAD


# --- upgrading --------------------------------------------------------------------------------------
def test_revision_0001_is_exactly_the_schema_the_previous_release_made(tmp_path):
    made_by_migrations = f"sqlite:///{tmp_path}/by-migrations.db"
    upgrade_to(made_by_migrations, "0001")
    previous = sa.create_engine(f"sqlite:///{PREVIOUS_RELEASE}")
    ours = sa.create_engine(made_by_migrations)
    assert schema_of(ours) == schema_of(previous)
    previous.dispose()
    ours.dispose()


def test_a_database_from_the_previous_release_upgrades_without_loss(store_url):
    previous_release_in(store_url)
    engine = sa.create_engine(store_url)
    before = counts(engine)
    engine.dispose()
    assert before == {"findings": 3, "finding_events": 6, "finding_days": 3, "silences": 1, "outbox": 3,
                      "deliveries": 6, "digests": 1, "digest_items": 2, "checkpoints": 2, "rule_windows": 2,
                      "usagewatch_meta": 1}

    store = Store(store_url, "https://wiki.example.com/howto/")
    up = store.upgraded
    assert up is not None and (up.before, up.after, up.legacy) == ("0001", HEAD, True)
    if store.engine.dialect.name == "sqlite":  # the file as it was is copied aside first
        assert up.backup is not None and counts(sa.create_engine(f"sqlite:///{up.backup}")) == before
    assert counts(store.engine) == before
    assert alembic_revision(store_url) == HEAD and schema_version(store) == str(SCHEMA_VERSION)
    names = {i["name"] for t in ("findings", "deliveries", "finding_days") for i in sa.inspect(store.engine).get_indexes(t)}
    assert {"findings_closed", "deliveries_sent", "finding_days_day"} <= names

    kim = store.finding(1)
    assert kim is not None
    assert (kim["user"], kim["status"], kim["count"], kim["count_at_coaching"]) == ("kim", "coached", 136, 136)
    assert kim["varying"] == ["company_id"] and kim["details"] == {"runs_per_hour": 136}
    assert kim["first_seen"] == "2024-03-04T09:00:00+00:00" and kim["coached_at"] == "2024-03-04T14:00:00+00:00"
    assert [h["action"] for h in store.history(1)] == ["opened", "acknowledged", "coached"]
    assert store.history(1)[2]["note"] == "showed her IN lists"
    cursor = store.cursors("warehouse")["2049:131"]
    assert (cursor.offset, cursor.state, cursor.records, cursor.bad) == (123456, {"held": {"s1": "SELECT 1"}}, 5000, {"csv": 2})
    assert dict(((r, k), st) for r, k, st in store.windows())[("same-query-different-ids", "user=kim fingerprint=f")] == {"runs": [1, 2, 3]}
    with store.engine.connect() as conn:
        statuses = [r.status for r in conn.execute(sa.text("SELECT status FROM deliveries ORDER BY id"))]
    assert statuses == ["sent", "sent", "dead", "sent", "pending", "queued"]

    # and it works on: a repeat updates kim's finding (still one open per rule and key), a new key opens #4
    store.commit(Batch([update(150, key="user=kim fingerprint=f", episode="e1")]))
    r = store.commit(Batch([update(21, key="user=zoe fingerprint=z")]))
    assert list(r.new_findings) == [4] and store.finding(1)["count"] == 150  # type: ignore[index]
    store.close()


def test_a_database_at_an_older_revision_is_upgraded(store_url):
    upgrade_to(store_url, "0001")
    store = Store(store_url)
    assert store.upgraded is not None and (store.upgraded.before, store.upgraded.after, store.upgraded.legacy) == ("0001", HEAD, False)
    assert alembic_revision(store_url) == HEAD and schema_version(store) == str(SCHEMA_VERSION)
    store.close()


def test_a_failed_upgrade_leaves_the_database_as_it_was(store_url):
    previous_release_in(store_url)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # something in the way of revision 0002
        conn.execute(sa.text("CREATE INDEX findings_closed ON silences (reason)"))
    with pytest.raises(StoreError, match=rf"could not upgrade the database .* from revision 0001 to {HEAD}; it is left as it was"):
        Store(store_url)
    assert alembic_revision(store_url) is None  # the stamp was rolled back with the rest
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT value FROM usagewatch_meta")).scalar() == "5"
    assert counts(engine)["findings"] == 3
    engine.dispose()


# --- refusing ---------------------------------------------------------------------------------------
def test_a_database_written_by_a_newer_version_is_refused_with_a_sentence(store_url):
    Store(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    message = (r"was written by a newer version of usagewatch \(schema revision 0099, which this version does not "
               rf"know; the newest it knows is {HEAD}\)\. Run that newer version; this one will not touch the database\.")
    with pytest.raises(StoreError, match=message):
        Store(store_url)
    with pytest.raises(StoreError, match=message):
        migrations.read_state(store_url)
    assert alembic_revision(store_url) == "0099"


def test_a_schema_older_than_the_first_migration_is_refused(store_url):
    previous_release_in(store_url)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE usagewatch_meta SET value = '4'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"written by an older version of usagewatch \(schema 4\) that this version cannot "
                                         r"upgrade: upgrades start at schema 5\. Move it aside"):
        Store(store_url)


def test_a_database_of_something_else_is_refused(store_url):
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"has tables \(invoices\) but none of usagewatch's; point `database` at an empty database"):
        Store(store_url)


# --- the `db` command ---------------------------------------------------------------------------------
def test_db_current_and_upgrade_from_the_cli(tmp_path):
    cfg = write_config(tmp_path, [])
    shutil.copy(PREVIOUS_RELEASE, tmp_path / "usagewatch.db")
    run = CliRunner().invoke
    r = run(cli, ["db", "current", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert r.stdout == "0001 (schema 5, made before migrations: no alembic_version yet)\n"
    r = run(cli, ["db", "upgrade", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert r.stdout == (f"Upgraded the database sqlite:///{tmp_path}/usagewatch.db from revision 0001 (schema 5, made "
                        f"before migrations) to {HEAD}. The database as it was is copied to "
                        f"{tmp_path}/usagewatch.db.before-{HEAD}.\n")
    assert sqlite3.connect(tmp_path / f"usagewatch.db.before-{HEAD}").execute("SELECT count(*) FROM findings").fetchone() == (3,)
    assert run(cli, ["db", "current", "--config", str(cfg)]).stdout == f"{HEAD} (head)\n"
    r = run(cli, ["db", "upgrade", "--config", str(cfg)])
    assert r.stdout == f"The database sqlite:///{tmp_path}/usagewatch.db is at revision {HEAD}, the newest; nothing to do.\n"


def test_db_upgrade_creates_an_empty_database_and_current_reports_one_it_refuses(tmp_path):
    cfg = write_config(tmp_path, [])
    run = CliRunner().invoke
    assert run(cli, ["db", "current", "--config", str(cfg)]).stdout == "none (an empty database)\n"
    r = run(cli, ["db", "upgrade", "--config", str(cfg)])
    assert r.stdout == f"Created the usagewatch schema in sqlite:///{tmp_path}/usagewatch.db at revision {HEAD}.\n"
    with sqlite3.connect(tmp_path / "usagewatch.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    r = run(cli, ["db", "current", "--config", str(cfg)])
    assert r.exit_code == 1 and "written by a newer version of usagewatch (schema revision 0099" in r.stderr
