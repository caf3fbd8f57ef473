"""Log formats, each a registered class (see ``base``). Importing this package registers them all."""

from usagewatch.sources.formats import postgres_csvlog, postgres_jsonlog  # noqa: F401,E402  (register)
from usagewatch.sources.formats import bigquery, clickhouse, generic, redshift, snowflake, trino  # noqa: F401,E402  (register)
from usagewatch.sources.formats import postgres_stderr  # noqa: F401,E402  (register)
from usagewatch.sources.formats import mysql_general, mysql_slow  # noqa: F401,E402  (register)
from usagewatch.sources.formats.base import Assembler, FormatOptions, LogFormat, formats

__all__ = ["Assembler", "FormatOptions", "LogFormat", "formats"]
