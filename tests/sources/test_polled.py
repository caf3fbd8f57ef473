"""PolledSource against a real PostgreSQL: a history table read by cursor, exactly once across
batch boundaries that fall among rows with the same timestamp, across restarts from the committed
cursor, on the interval of an APScheduler trigger (injected clock), with clear errors.

``HistoryRows`` (``test-history-rows``, defined here) stands in for the warehouse formats: it maps the columns of a
Snowflake-like history table onto QueryEvent. ``tests/test_pipeline_polled.py`` uses it too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers.postgres import PgCluster, free_port
from usagewatch.errors import BadRecord, SourceError
from usagewatch.model import QueryEvent
from usagewatch.sources.files import Chunk
from usagewatch.sources.formats import Assembler, LogFormat, formats
from usagewatch.sources.polled import PolledSource
from usagewatch.store import Batch, Store

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=timezone.utc)
PASSWORD = "s3cret-Pw-77"


class HistoryRowsAssembler(Assembler):
    """One row, one event: rows of a history table are complete executions."""

    def feed(self, fields: dict[str, Any], position: str) -> list[QueryEvent]:
        sql, ts = fields.get("query_text"), fields.get("start_time")
        if not sql or ts is None:
            raise BadRecord("missing-column", "query_text and start_time are required")
        if fields.get("execution_status") == "RUNNING":
            self.skipped["running"] += 1
            return []
        ms = fields.get("total_elapsed_time")
        return [QueryEvent(source=self.source, ts=ts, sql=sql, user=fields.get("user_name"),
                           database=fields.get("database_name"), duration_ms=float(ms) if ms is not None else None,
                           dialect=self.dialect, position=position, query_id=fields.get("query_id"),
                           rows=fields.get("rows_produced"))]

    def flush(self) -> list[QueryEvent]: return []  # noqa: E704

    def state(self) -> dict[str, Any]: return {}  # noqa: E704

    def restore(self, state: dict[str, Any]) -> None: pass  # noqa: E704


class HistoryRows(LogFormat):
    """Not registered at import (that would show a test-only name in every "valid formats" message
    of the session): tests that need it by name use ``registered_history_rows``."""

    name = "test-history-rows"
    dialect = "postgres"
    key_column = "query_id"

    def assembler(self, source: str) -> Assembler:
        return HistoryRowsAssembler(source, self.dialect)


def registered_history_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ``test-history-rows`` for one test (the registry has no unregister)."""
    monkeypatch.setitem(formats._items, HistoryRows.name, HistoryRows)


