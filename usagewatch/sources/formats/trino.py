"""The ``trino`` format: Trino's QueryCompletedEvent as JSON, one event per line (what the HTTP
event listener POSTs, written to a file by whatever receives it; Kafka consumers likewise), or rows
of the MySQL event listener's ``trino_queries`` table.

Event fields (https://trino.io/docs/current/admin/event-listeners-http.html; the JSON is the SPI
classes QueryCompletedEvent/QueryMetadata/QueryContext/QueryStatistics/QueryFailureInfo serialized
by airlift's Jackson mapper): ``metadata.queryId``, ``metadata.query``, ``metadata.queryState``
(FINISHED, FAILED), ``context.user``, ``context.catalog``, ``context.schema``, ``context.source``
(the client, e.g. trino-cli), ``context.remoteClientAddress``, ``statistics.wallTime`` /
``cpuTime`` (java.time.Duration: Jackson writes decimal seconds, ``1.234000000``; ISO "PT1.234S"
and airlift's "1.23s" are read too), ``statistics.outputRows`` / ``totalRows``,
``statistics.physicalInputBytes`` / ``totalBytes``, ``createTime``, ``executionStartTime``,
``endTime`` (ISO instants), ``failureInfo.errorCode.name``, ``failureInfo.failureMessage``.

``ts`` is ``createTime``: when the user submitted the query (executionStartTime leaves out queueing
and planning), like the other warehouses' start time. ``rows`` is the rows returned (outputRows)
and ``bytes_scanned`` the bytes read from storage (physicalInputBytes), as for the others.
The listener may also send QueryCreatedEvent (no statistics) and SplitCompletedEvent records; they
are skipped ("query-created", "split-completed") so that each query counts once.
"""

from __future__ import annotations

import re
from typing import Any

from usagewatch.errors import BadRecord
from usagewatch.sources.formats.base import formats
from usagewatch.sources.formats.rows import Row, RowsAssembler, RowsFormat, ms_between, to_float

_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3, "d": 86400e3}
_AIRLIFT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")
_ISO = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def duration_ms(v: Any) -> float | None:
    """Milliseconds of a Trino duration: decimal seconds (Jackson's java.time.Duration), ISO-8601
    "PT1M2.5S", or airlift's "1.23s" / "450.00ms"."""
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        f = to_float(v)
        return None if f is None else f * 1000.0
    s = v.strip()
    m = _AIRLIFT.match(s)
    if m:
        return float(m.group(1)) * _UNITS_MS[m.group(2)]
    m = _ISO.match(s.upper())
    if m and any(m.groups()):
        d, h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
        return ((d * 24 + h) * 60 + mi) * 60e3 + sec * 1e3
    try:
        return float(s) * 1000.0
    except ValueError:
        raise BadRecord("bad-duration", repr(s[:40])) from None


class TrinoAssembler(RowsAssembler):
    def convert(self, row: Row) -> dict[str, Any] | str:
        if row.has("metadata") or row.has("statistics"):
            return self._event(row)
        if row.has("stageid") or row.has("taskid"):
            return "split-completed"
        if row.has("query_id") and row.has("query"):
            return self._table_row(row)
        return "not-a-query-event"

    def _event(self, row: Row) -> dict[str, Any] | str:
        if not row.has("statistics"):
            return "query-created"
        state = (row.text("metadata.querystate") or "FINISHED").upper()
        failed = state != "FINISHED" or row.get("failureinfo") is not None
        start = row.ts("createtime", "executionstarttime")
        duration = duration_ms(row.get("statistics.walltime"))
        if duration is None:
            duration = ms_between(start, row.ts("endtime"))
        return {
            "ts": start,
            "sql": row.text("metadata.query"),
            "user": row.text("context.user"),
            "database": row.text("context.catalog"),
            "duration_ms": duration,
            "application": row.text("context.source"),
            "client": row.text("context.remoteclientaddress"),
            "error_code": (row.text("failureinfo.errorcode.name") or state) if failed else None,
            "error_message": row.text("failureinfo.failuremessage") if failed else None,
            "query_id": row.text("metadata.queryid"),
            "rows": row.int("statistics.outputrows", "statistics.totalrows"),
            "bytes_scanned": row.int("statistics.physicalinputbytes", "statistics.totalbytes"),
        }

    def _table_row(self, row: Row) -> dict[str, Any] | str:
        """A row of the MySQL event listener's trino_queries table (snake_case, times in ms)."""
        state = (row.text("query_state") or "FINISHED").upper()
        failed = state != "FINISHED"
        start = row.ts("create_time", "execution_start_time")
        wall = row.float("wall_time_millis")
        return {
            "ts": start,
            "sql": row.text("query"),
            "user": row.text("user"),
            "database": row.text("catalog"),
            "duration_ms": wall if wall is not None else ms_between(start, row.ts("end_time")),
            "application": row.text("source"),
            "client": row.text("remote_client_address"),
            "error_code": (row.text("error_code") or state) if failed else None,
            "error_message": row.text("failure_message") if failed else None,
            "query_id": row.text("query_id"),
            "rows": row.int("output_rows", "total_rows"),
            "bytes_scanned": row.int("physical_input_bytes", "total_bytes"),
        }


@formats.register("trino")
class Trino(RowsFormat):
    """Trino QueryCompletedEvent JSON lines (or trino_queries rows, ``file_format: csv`` too)."""

    dialect = "trino"
    assembler_class = TrinoAssembler
