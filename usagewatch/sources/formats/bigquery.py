"""The ``bigquery`` format: rows of BigQuery's ``INFORMATION_SCHEMA.JOBS`` view (JOBS_BY_PROJECT,
JOBS_BY_USER, ...), exported as JSON lines or CSV, or polled.

Columns (https://cloud.google.com/bigquery/docs/information-schema-jobs): job_id, job_type (QUERY,
LOAD, EXTRACT, COPY or NULL), statement_type (SELECT, INSERT, ..., SCRIPT), state (PENDING,
RUNNING, DONE), creation_time, start_time, end_time (TIMESTAMP), user_email, project_id, query,
total_bytes_processed, total_slot_ms, cache_hit, reservation_id, session_info (RECORD with
session_id), error_result (RECORD: reason, location, debug_info, message), parent_job_id ...

Why these skips: only QUERY jobs run SQL (a LOAD job has no query); a job that is not DONE has no
end yet and will be listed again when it is; and a multi-statement script is one SCRIPT parent job
plus one child job per statement, so counting the parent too would count its statements twice.

Exports differ in how they write a TIMESTAMP: EXPORT DATA writes "2024-05-15 14:30:22.123456 UTC",
the REST API (and so ``bq`` in some versions) epoch seconds like "1.715783422123E9"; both are read.
A CSV export cannot hold a RECORD, so select ``error_result.reason AS error_reason`` (or
``TO_JSON_STRING(error_result) AS error_result``): both spellings are read.
"""

from __future__ import annotations

from typing import Any

from usagewatch.sources.formats.base import formats
from usagewatch.sources.formats.rows import Row, RowsAssembler, RowsFormat, ms_between


class BigQueryAssembler(RowsAssembler):
    def convert(self, row: Row) -> dict[str, Any] | str:
        job_type = (row.text("job_type") or "QUERY").upper()
        if job_type != "QUERY":
            return "not-query-job"
        state = (row.text("state") or "DONE").upper()
        if state != "DONE":
            return "not-finished"
        if (row.text("statement_type") or "").upper() == "SCRIPT":
            return "script-parent"
        start = row.ts("start_time", "creation_time")
        reason = row.text("error_result.reason", "error_reason")
        message = row.text("error_result.message", "error_message")
        return {
            "ts": start,
            "sql": row.text("query"),
            "user": row.text("user_email"),
            "database": row.text("project_id"),
            "duration_ms": ms_between(start, row.ts("end_time")),
            "session": row.text("session_info.session_id", "session_id"),
            "error_code": reason or ("error" if message else None),
            "error_message": message,
            "query_id": row.text("job_id"),
            "bytes_scanned": row.int("total_bytes_processed"),
            "warehouse": row.text("reservation_id"),
        }


@formats.register("bigquery")
class BigQuery(RowsFormat):
    """BigQuery INFORMATION_SCHEMA.JOBS rows (``file_format: jsonl|csv``)."""

    dialect = "bigquery"
    assembler_class = BigQueryAssembler