# --- a history table in a database of its own ------------------------------------------------------------------
class History:
    """A Snowflake-like history table in the test cluster; ``add`` inserts runs."""

    def __init__(self, cluster: PgCluster, dbname: str, table: str = "query_history"):
        self.cluster, self.dbname, self.table = cluster, dbname, table
        self.n = 0
        cluster.execute(f"""CREATE TABLE {table} (
            query_id text PRIMARY KEY, user_name text, database_name text, query_text text,
            start_time timestamptz, total_elapsed_time numeric, rows_produced bigint,
            execution_status text DEFAULT 'SUCCESS', seq bigserial)""", dbname=dbname)

    def url(self, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://postgres:{password}@{self.cluster.host}:{self.cluster.port}/{self.dbname}"

    def add(self, *times: datetime, user: str = "kim", sql: str | None = None, status: str = "SUCCESS") -> list[str]:
        ids = []
        with self.cluster.connect(dbname=self.dbname) as conn:
            for ts in times:
                self.n += 1
                qid = f"q{self.n:05d}"
                text = sql if sql is not None else f"SELECT * FROM orders WHERE company_id = {self.n}"
                conn.execute(f"INSERT INTO {self.table} (query_id, user_name, database_name, query_text, start_time, "  # type: ignore[arg-type]
                             "total_elapsed_time, rows_produced, execution_status) VALUES (%s, %s, 'dw', %s, %s, 12.5, 3, %s)",
                             (qid, user, text, ts, status))
                ids.append(qid)
        return ids


@pytest.fixture(scope="module")
def dbname(pg_cluster: PgCluster) -> str:
    name = "polled_" + uuid.uuid4().hex[:8]
    pg_cluster.execute(f"CREATE DATABASE {name}")
    return name


@pytest.fixture
def history(pg_cluster: PgCluster, dbname: str) -> History:
    return History(pg_cluster, dbname, "qh_" + uuid.uuid4().hex[:8])


class Clock:  # an injected monotonic clock
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def polled(history: History, clock: Clock | None = None, **kw: Any) -> PolledSource:
    kw.setdefault("table", history.table)
    kw.setdefault("cursor", "start_time")
    kw.setdefault("batch_rows", 3)
    kw.setdefault("interval", 30.0)
    return PolledSource("wh", HistoryRows(), kw.pop("url", history.url()),
                        clock=clock or Clock(), **kw)


def read(src: PolledSource, at_eof: bool = False) -> tuple[list[Chunk], list[str]]:
    chunks = list(src.read(src.path, at_eof=at_eof))
    return chunks, [str(e.query_id) for c in chunks for e in c.events]


# --- tests ------------------------------------------------------------------------------------------------------
def test_protocol_basics(history):
    src = polled(history)
    assert src.paths() == ["query:wh"]
    assert src.directories() == set()
    assert list(src.flush_idle(0)) == []
    assert list(src.read("/some/other/path", at_eof=True)) == []


def test_reads_everything_once_then_only_new_rows(history):
    first = history.add(*(T0 + timedelta(minutes=i) for i in range(8)))
    clock = Clock()
    src = polled(history, clock)
    chunks, got = read(src)
    assert got == first  # in cursor order, backlog read at once in batches of 3
    assert [c.records for c in chunks] == [3, 3, 2]
    assert chunks[-1].cursor.offset == 8 and chunks[-1].cursor.path == "query:wh"
    assert chunks[-1].cursor.state["cursor_type"] == "datetime"
    assert datetime.fromisoformat(chunks[-1].cursor.state["cursor"]) == T0 + timedelta(minutes=7)

    more = history.add(T0 + timedelta(minutes=20), T0 + timedelta(minutes=21))
    clock.t += 30
    _, got = read(src)
    assert got == more
    clock.t += 30
    assert read(src) == ([], [])  # nothing new: no chunk, no commit


def test_ties_split_across_batch_boundaries_are_read_exactly_once(history):
    tie = T0 + timedelta(minutes=5)
    ids = history.add(T0, T0 + timedelta(minutes=1))
    ids += history.add(*[tie] * 7)  # batches of 3 end in the middle of these, twice
    clock = Clock()
    src = polled(history, clock)
    chunks, got = read(src)
    assert sorted(got) == sorted(ids) and len(got) == len(ids)
    assert len(chunks[-1].cursor.state["seen"]) == 7

    # more rows with the SAME timestamp as the last one read, then later ones
    late = history.add(*[tie] * 4) + history.add(tie + timedelta(seconds=1))
    clock.t += 30
    _, again = read(src)
    assert sorted(again) == sorted(late)


def test_a_tie_group_larger_than_a_batch_cannot_stall_the_reader(history):
    ids = history.add(*[T0] * 10)
    src = polled(history, batch_rows=2)
    chunks, got = read(src, at_eof=True)
    assert sorted(got) == sorted(ids) and len(got) == 10
    assert all(c.records <= 2 for c in chunks)


def test_restart_from_the_committed_cursor_loses_and_doubles_nothing(history, tmp_path):
    tie = T0 + timedelta(minutes=3)
    ids = history.add(T0, *[tie] * 5, tie + timedelta(minutes=1))
    store = Store(f"sqlite:///{tmp_path}/s.db")
    try:
        src = polled(history)
        gen = src.read(src.path)
        first = next(gen)  # 3 rows, ending among the tied ones; committed like the pipeline does
        store.commit(Batch(cursors=[first.cursor]))
        next(gen)  # a second batch read but never committed: the daemon was killed here
        gen.close()

        history.add(tie)  # one more tied row arrives while we are down
        ids.append(f"q{history.n:05d}")
        restarted = polled(history)
        restarted.load(store.cursors("wh"))
        chunks, rest = read(restarted, at_eof=True)
        got = [str(e.query_id) for e in first.events] + rest
        assert sorted(got) == sorted(ids) and len(got) == len(set(got))
        store.commit(Batch(cursors=[chunks[-1].cursor]))

        third = polled(history)
        third.load(store.cursors("wh"))
        assert read(third, at_eof=True) == ([], [])
    finally:
        store.close()


def test_identical_rows_without_a_key_are_two_runs(history):
    """Without a key column the identity is a hash of the row, counted as a multiset."""
    history.cluster.execute(f"ALTER TABLE {history.table} DROP COLUMN seq", dbname=history.dbname)
    history.cluster.execute(f"ALTER TABLE {history.table} DROP CONSTRAINT {history.table}_pkey", dbname=history.dbname)
    with history.cluster.connect(dbname=history.dbname) as conn:
        for _ in range(2):
            conn.execute(f"INSERT INTO {history.table} (query_id, user_name, query_text, start_time) "  # type: ignore[arg-type]
                         "VALUES ('same', 'kim', 'SELECT 1', %s)", (T0,))
    src = polled(history, batch_rows=1)
    chunks, got = read(src, at_eof=True)
    assert got == ["same", "same"]
    src2 = polled(history, batch_rows=1, key="no_such_column")
    first = next(src2.read(src2.path))
    src3 = polled(history, batch_rows=1, key="no_such_column")
    first.cursor.state = json.loads(json.dumps(first.cursor.state))  # as a store gives it back
    src3.load({src3.path: first.cursor})
    _, rest = read(src3, at_eof=True)
    assert len(first.events) + len(rest) == 2


def test_the_interval_follows_the_trigger_on_an_injected_clock(history):
    history.add(T0)
    clock = Clock()
    src = polled(history, clock, batch_rows=10)
    assert len(read(src)[1]) == 1  # the first read queries at once
    history.add(T0 + timedelta(minutes=1))
    clock.t += 29.9
    assert read(src) == ([], [])  # not due: no query
    clock.t += 0.1
    assert len(read(src)[1]) == 1  # 30 s after the first query

    # a late read (the daemon was busy for 95 s) queries once and returns to the 30 s grid
    history.add(T0 + timedelta(minutes=2))
    clock.t += 95
    assert len(read(src)[1]) == 1
    history.add(T0 + timedelta(minutes=3))
    clock.t += 20  # the grid is 1000 + 30k: now 1145, the next fire time is 1150, not 1125 + 30
    assert read(src) == ([], [])
    clock.t += 5
    assert len(read(src)[1]) == 1


def test_a_full_batch_means_read_again_without_waiting(history):
    ids = history.add(*(T0 + timedelta(seconds=i) for i in range(5)))
    clock = Clock()
    src = polled(history, clock, batch_rows=2)
    gen = src.read(src.path)
    first = next(gen)  # a full batch; the caller stops here (shutdown, failed commit)
    gen.close()
    _, rest = read(src)  # still at the same clock time: the backlog is read anyway
    assert [str(e.query_id) for e in first.events] + rest == ids


def test_at_eof_reads_to_the_end_whatever_the_interval(history):
    ids = history.add(*(T0 + timedelta(seconds=i) for i in range(7)))
    src = polled(history, Clock(), batch_rows=3, interval=3600)
    assert read(src)[1] == ids
    more = history.add(T0 + timedelta(hours=1))
    assert read(src) == ([], [])  # not due
    assert read(src, at_eof=True)[1] == more


def test_bad_rows_are_counted_and_skipped(history):
    history.add(T0)
    history.add(T0 + timedelta(seconds=1), sql="")  # the format rejects it
    history.add(T0 + timedelta(seconds=2), status="RUNNING")  # the format skips it
    history.add(T0 + timedelta(seconds=3))
    chunks, got = read(polled(history, batch_rows=10), at_eof=True)
    assert got == ["q00001", "q00004"]
    assert sum((c.bad for c in chunks), Counter()) == {"missing-column": 1}
    assert sum((c.skipped for c in chunks), Counter()) == {"running": 1}
    assert chunks[-1].cursor.offset == 4


def test_database_down_raises_source_error_naming_the_source_without_the_password(history, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{free_port()}/nothing"
    src = polled(history, url=url)
    with pytest.raises(SourceError) as err:
        list(src.read(src.path, at_eof=True))
    msg = str(err.value)
    assert '"wh"' in msg and "127.0.0.1" in msg and "***" in msg
    assert PASSWORD not in msg and PASSWORD not in caplog.text


def test_after_a_failure_the_next_try_waits_for_the_interval(history):
    ids = history.add(T0)
    clock = Clock()
    src = polled(history, clock, url=f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(SourceError):
        list(src.read(src.path))
    assert read(src) == ([], [])  # the next rescan, 2 s later: no query, no second error
    clock.t += 30
    with pytest.raises(SourceError):
        list(src.read(src.path))
    # the database is back (the same source, now pointing at the live server)
    src._url = sa.engine.make_url(history.url())
    src.close()
    clock.t += 30
    assert read(src)[1] == ids


def test_a_failing_query_raises_source_error(history):
    src = polled(history, table="no_such_history")
    with pytest.raises(SourceError, match=r'source "wh": .*no_such_history'):
        list(src.read(src.path, at_eof=True))
    assert PASSWORD not in str(src.safe_url)


def test_schema_qualified_mixed_case_names_are_quoted(history):
    c, db = history.cluster, history.dbname
    c.execute('CREATE SCHEMA IF NOT EXISTS "Acct"', dbname=db)
    c.execute('CREATE TABLE "Acct"."Query History" (query_id text, query_text text, user_name text, "Start Time" timestamptz, '
              "start_time timestamptz)", dbname=db)
    with c.connect(dbname=db) as conn:
        for i in range(4):
            conn.execute('INSERT INTO "Acct"."Query History" VALUES (%s, %s, %s, %s, %s)',
                         (f"m{i}", "SELECT 1", "kim", T0 + timedelta(seconds=i), T0 + timedelta(seconds=i)))
    src = polled(history, table="Acct.Query History", cursor="Start Time")
    assert read(src, at_eof=True)[1] == ["m0", "m1", "m2", "m3"]


def test_an_admin_query_with_a_cursor_parameter(history):
    ids = history.add(*(T0 + timedelta(seconds=i) for i in range(3)))
    ids += history.add(*[T0 + timedelta(seconds=3)] * 4)
    history.add(T0 + timedelta(seconds=4), user="etl")
    sql = (f"SELECT * FROM {history.table} WHERE user_name = 'kim' AND query_text LIKE 'SELECT%' "
           "AND start_time >= COALESCE(:cursor, '-infinity'::timestamptz);")
    clock = Clock()
    src = polled(history, clock, table=None, query=sql)
    _, got = read(src, at_eof=True)
    assert sorted(got) == sorted(ids)
    ids2 = history.add(*[T0 + timedelta(seconds=3)] * 2)
    _, got2 = read(src, at_eof=True)
    assert sorted(got2) == sorted(ids2)


def test_an_integer_cursor_and_a_start_value(history):
    ids = history.add(*[T0] * 6)
    src = polled(history, cursor="seq", batch_rows=4, start=3)
    chunks, got = read(src, at_eof=True)
    assert got == ids[2:]
    assert chunks[-1].cursor.state["cursor_type"] == "int" and chunks[-1].cursor.state["cursor"] == 6


SNOWFLAKE_COLUMNS = ('"QUERY_ID" text, "QUERY_TEXT" text, "DATABASE_NAME" text, "USER_NAME" text, '
                     '"WAREHOUSE_NAME" text, "EXECUTION_STATUS" text, "ERROR_CODE" text, "START_TIME" timestamptz, '
                     '"END_TIME" timestamptz, "TOTAL_ELAPSED_TIME" bigint, "BYTES_SCANNED" bigint, "ROWS_PRODUCED" bigint')


def snowflake_history(cluster: PgCluster, db: str, rows: list[tuple[Any, ...]]) -> str:
    """A table shaped like SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY (upper-case columns, as Snowflake
    returns them) in schema ACCOUNT_USAGE; returns its qualified name."""
    table = "QH_" + uuid.uuid4().hex[:8].upper()
    cluster.execute('CREATE SCHEMA IF NOT EXISTS "ACCOUNT_USAGE"', dbname=db)
    cluster.execute(f'CREATE TABLE "ACCOUNT_USAGE"."{table}" ({SNOWFLAKE_COLUMNS})', dbname=db)
    with cluster.connect(dbname=db) as conn:
        for r in rows:
            conn.execute(f'INSERT INTO "ACCOUNT_USAGE"."{table}" VALUES ({", ".join(["%s"] * len(r))})', r)  # type: ignore[arg-type]
    return f"ACCOUNT_USAGE.{table}"


def snowflake_row(i: int, ts: datetime, user: str = "KIM", status: str = "SUCCESS") -> tuple[Any, ...]:
    return (f"01b2-{i:04d}", f"select * from sales.orders where company_id = {1000 + i}", "DW", user, "WH_XS",
            status, None, ts, ts + timedelta(milliseconds=250), 250, 4096, 10)


def test_snowflake_format_reads_snowflake_shaped_rows(history):
    if "snowflake" not in formats:
        pytest.skip("the snowflake format is not in the registry")
    tie = T0 + timedelta(minutes=1)
    rows = [snowflake_row(0, T0)] + [snowflake_row(i, tie) for i in range(1, 6)]
    rows.append(snowflake_row(6, tie + timedelta(seconds=1), status="RUNNING"))
    table = snowflake_history(history.cluster, history.dbname, rows)
    src = PolledSource("sf", formats.get("snowflake")(), history.url(), table=table, cursor="START_TIME",
                       batch_rows=2, clock=Clock())
    assert src.key == "query_id"  # rows are told apart by QUERY_ID at the boundary
    chunks, got = read(src, at_eof=True)
    assert sorted(got) == [f"01b2-{i:04d}" for i in range(6)]
    assert sum((c.skipped for c in chunks), Counter()) == {"not-finished": 1}
    ev = chunks[0].events[0]
    assert (ev.user, ev.database, ev.warehouse, ev.duration_ms, ev.dialect) == ("KIM", "DW", "WH_XS", 250.0, "snowflake")
    assert ev.ts == T0 and ev.position == "query:sf:1"
    assert all(k.startswith("k:") for k in chunks[-1].cursor.state["seen"])
