"""The ``postgres-csvlog`` format: PostgreSQL's ``log_destination = 'csvlog'`` files.

Framing: a record is one CSV row and may span lines, since quoted fields (the SQL, DETAIL, ...)
keep their newlines. A row ends at a ``\\n`` outside quotes. Instead of walking byte by byte, the
framer jumps from newline to newline with ``bytes.find`` and counts the ``"`` before each with
``bytes.count`` (both C loops): an even count since the record start means the newline is outside
quotes. PostgreSQL doubles a quote inside a field (``""``), which adds two and keeps the parity.

Parsing: the row goes through the ``csv`` module and its columns are read by position. PostgreSQL
added columns over time (23 up to 12, ``backend_type`` in 13, ``leader_pid`` and ``query_id`` in
14), so 23 to 26 columns are accepted. Fields become ``postgres_events.RECORD_KEYS``, the dict the
shared assembler reads; PostgreSQL writes NULL and '' alike here, both become None.
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime
from typing import Any

from usagewatch.errors import BadRecord
from usagewatch.model import QueryEvent
from usagewatch.sources.formats.base import Assembler, FormatOptions, LogFormat, formats
from usagewatch.sources.formats.postgres_events import (
    PostgresAssembler,
    parse_log_time,
)

MIN_COLUMNS, MAX_COLUMNS = 23, 26


def frame_lines(data: bytes, at_eof: bool, quoted: bool) -> list[int]:
    """End offsets of the complete records in ``data``: newline-terminated, and when ``quoted``,
    only newlines outside double quotes count. With ``at_eof`` a final unterminated record is
    returned too."""
    ends: list[int] = []
    find, count = data.find, data.count
    pos = 0
    quotes = 0
    while True:
        nl = find(b"\n", pos)
        if nl < 0:
            break
        if quoted:
            quotes += count(b'"', pos, nl)
        pos = nl + 1
        if not quotes & 1:
            ends.append(pos)
            quotes = 0
    last = ends[-1] if ends else 0
    if at_eof and last < len(data):
        ends.append(len(data))
    return ends


def _text(value: str) -> str | None:
    return value or None


class _Line:
    """The one-line input of the format's ``csv.reader``: the record last put in ``text``, then
    end of input (so a record that ends inside quotes is read as ``csv`` reads a file's last line),
    and again after the next record is put in. One reader for every record spares building one per
    record; ``csv.reader`` starts each row afresh, also after an error."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text: str | None = None

    def __iter__(self) -> _Line:
        return self

    def __next__(self) -> str:
        text = self.text
        if text is None:
            raise StopIteration
        self.text = None
        return text


@formats.register("postgres-csvlog")
class PostgresCsvlog(LogFormat):
    """PostgreSQL csvlog (13, 14, 15+ and older 23-column files).

    ``notes`` counts things worth knowing that are not errors: "tz-assumed-utc" when a timestamp
    carries a zone abbreviation we do not know (it is read as UTC). A format object parses for one
    reader at a time (its ``csv.reader`` is reused), as ``FileSource`` uses it.
    """

    dialect = "postgres"

    def __init__(self, options: FormatOptions | None = None) -> None:
        super().__init__(options)
        self.notes: Counter[str] = Counter()
        self._line = _Line()
        self._csv = csv.reader(self._line)

    def __getstate__(self) -> dict[str, Any]:  # a csv.reader does not pickle; a new one is made
        return {k: v for k, v in self.__dict__.items() if k not in ("_line", "_csv")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._line = _Line()
        self._csv = csv.reader(self._line)

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        return frame_lines(data, at_eof, quoted=True)

    def parse(self, raw: bytes) -> dict[str, Any]:
        row, log_time = self._row(raw)
        return self._fields(row, log_time)

    def parse_into(self, raw: bytes, assembler: Assembler, position: str) -> list[QueryEvent]:
        """``parse`` then ``assembler.feed``, except that a ``duration:`` record (nearly every
        record of a busy server: parse, bind, and each execution) goes to the assembler without
        its full field dict: only the keys ``PostgresAssembler.duration`` reads. The integer
        columns are still checked, so a bad one is the same ``BadRecord`` as from ``parse``."""
        row, log_time = self._row(raw)
        message = row[13]
        if row[11] == "LOG" and message.startswith("duration: ") and type(assembler) is PostgresAssembler:
            ints = "".join((row[3], row[6], row[10], row[20], *row[24:]))  # the int() columns
            if not (ints.isascii() and ints.isdigit()):
                self._fields(row, log_time)  # raises what parse() raises, if anything ("-1" is an int)
            pid = row[3]
            return assembler.duration({
                "log_time": log_time, "user": row[1] or None, "database": row[2] or None,
                "pid": int(pid) if pid else None, "client": row[4] or None, "session_id": row[5] or None,
                "detail": row[14] or None, "application": row[22] or None,
            }, message, position)
        return assembler.feed(self._fields(row, log_time), position)

    def _row(self, raw: bytes) -> tuple[list[str], datetime]:
        """The record's columns (their number checked) and its parsed log time."""
        text = raw.decode("utf-8", errors="replace")
        if not text or text.isspace():  # not text.strip(), without copying the record
            raise BadRecord("csv-empty", "blank line")
        self._line.text = text
        try:
            row = next(self._csv)
        except (csv.Error, StopIteration) as exc:
            raise BadRecord("csv-invalid", str(exc)[:200]) from None
        n = len(row)
        if n < MIN_COLUMNS or n > MAX_COLUMNS:
            raise BadRecord("csv-columns", f"{n} columns, expected {MIN_COLUMNS}..{MAX_COLUMNS}")
        try:
            log_time, known = parse_log_time(row[0])
        except ValueError:
            raise BadRecord("csv-time", repr(row[0][:60])) from None
        if not known:
            self.notes["tz-assumed-utc"] += 1
        return row, log_time

    @staticmethod
    def _fields(row: list[str], log_time: datetime) -> dict[str, Any]:
        n = len(row)
        # ``int(v) if v else None`` is ``to_int`` inlined (every csv field is a str)
        try:
            return {
                "log_time": log_time,
                "user": row[1] or None,
                "database": row[2] or None,
                "pid": int(row[3]) if row[3] else None,
                "client": row[4] or None,
                "session_id": row[5] or None,
                "session_line": int(row[6]) if row[6] else None,
                "command_tag": row[7] or None,
                "session_start": row[8] or None,
                "vxid": row[9] or None,
                "txid": int(row[10]) if row[10] else None,
                "severity": row[11] or None,
                "sqlstate": row[12] or None,
                "message": row[13],
                "detail": row[14] or None,
                "hint": row[15] or None,
                "internal_query": row[16] or None,
                "context": row[18] or None,
                "query": row[19] or None,
                "query_pos": int(row[20]) if row[20] else None,
                "application": row[22] or None,
                "backend_type": (row[23] or None) if n > 23 else None,
                "leader_pid": (int(row[24]) if row[24] else None) if n > 24 else None,
                "query_id": (int(row[25]) if row[25] else None) if n > 25 else None,
            }
        except ValueError as exc:
            raise BadRecord("csv-field", str(exc)[:200]) from None

    def assembler(self, source: str) -> PostgresAssembler:
        return PostgresAssembler(source, self.dialect)
