"""Hand-made stage inputs: events and normalized events for rule and store tests (no parsing)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from usagewatch.model import Literal, NormalizedEvent, NormalizedQuery, QueryEvent

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    """Event time ``minutes`` after T0: rule tests read as timelines."""
    return T0 + timedelta(minutes=minutes)


def run(user: str, minute: float, value: str | None, *, fingerprint: str = "fp-orders",
        column: str | None = "company_id", kind: str = "select", database: str = "dw") -> NormalizedEvent:
    """One run of the orders-by-company query with ``value`` in its one slot."""
    sql = f"SELECT * FROM orders WHERE company_id = {value}"
    ev = QueryEvent(source="test", ts=at(minute), sql=sql, user=user, database=database)
    q = NormalizedQuery(fingerprint=fingerprint, normalized_sql="SELECT * FROM orders WHERE company_id = ?",
                        kind=kind, tables=("orders",), literals=(Literal(0, value, column),))
    return NormalizedEvent(ev, q)


def query(user: str, minute: float, *, fingerprint: str = "fp-q", traits: frozenset[str] = frozenset(),
          tables: tuple[str, ...] = ("orders",), unfiltered: tuple[str, ...] = (), in_list_max: int = 0,
          expressions: frozenset[str] = frozenset({"select"}), duration_ms: float | None = None,
          rows: int | None = None, error_code: str | None = None, database: str = "dw",
          source: str = "test") -> NormalizedEvent:
    """Any query, described by what the rules look at (shape traits, outcome)."""
    ev = QueryEvent(source=source, ts=at(minute), sql="SELECT ...", user=user, database=database,
                    duration_ms=duration_ms, rows=rows, error_code=error_code,
                    error_message="failed" if error_code else None)
    q = NormalizedQuery(fingerprint=fingerprint, normalized_sql="SELECT ...", kind="select", tables=tables,
                        literals=(), traits=traits, expressions=expressions, in_list_max=in_list_max,
                        unfiltered_tables=unfiltered)
    return NormalizedEvent(ev, q)
