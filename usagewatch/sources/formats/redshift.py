"""The ``redshift`` format: rows of Amazon Redshift's ``SYS_QUERY_HISTORY`` view, UNLOADed as
JSON or CSV, or polled.

Columns (https://docs.aws.amazon.com/redshift/latest/dg/SYS_QUERY_HISTORY.html): user_id
(integer), query_id, query_label, transaction_id, session_id, database_name, query_type, status
(planning, queued, running, returning, failed, canceled, success), result_cache_hit, start_time,
end_time (timestamps in UTC, without a zone), elapsed_time, queue_time, execution_time (all
MICROseconds), error_message, returned_rows, returned_bytes, query_text (character(4000): longer
statements are cut; the full text is in SYS_QUERY_TEXT in 4000-character pieces). The view
has no bytes-scanned figure (SYS_QUERY_DETAIL has, per step), so ``bytes_scanned`` stays empty.

The view has the user's numeric id only; an export that joins ``pg_user`` (``usename``) gives
names, which we prefer. Redshift pads ``character(n)`` columns with blanks, so text is stripped on
the right. ``notes["query-text-truncated"]`` counts statements that reached the 4000-character
limit: their fingerprint may merge statements that differ only after the cut.
"""

from __future__ import annotations

from typing import Any

from usagewatch.sources.formats.base import formats
from usagewatch.sources.formats.rows import Row, RowsAssembler, RowsFormat, ms_between

TEXT_LIMIT = 4000
FINISHED = {"success", "failed", "canceled", "cancelled"}


def _rtext(row: Row, *names: str) -> str | None:
    v = row.text(*names)
    return (v.rstrip() or None) if v is not None else None


class RedshiftAssembler(RowsAssembler):
    def convert(self, row: Row) -> dict[str, Any] | str:
        status = (_rtext(row, "status") or "success").lower()
        if status not in FINISHED:
            return "not-finished"
        sql = _rtext(row, "query_text")
        if sql is not None and len(sql) >= TEXT_LIMIT:
            self.notes["query-text-truncated"] += 1
        start = row.ts("start_time")
        elapsed = row.float("elapsed_time")
        duration = elapsed / 1000.0 if elapsed is not None else ms_between(start, row.ts("end_time"))
        failed = status != "success"
        return {
            "ts": start,
            "sql": sql,
            "user": _rtext(row, "usename", "user_name", "username") or _rtext(row, "user_id"),
            "database": _rtext(row, "database_name"),
            "duration_ms": duration,
            "session": _rtext(row, "session_id"),
            "error_code": status if failed else None,
            "error_message": _rtext(row, "error_message") if failed else None,
            "query_id": _rtext(row, "query_id"),
            "rows": row.int("returned_rows"),
            # returned_bytes is what went to the client, not what was scanned: left out
        }


@formats.register("redshift")
class Redshift(RowsFormat):
    """Redshift SYS_QUERY_HISTORY rows (``file_format: jsonl|csv``)."""

    dialect = "redshift"
    assembler_class = RedshiftAssembler
