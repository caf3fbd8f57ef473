"""The ``snowflake`` format: rows of ``SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY`` (or the
``INFORMATION_SCHEMA.QUERY_HISTORY`` table function), exported as JSON lines or CSV, or polled.

Columns (https://docs.snowflake.com/en/sql-reference/account-usage/query_history): QUERY_ID,
QUERY_TEXT (truncated by Snowflake at 100K characters), DATABASE_NAME, SCHEMA_NAME, QUERY_TYPE,
SESSION_ID, USER_NAME, ROLE_NAME, WAREHOUSE_NAME, EXECUTION_STATUS (success, fail, incident in the
view; the table function also shows running, queued, blocked, resuming_warehouse), ERROR_CODE,
ERROR_MESSAGE, START_TIME, END_TIME (TIMESTAMP_LTZ), TOTAL_ELAPSED_TIME (milliseconds),
BYTES_SCANNED, ROWS_PRODUCED.

Why skip unfinished rows: the table function lists a running query now and again when it has
finished; counting both would count one execution twice, and only the finished row has its
duration and error.
"""

from __future__ import annotations

from typing import Any

from usagewatch.sources.formats.base import formats
from usagewatch.sources.formats.rows import Row, RowsAssembler, RowsFormat, ms_between

FINISHED = {"success", "fail", "failed_with_error", "failed_with_incident", "incident"}


class SnowflakeAssembler(RowsAssembler):
    def convert(self, row: Row) -> dict[str, Any] | str:
        status = (row.text("execution_status") or "success").lower()
        if status not in FINISHED:
            return "not-finished"
        failed = status != "success"
        start = row.ts("start_time")
        duration = row.float("total_elapsed_time")
        if duration is None:
            duration = ms_between(start, row.ts("end_time"))
        return {
            "ts": start,
            "sql": row.text("query_text"),
            "user": row.text("user_name"),
            "database": row.text("database_name"),
            "duration_ms": duration,
            "session": row.text("session_id"),
            "error_code": (row.text("error_code") or status.upper()) if failed else None,
            "error_message": row.text("error_message") if failed else None,
            "query_id": row.text("query_id"),
            "rows": row.int("rows_produced"),
            "bytes_scanned": row.int("bytes_scanned"),
            "warehouse": row.text("warehouse_name"),
        }


@formats.register("snowflake")
class Snowflake(RowsFormat):
    """Snowflake QUERY_HISTORY rows (``file_format: jsonl|csv``)."""

    dialect = "snowflake"
    assembler_class = SnowflakeAssembler
