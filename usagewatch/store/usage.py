"""The store side of usage statistics: adding a batch's deltas (in the batch's transaction), rolling
hours up into days (retention), and the grouped reads the usage report is built from.

Adding is ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` (SQLite and PostgreSQL), so
two daemons adding to the same hour and user at once both count, without a read-modify-write race.
Rows are written in key order, so two concurrent batches lock shared rows in the same order (no
deadlock on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from usagewatch.errors import StoreError
from usagewatch.store.tables import (
    ACTIVE_STATUSES,
    HIST_COLUMNS,
    findings,
    usage_queries,
    usage_shapes,
    usage_tables,
)
from usagewatch.usage.aggregate import (
    UsageDelta,
)

Q_KEY = ("grain", "bucket", "user", "fingerprint")
#: in the order of the accumulator's counters (QUERIES, ERRORS, ... MAX_MS, HIST; T_QUERIES, ...)
Q_VALUES = ("queries", "errors", "timed", "duration_ms", "rows", "bytes", "max_ms", *HIST_COLUMNS)
#: values merged by taking the larger one instead of adding
MAXED = frozenset({"max_ms"})
T_KEY = ("grain", "bucket", "table", "user")
T_VALUES = ("queries", "errors", "duration_ms")


def _insert(conn: Connection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        return sqlite_insert(table)
    raise StoreError(f"usage statistics need SQLite or PostgreSQL, not {name}")


def _upsert_sql(conn: Connection, table: sa.Table, key: Sequence[str], values: Sequence[str]) -> _Upsert:
    """The statement, compiled once per database kind and table: compiling and binding through
    SQLAlchemy per row cost more than the database's own work (this runs for every batch)."""
    cache_key = (conn.dialect.name, conn.dialect.driver, conn.dialect.paramstyle, table.name, tuple(key), tuple(values))
    done = _COMPILED.get(cache_key)
    if done is not None:
        return done
    ins = _insert(conn, table)
    larger = sa.func.greatest if conn.dialect.name == "postgresql" else sa.func.max  # SQLite's 2-argument max()
    stmt = ins.on_conflict_do_update(index_elements=[table.c[k] for k in key],
                                     set_={v: larger(table.c[v], ins.excluded[v]) if v in MAXED
                                           else table.c[v] + ins.excluded[v] for v in values})
    columns = [*key, *values]
    compiled = stmt.compile(dialect=conn.dialect, column_keys=columns)
    processors = []
    for i, name in enumerate(columns):
        proc = table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if proc is not None:
            processors.append((i, proc))
    if compiled.positional:
        names = list(compiled.positiontup or ())
        order: list[int] | None = [columns.index(n) for n in names]
    else:
        order = None
    done = _COMPILED[cache_key] = _Upsert(compiled.string, columns, order, processors)
    return done


@dataclass(frozen=True)
class _Upsert:
    sql: str
    columns: list[str]
    order: list[int] | None  # positional paramstyle: the column of each placeholder; None: named
    processors: list[tuple[int, Any]]  # (column index, bind processor) for columns that need one


_COMPILED: dict[tuple[Any, ...], _Upsert] = {}


