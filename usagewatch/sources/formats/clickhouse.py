"""The ``clickhouse`` format: rows of ClickHouse's ``system.query_log``, exported with
``FORMAT JSONEachRow`` or ``CSVWithNames``, or polled.

Columns (https://clickhouse.com/docs/operations/system-tables/query_log): type (QueryStart,
QueryFinish, ExceptionBeforeStart, ExceptionWhileProcessing; Enum8 1..4), event_time,
query_start_time, query_start_time_microseconds (DateTime in the server's time zone, written
without a zone: export in UTC, see docs/sources/warehouses.md), query_duration_ms, read_rows,
read_bytes, result_rows, user, query_id, query, current_database, exception_code, exception,
query_kind, is_initial_query, client_name, address.

Why these skips: a successful query logs a QueryStart row and a QueryFinish row, a failing one
QueryStart and ExceptionWhileProcessing; only the second row has duration and error, so QueryStart
rows are skipped ("query-start"), and ExceptionBeforeStart (one row only) is counted. A
distributed query also logs its sub-queries on the shards with is_initial_query = 0: those are the
server's work, not the user's, and are skipped ("not-initial").

JSONEachRow quotes 64-bit integers by default (output_format_json_quote_64bit_integers), so
"1234" is read as a number.
"""

from __future__ import annotations

from typing import Any

from usagewatch.sources.formats.base import formats
from usagewatch.sources.formats.rows import Row, RowsAssembler, RowsFormat, to_bool

TYPES = {"1": "QueryStart", "2": "QueryFinish", "3": "ExceptionBeforeStart", "4": "ExceptionWhileProcessing"}


class ClickHouseAssembler(RowsAssembler):
    def convert(self, row: Row) -> dict[str, Any] | str:
        kind = row.text("type") or "QueryFinish"
        kind = TYPES.get(kind, kind)
        if kind == "QueryStart":
            return "query-start"
        if to_bool(row.get("is_initial_query")) is False:
            return "not-initial"
        code = row.int("exception_code") or 0
        failed = kind.startswith("Exception") or code != 0
        return {
            "ts": row.ts("query_start_time_microseconds", "query_start_time", "event_time_microseconds", "event_time"),
            "sql": row.text("query"),
            "user": row.text("user"),
            "database": row.text("current_database"),
            "duration_ms": row.float("query_duration_ms"),
            "application": row.text("client_name", "http_user_agent"),
            "client": row.text("address"),
            "error_code": (str(code) if code else kind) if failed else None,
            "error_message": row.text("exception") if failed else None,
            "query_id": row.text("query_id"),
            "rows": row.int("result_rows"),
            "bytes_scanned": row.int("read_bytes"),
        }


@formats.register("clickhouse")
class ClickHouse(RowsFormat):
    """ClickHouse system.query_log rows (``file_format: jsonl|csv``)."""

    dialect = "clickhouse"
    assembler_class = ClickHouseAssembler
