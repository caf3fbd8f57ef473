"""Log formats, each a registered class (see ``base``). Importing this package registers them all."""

from usagewatch.sources.formats import (  # noqa: F401  (importing registers them)
    bigquery,
    clickhouse,
    generic,
    mysql_general,
    mysql_slow,
    postgres_csvlog,
    postgres_jsonlog,
    postgres_stderr,
    redshift,
    snowflake,
    trino,
)
from usagewatch.sources.formats.base import Assembler, FormatOptions, LogFormat, formats

__all__ = ["Assembler", "FormatOptions", "LogFormat", "formats"]
