"""The generic ``jsonl`` and ``csv`` formats: any query history, in JSON lines or CSV with a header
row (or polled), whose columns the admin maps onto the event's fields in the config:

.. code-block:: yaml

    format: jsonl
    options:
      mapping: {sql: query_text, ts: started, user: usr, duration_ms: ms, user: metadata.user}
      dialect: postgres          # the SQL dialect of the queries (a sqlglot dialect name)
      ts_format: "%d/%m/%Y %H:%M:%S"   # optional; default ISO-8601 or epoch numbers
      duration_unit: ms          # ms | s | us: the unit of the duration column

Why a generic format: every in-house query log and every warehouse we have no format for yet
can be watched without code. ``sql`` and ``ts`` must be mapped (a query needs its text and its
time); an unknown event field is rejected with "Did you mean ...?" when the config is loaded, not
at the first row. Source field names match case-insensitively; dotted paths read nested JSON.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from usagewatch.registry import did_you_mean
from usagewatch.sources.formats.base import FormatOptions, formats
from usagewatch.sources.formats.rows import (
    Row,
    RowsAssembler,
    RowsFormat,
    to_float,
    to_int,
    to_text,
    to_ts,
)

TEXT_FIELDS = ("sql", "user", "database", "session", "application", "client", "error_code",
               "error_message", "query_id", "warehouse")
EVENT_FIELDS = (*TEXT_FIELDS, "ts", "duration_ms", "rows", "bytes_scanned")
UNIT_MS = {"ms": 1.0, "s": 1000.0, "us": 0.001}

# The SQL dialects of sqlglot (usagewatch.normalize.known_dialects()). Written out because a source
# must not import the normalize stage; a test checks that every name here is one sqlglot knows.
DIALECTS = ("athena", "bigquery", "clickhouse", "databricks", "doris", "dremio", "drill", "druid",
            "duckdb", "dune", "exasol", "fabric", "hive", "materialize", "mysql", "oracle", "postgres",
            "presto", "prql", "redshift", "risingwave", "snowflake", "solr", "spark", "spark2", "sqlite",
            "starrocks", "tableau", "teradata", "trino", "tsql")


class GenericOptions(FormatOptions):
    """Options of the ``jsonl`` format (``csv`` adds ``delimiter``)."""

    mapping: dict[str, str]
    dialect: str = "postgres"
    ts_format: str | None = None
    duration_unit: Literal["ms", "s", "us"] = "ms"

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name not in EVENT_FIELDS:
                raise ValueError(f'unknown event field "{name}".' + did_you_mean(name, EVENT_FIELDS))
        missing = [f for f in ("sql", "ts") if not v.get(f)]
        if missing:
            raise ValueError("the mapping needs " + " and ".join(f'"{f}"' for f in missing)
                             + " (the source fields holding the query text and its start time)")
        return {k: s.strip().lower() for k, s in v.items()}

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, v: str) -> str:
        name = v.strip().lower()
        if name not in DIALECTS:
            raise ValueError(f'unknown SQL dialect "{v}".' + did_you_mean(name, DIALECTS))
        return name


class GenericCsvOptions(GenericOptions):
    delimiter: str = ","

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1 or v in '"\r\n':
            raise ValueError("delimiter must be one character (not a quote or a newline)")
        return v


class GenericAssembler(RowsAssembler):
    def __init__(self, source: str, dialect: str, options: GenericOptions):
        super().__init__(source, dialect)
        self.mapping = options.mapping
        self.ts_format = options.ts_format
        self.unit = UNIT_MS[options.duration_unit]

    def convert(self, row: Row) -> dict[str, Any] | str:
        m = self.mapping
        out: dict[str, Any] = {f: to_text(row.get(m[f])) for f in TEXT_FIELDS if f in m}
        out["ts"] = to_ts(row.get(m["ts"]), self.ts_format)
        if "duration_ms" in m:
            d = to_float(row.get(m["duration_ms"]))
            out["duration_ms"] = d * self.unit if d is not None else None
        for f in ("rows", "bytes_scanned"):
            if f in m:
                out[f] = to_int(row.get(m[f]))
        return out


class _Generic(RowsFormat):
    Options = GenericOptions

    def dialect_name(self) -> str:
        return self.options.dialect  # type: ignore[attr-defined, no-any-return]

    def assembler(self, source: str) -> GenericAssembler:
        assert isinstance(self.options, GenericOptions)
        return GenericAssembler(source, self.dialect_name(), self.options)


@formats.register("jsonl")
class GenericJsonl(_Generic):
    """Any query history as JSON lines, columns mapped by ``options.mapping``."""

    Options = GenericOptions
    file_format = "jsonl"


@formats.register("csv")
class GenericCsv(_Generic):
    """Any query history as CSV with a header row, columns mapped by ``options.mapping``."""

    Options = GenericCsvOptions
    file_format = "csv"
