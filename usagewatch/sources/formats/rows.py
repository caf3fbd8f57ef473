"""Shared machinery of the query-history *export* formats (Snowflake, BigQuery, Redshift, Trino,
ClickHouse and the generic ``jsonl``/``csv``): one history row is one query execution.

Why one module: every warehouse exports its history the same two ways, JSON lines or CSV with a
header row, and what differs is only which column means what. So framing and parsing live here
once, and each warehouse is a small ``RowsAssembler.convert`` that maps its columns onto
``QueryEvent``.

Framing and parsing (files):

- ``jsonl``: one JSON object per line; ``parse`` returns the object as it is (nested objects
  stay nested; ``Row`` reads dotted paths like ``metadata.query``).
- ``csv``: a record ends at a newline outside double quotes (quoted fields keep their newlines,
  as in PostgreSQL's csvlog, whose ``frame_lines`` we reuse). ``parse`` cannot name the columns:
  the header is the first record *of each file*, and one format object serves every file of a
  source. So ``parse`` returns ``{CSV_VALUES: [...]}`` and the per-file assembler keeps the
  header, in its ``state()``, so a restart in the middle of a file still maps the columns.

THE ROW CONTRACT (polled sources): ``RowsAssembler.feed(fields, position)`` takes a plain mapping
``{column name: value}``, the same shape ``parse`` produces for JSON, independently of ``parse``.
A ``type: query`` source feeds each database row straight in, with values as the DB driver
returns them (``datetime`` naive or aware, ``int``, ``Decimal``, ``float``, ``str``, ``bool``,
``dict`` for structs, ``None``). Column names are matched case-insensitively. ``feed`` returns
``[]`` for a row that is not a query execution (counted in ``assembler.skipped[reason]``) and
raises ``BadRecord`` for a malformed one (no time, an unreadable time): the caller counts it and
goes on, as the file reader does. Time values without a zone are UTC.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar, Literal, Mapping

from pydantic import field_validator

from usagewatch.errors import BadRecord
from usagewatch.model import QueryEvent
from usagewatch.sources.formats.base import Assembler, FormatOptions, LogFormat, json_object
from usagewatch.sources.formats.postgres_csvlog import frame_lines

CSV_VALUES = "\x00csv"
"""Key of the one entry of a parsed CSV record: its values, to be named by the file's header."""

_loads = json.JSONDecoder().decode
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ExportOptions(FormatOptions):
    """Options every warehouse export format takes."""

    file_format: Literal["jsonl", "csv"] = "jsonl"
    delimiter: str = ","

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1 or v in '"\r\n':
            raise ValueError("delimiter must be one character (not a quote or a newline)")
        return v


# --- values --------------------------------------------------------------------------------------
def to_text(v: Any) -> str | None:
    """Text of a value; empty and NULL are None (CSV cannot tell them apart)."""
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s or None


def to_int(v: Any) -> int | None:
    """An integer from int/float/Decimal/str ("1234", "1.2E3"); None when empty."""
    if v is None or v == "":
        return None
    if isinstance(v, int):  # bool too
        return v
    if isinstance(v, (float, Decimal)):
        return int(v)
    s = str(v).strip()
    try:
        return int(s)
    except ValueError:
        try:
            return int(float(s))
        except ValueError:
            raise BadRecord("bad-number", repr(s[:40])) from None


def to_float(v: Any) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        raise BadRecord("bad-number", repr(str(v)[:40])) from None


def to_bool(v: Any) -> bool | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, Decimal)):
        return v != 0
    return str(v).strip().lower() in ("1", "true", "t", "yes", "y")


def from_epoch(x: float) -> datetime:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude (a
    seconds value of 1e11 would be the year 5138; exports use whichever unit their type has)."""
    a = abs(x)
    if a < 1e11:
        secs = x
    elif a < 1e14:
        secs = x / 1e3
    elif a < 1e17:
        secs = x / 1e6
    else:
        secs = x / 1e9
    return _EPOCH + timedelta(seconds=secs)


# " UTC" (BigQuery), " -0700" / " +00:00" (Snowflake's default TIMESTAMP_OUTPUT_FORMAT)
_ZONE_SUFFIX = re.compile(r"\s+(UTC|GMT|Z|[+-]\d\d:?\d\d)$")
_NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def to_ts(v: Any, fmt: str | None = None) -> datetime | None:
    """A timezone-aware datetime from a driver datetime, epoch number (string or not) or text:
    ISO-8601 with or without 'T', zone as Z/+hh:mm/+hhmm/' UTC'; ``fmt`` (strptime) when given.
    No zone means UTC; the result is in UTC. Raises BadRecord("bad-time") when it cannot be read."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        return from_epoch(float(v))
    else:
        s = str(v).strip()
        try:
            if fmt:
                dt = datetime.strptime(s, fmt)
            elif _NUMERIC.match(s):
                return from_epoch(float(s))
            else:
                m = _ZONE_SUFFIX.search(s)
                if m:
                    zone = m.group(1)
                    s = s[: m.start()] + ("+00:00" if zone in ("UTC", "GMT", "Z") else zone)
                dt = datetime.fromisoformat(s)
        except ValueError:
            raise BadRecord("bad-time", repr(s[:60])) from None
    # in UTC, whatever zone the export wrote: finding texts print times as UTC
    return dt.astimezone(timezone.utc) if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() * 1000.0


