"""Usage aggregates for tests: hand-made events counted and committed as a batch, and the stored
usage rows read back in a comparable form."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from usagewatch.model import NormalizedEvent, NormalizedQuery, QueryEvent
from usagewatch.store import Batch, Store
from usagewatch.store.tables import usage_queries, usage_shapes, usage_tables
from usagewatch.usage.aggregate import UsageAccumulator, UsageDelta


def event(user: str, ts: datetime, *, ms: float | None = 10.0, fingerprint: str = "fp-a", error: bool = False,
          tables: tuple[str, ...] = ("orders",), rows: int | None = None, bytes_scanned: int | None = None,
          sql: str = "SELECT ...") -> NormalizedEvent:
    """One query of ``user`` at ``ts`` taking ``ms``; only what the usage counters look at."""
    ev = QueryEvent(source="test", ts=ts, sql=sql, user=user, duration_ms=ms, rows=rows, bytes_scanned=bytes_scanned,
                    error_code="42P01" if error else None)
    q = NormalizedQuery(fingerprint=fingerprint, normalized_sql=f"SELECT /* {fingerprint} */ ...", kind="select",
                        tables=tables, literals=())
    return NormalizedEvent(ev, q)


def delta(events: Iterable[NormalizedEvent]) -> UsageDelta:
    acc = UsageAccumulator()
    for e in events:
        acc.add(e.event, e.query)
    return acc.take()


def commit(store: Store, events: Iterable[NormalizedEvent]) -> None:
    store.commit(Batch(usage=delta(events)))


def stored(store: Store) -> dict[str, Any]:
    """Every usage row, keyed, with floats rounded (sums added in another order differ in the last bit)."""
    def rows(table: sa.Table, key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
        with store.engine.connect() as conn:
            out = {}
            for r in conn.execute(sa.select(table)):
                m = dict(r._mapping)
                k = tuple(m.pop(c) for c in key)
                out[k] = {c: round(v, 6) if isinstance(v, float) else v for c, v in m.items()}
            return out

    return {"queries": rows(usage_queries, ("grain", "bucket", "user", "fingerprint")),
            "tables": rows(usage_tables, ("grain", "bucket", "table", "user")),
            "shapes": rows(usage_shapes, ("fingerprint",))}


def totals(store: Store) -> dict[str, float]:
    """Sums over every usage_queries row (any grain); the largest max_ms."""
    cols = [c for c in usage_queries.c if c.name not in ("grain", "bucket", "user", "fingerprint")]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*(sa.func.coalesce((sa.func.max if c.name == "max_ms" else sa.func.sum)(c), 0)
                                       .label(c.name) for c in cols))).one()
    return {k: round(float(v), 6) for k, v in row._mapping.items()}