def upsert_add(conn: Connection, table: sa.Table, key: Sequence[str], values: Sequence[str],
               rows: list[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples: the key columns, then the values); where a row with the same key
    exists, add the values to it (``max_ms``: keep the larger)."""
    if not rows:
        return
    up = _upsert_sql(conn, table, key, values)
    rows.sort(key=lambda r: tuple(r[:len(key)]))
    if up.processors:
        fixed: list[Sequence[Any]] = []
        for row in rows:
            r = list(row)
            for i, proc in up.processors:
                r[i] = proc(r[i])
            fixed.append(r)
        rows = fixed
    params: list[Any]
    if up.order is not None:
        params = [tuple(r[i] for i in up.order) for r in rows]
    else:
        params = [dict(zip(up.columns, r, strict=True)) for r in rows]
    for i in range(0, len(params), 1000):
        conn.exec_driver_sql(up.sql, params[i:i + 1000])


def add(conn: Connection, delta: UsageDelta) -> None:
    """Add one batch's usage (hour rows) and the shapes of fingerprints not seen before."""
    hours: dict[int, datetime] = {}

    def hour(ts: int) -> datetime:
        h = hours.get(ts)
        if h is None:
            h = hours[ts] = datetime.fromtimestamp(ts, timezone.utc)
        return h

    # the counter lists are laid out as Q_VALUES and T_VALUES (usage/aggregate.py)
    # names longer than the columns are cut (PostgreSQL would refuse them, and the batch with them)
    qrows: list[Sequence[Any]] = [("h", hour(ts), user[:200], fp[:64], *c) for (ts, user, fp), c in delta.queries.items()]
    trows: list[Sequence[Any]] = [("h", hour(ts), table[:300], user[:200], *c)
                                  for (ts, table, user), c in delta.tables.items()]
    upsert_add(conn, usage_queries, Q_KEY, Q_VALUES, qrows)
    upsert_add(conn, usage_tables, T_KEY, T_VALUES, trows)
    if delta.shapes:
        shapes = sorted(delta.shapes.items())
        ins = _insert(conn, usage_shapes).on_conflict_do_nothing(index_elements=[usage_shapes.c.fingerprint])
        conn.execute(ins, [{"fingerprint": fp[:64], "normalized_sql": sql, "kind": kind[:40]} for fp, (sql, kind) in shapes])


# --- retention ---------------------------------------------------------------------------------------
def roll_up(engine: Engine, hourly_before: datetime, keep_before: datetime) -> dict[str, int]:
    """Fold hour rows of the UTC days before the one of ``hourly_before`` into day rows (values add
    up, so totals and histograms are kept), one day per transaction; delete day rows older than ``keep_before``
    and the shapes no row names any more. Returns rows rolled up and deleted per table.

    The hour rows are taken with ``DELETE ... RETURNING`` and added to their day in the same
    transaction: what is folded is exactly what was deleted, even while a daemon adds to an old hour."""
    # whole days only: a day is either hours or one day row (late events for it are rolled up next time)
    hourly_before = hourly_before.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = {"usage_queries rolled up": 0, "usage_tables rolled up": 0, "usage_queries": 0, "usage_tables": 0,
              "usage_shapes": 0}
    for table, key, values in ((usage_queries, Q_KEY, Q_VALUES), (usage_tables, T_KEY, T_VALUES)):
        while True:
            with engine.begin() as conn:
                first = conn.execute(sa.select(sa.func.min(table.c.bucket)).where(
                    table.c.grain == "h", table.c.bucket < hourly_before)).scalar()
                if first is None:
                    break
                if first.tzinfo is None:
                    first = first.replace(tzinfo=timezone.utc)
                day = first.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
                end = day + timedelta(days=1)
                gone = conn.execute(table.delete().where(table.c.grain == "h", table.c.bucket >= day,
                                                         table.c.bucket < end).returning(*table.c)).all()
                folded: dict[tuple[Any, ...], dict[str, Any]] = {}
                for r in gone:
                    m = r._mapping
                    k = tuple(m[c] for c in key[2:])
                    into = folded.get(k)
                    if into is None:
                        folded[k] = {"grain": "d", "bucket": day, **{c: m[c] for c in key[2:]},
                                     **{v: m[v] for v in values}}
                    else:
                        for v in values:
                            into[v] = max(into[v], m[v]) if v in MAXED else into[v] + m[v]
                upsert_add(conn, table, key, values, [tuple(r[c] for c in (*key, *values)) for r in folded.values()])
                counts[f"{table.name} rolled up"] += len(gone)
        while True:
            with engine.begin() as conn:
                first = conn.execute(sa.select(sa.func.min(table.c.bucket)).where(
                    table.c.grain == "d", table.c.bucket < keep_before)).scalar()
                if first is None:
                    break
                counts[table.name] += conn.execute(table.delete().where(
                    table.c.grain == "d", table.c.bucket <= first)).rowcount or 0
    with engine.begin() as conn:
        used = sa.exists().where(usage_queries.c.fingerprint == usage_shapes.c.fingerprint)
        counts["usage_shapes"] += conn.execute(usage_shapes.delete().where(~used)).rowcount or 0
    return counts


# --- reads for the report -------------------------------------------------------------------------------
def _period(table: sa.Table, start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    """Rows of the period: hour rows starting in it, day rows whose day starts in it."""
    return sa.and_(table.c.bucket >= start, table.c.bucket < end)


def _sums(table: sa.Table, names: Iterable[str]) -> list[Any]:
    return [sa.func.coalesce((sa.func.max if n in MAXED else sa.func.sum)(table.c[n]), 0).label(n) for n in names]


def totals_by(conn: Connection, by: Sequence[str], start: datetime, end: datetime,
              where: sa.ColumnElement[bool] | None = None) -> list[dict[str, Any]]:
    """usage_queries summed per ``by`` columns over the period, histograms included."""
    cols = [usage_queries.c[b] for b in by]
    q = sa.select(*cols, *_sums(usage_queries, Q_VALUES)).where(_period(usage_queries, start, end))
    if where is not None:
        q = q.where(where)
    return [dict(r._mapping) for r in conn.execute(q.group_by(*cols))]


def activity(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per bucket and user: queries, errors, time and bytes (no histograms): the time series, the
    days each user was active and the recent-versus-baseline comparison are computed from these."""
    c = usage_queries.c
    q = (sa.select(c.grain, c.bucket, c.user, *_sums(usage_queries, ("queries", "errors", "duration_ms", "bytes")))
         .where(_period(usage_queries, start, end)).group_by(c.grain, c.bucket, c.user))
    return [dict(r._mapping) for r in conn.execute(q)]


def first_seen(conn: Connection) -> dict[str, datetime]:
    """Each user's earliest bucket still stored (``usage.keep`` bounds how far back that goes)."""
    c = usage_queries.c
    out = {}
    for user, first in conn.execute(sa.select(c.user, sa.func.min(c.bucket)).group_by(c.user)):
        if isinstance(first, str):  # SQLite's min() returns the stored text, not through the column type
            first = datetime.fromisoformat(first)
        out[user] = first if first.tzinfo else first.replace(tzinfo=timezone.utc)
    return out


def shapes(conn: Connection, fingerprints: Iterable[str]) -> dict[str, tuple[str, str]]:
    fps = list(fingerprints)
    out: dict[str, tuple[str, str]] = {}
    for i in range(0, len(fps), 500):
        q = sa.select(usage_shapes).where(usage_shapes.c.fingerprint.in_(fps[i:i + 500]))
        out.update({r.fingerprint: (r.normalized_sql, r.kind) for r in conn.execute(q)})
    return out


def tables(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per table and user: queries, errors, time over the period."""
    c = usage_tables.c
    q = (sa.select(c.table, c.user, *_sums(usage_tables, T_VALUES)).where(_period(usage_tables, start, end))
         .group_by(c.table, c.user))
    return [dict(r._mapping) for r in conn.execute(q)]


def open_findings_by_user(conn: Connection) -> dict[str, int]:
    q = (sa.select(findings.c.user, sa.func.count()).where(findings.c.status.in_(ACTIVE_STATUSES))
         .group_by(findings.c.user))
    return {u or "": int(n) for u, n in conn.execute(q)}


def error_hot_spots(conn: Connection, start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
    """The (user, fingerprint) pairs with the most failed queries in the period."""
    c = usage_queries.c
    errors = sa.func.sum(c.errors)
    q = (sa.select(c.user, c.fingerprint, sa.func.sum(c.queries).label("queries"), errors.label("errors"))
         .where(_period(usage_queries, start, end)).group_by(c.user, c.fingerprint).having(errors > 0)
         .order_by(errors.desc(), c.user, c.fingerprint).limit(limit))
    return [dict(r._mapping) for r in conn.execute(q)]