# --- rows ----------------------------------------------------------------------------------------
def _ci_get(d: Mapping[str, Any], key: str) -> Any:
    """``d[key]`` matching the key's case loosely (nested JSON objects keep their own case)."""
    if key in d:
        return d[key]
    for k, v in d.items():
        if k.lower() == key:
            return v
    return None


class Row:
    """A case-insensitive view of one history row; ``get`` reads dotted paths into nested objects
    (and into JSON text, which is how a struct column looks in a CSV export)."""

    __slots__ = ("_d",)

    def __init__(self, fields: Mapping[str, Any]):
        self._d = {k.lower(): v for k, v in fields.items()}

    def _one(self, name: str) -> Any:
        d = self._d
        v = d.get(name)
        if v is not None or "." not in name:
            return v
        parts = name.split(".")
        cur: Any = d.get(parts[0])
        for part in parts[1:]:
            if isinstance(cur, str) and cur[:1] == "{":
                try:
                    cur = _loads(cur)
                except ValueError:
                    return None
            if not isinstance(cur, Mapping):
                return None
            cur = _ci_get(cur, part)
        return cur

    def get(self, *names: str) -> Any:
        """The first of the named columns (lower-case names) with a value; None if none has."""
        for n in names:
            v = self._one(n)
            if v is not None and v != "":
                return v
        return None

    def text(self, *names: str) -> str | None:
        return to_text(self.get(*names))

    def int(self, *names: str) -> int | None:
        return to_int(self.get(*names))

    def float(self, *names: str) -> float | None:
        return to_float(self.get(*names))

    def ts(self, *names: str) -> datetime | None:
        return to_ts(self.get(*names))

    def has(self, name: str) -> bool:
        return name in self._d


# --- assembler -----------------------------------------------------------------------------------
class RowsAssembler(Assembler):
    """Turns history rows (parsed JSON objects, CSV records named by the file's header, or rows a
    polled source feeds as dicts) into QueryEvents, one per row at most. Subclasses implement
    ``convert``. The only state is a CSV file's header."""

    def __init__(self, source: str, dialect: str):
        super().__init__(source, dialect)
        self.header: list[str] | None = None
        self.notes: Counter[str] = Counter()

    def convert(self, row: Row) -> dict[str, Any] | str:
        """QueryEvent fields for one row (``sql`` and ``ts`` required), or a skip reason."""
        raise NotImplementedError

    def feed(self, fields: Mapping[str, Any], position: str) -> list[QueryEvent]:
        values = fields.get(CSV_VALUES) if len(fields) == 1 else None
        if values is not None:
            if self.header is None:
                self.header = [h.strip().lstrip("\ufeff").lower() for h in values]
                return []
            if values and values[0].strip().lower() == self.header[0] and \
                    [v.strip().lower() for v in values] == self.header:
                self.skipped["csv-header"] += 1  # files concatenated with their headers
                return []
            if len(values) != len(self.header):
                raise BadRecord("csv-columns", f"{len(values)} values for {len(self.header)} columns")
            fields = dict(zip(self.header, values, strict=True))
        out = self.convert(Row(fields))
        if isinstance(out, str):
            self.skipped[out] += 1
            return []
        if out.get("ts") is None:
            raise BadRecord("no-time", "the row has no start time")
        if not out.get("sql"):
            self.skipped["no-sql"] += 1
            return []
        return [QueryEvent(source=self.source, dialect=self.dialect, position=position, **out)]

    def flush(self) -> list[QueryEvent]:
        return []  # nothing is held back: a row is a whole execution

    def state(self) -> dict[str, Any]:
        return {"header": self.header} if self.header is not None else {}

    def restore(self, state: dict[str, Any]) -> None:
        header = state.get("header")
        self.header = list(header) if header is not None else None


# --- formats -------------------------------------------------------------------------------------
class RowsFormat(LogFormat):
    """A history export in JSON lines or CSV (``file_format`` option). Subclasses set ``name``
    (by registering), ``dialect`` and ``assembler_class``."""

    Options: ClassVar[type[FormatOptions]] = ExportOptions
    assembler_class: type[RowsAssembler] = RowsAssembler
    file_format: str = "jsonl"

    def __init__(self, options: FormatOptions | None = None) -> None:
        super().__init__(options)
        self.file_format = getattr(self.options, "file_format", type(self).file_format)
        self.delimiter: str = getattr(self.options, "delimiter", ",")
        self._csv = self.file_format == "csv"

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        return frame_lines(data, at_eof, quoted=self._csv)

    def parse(self, raw: bytes) -> dict[str, Any]:
        text = raw.decode("utf-8", errors="replace")
        if self._csv:
            if not text.strip():
                raise BadRecord("csv-empty", "blank line")
            try:
                return {CSV_VALUES: next(csv.reader((text,), delimiter=self.delimiter))}
            except (csv.Error, StopIteration) as exc:
                raise BadRecord("csv-invalid", str(exc)[:200]) from None
        return json_object(text)

    def dialect_name(self) -> str:
        return self.dialect

    def assembler(self, source: str) -> RowsAssembler:
        return self.assembler_class(source, self.dialect_name())
