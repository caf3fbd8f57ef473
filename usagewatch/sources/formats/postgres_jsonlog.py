"""The ``postgres-jsonlog`` format: PostgreSQL 15+'s ``log_destination = 'jsonlog'`` files.

One JSON object per line (PostgreSQL escapes newlines inside values), so framing is a newline
search. PostgreSQL leaves out keys whose value is empty; the parser maps the object onto the same
``postgres_events.RECORD_KEYS`` dict as csvlog (absent -> None; an absent ``state_code`` is
PostgreSQL's "00000", which csvlog always writes), which is what lets one assembler
serve both formats and makes the two logs of one server give identical events.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from usagewatch.errors import BadRecord
from usagewatch.sources.formats.base import FormatOptions, LogFormat, formats, json_object
from usagewatch.sources.formats.postgres_csvlog import frame_lines
from usagewatch.sources.formats.postgres_events import (
    PostgresAssembler,
    parse_log_time,
    to_int,
)


@formats.register("postgres-jsonlog")
class PostgresJsonlog(LogFormat):
    """PostgreSQL jsonlog. ``notes`` counts "tz-assumed-utc" like the csvlog format does."""

    dialect = "postgres"

    def __init__(self, options: FormatOptions | None = None) -> None:
        super().__init__(options)
        self.notes: Counter[str] = Counter()

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        return frame_lines(data, at_eof, quoted=False)

    def parse(self, raw: bytes) -> dict[str, Any]:
        obj = json_object(raw.decode("utf-8", errors="replace"))
        get = obj.get
        stamp = get("timestamp")
        if not isinstance(stamp, str):
            raise BadRecord("json-time", "no timestamp")
        try:
            log_time, known = parse_log_time(stamp)
        except ValueError:
            raise BadRecord("json-time", repr(stamp[:60])) from None
        if not known:
            self.notes["tz-assumed-utc"] += 1
        host, port = get("remote_host"), get("remote_port")
        client = f"{host}:{port}" if host and port is not None else (host or None)
        try:
            return {
                "log_time": log_time,
                "user": get("user") or None,
                "database": get("dbname") or None,
                "pid": to_int(get("pid")),
                "client": client,
                "session_id": get("session_id") or None,
                "session_line": to_int(get("line_num")),
                "command_tag": get("ps") or None,
                "session_start": get("session_start") or None,
                "vxid": get("vxid") or None,
                "txid": to_int(get("txid")),
                "severity": get("error_severity") or None,
                "sqlstate": get("state_code") or "00000",  # left out when it is 00000
                "message": get("message") or "",
                "detail": get("detail") or None,
                "hint": get("hint") or None,
                "internal_query": get("internal_query") or None,
                "context": get("context") or None,
                "query": get("statement") or None,
                "query_pos": to_int(get("cursor_position")),
                "application": get("application_name") or None,
                "backend_type": get("backend_type") or None,
                "leader_pid": to_int(get("leader_pid")),
                "query_id": to_int(get("query_id")),
            }
        except (TypeError, ValueError) as exc:
            raise BadRecord("json-field", str(exc)[:200]) from None

    def assembler(self, source: str) -> PostgresAssembler:
        return PostgresAssembler(source, self.dialect)
