"""``usagewatch explain "SQL"``: what the normalizer makes of one query, for writing a rule.

Prints the fingerprint, the normalized SQL, each literal with its slot, value and column, the
statement kind, tables, traits, tables read without WHERE, the longest IN list, the sqlglot
expression types, and whether sqlglot parsed it (or the token fallback was used).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from usagewatch.cli import cli
from usagewatch.errors import UsagewatchError
from usagewatch.normalize import Normalizer


def explain(sql: str, dialect: str = "postgres", params: Sequence[str | None] = ()) -> dict[str, Any]:
    """What normalizing ``sql`` gives, as plain JSON-able data; raises UsagewatchError for an unknown dialect."""
    try:
        normalizer = Normalizer(dialect, cache_size=0)
    except ValueError as exc:
        raise UsagewatchError(str(exc)) from None
    q = normalizer.normalize(sql, params)
    return {
        "dialect": normalizer.dialect_name,
        "parsed": q.parsed,
        "fingerprint": q.fingerprint,
        "kind": q.kind,
        "normalized_sql": q.normalized_sql,
        "tables": list(q.tables),
        "literals": [{"slot": lit.slot, "value": lit.value, "column": lit.column} for lit in q.literals],
        "traits": sorted(q.traits),
        "unfiltered_tables": list(q.unfiltered_tables),
        "in_list_max": q.in_list_max,
        "expressions": sorted(q.expressions),
    }


def _value(v: str | None) -> str:
    return "NULL" if v is None else json.dumps(v, ensure_ascii=False)


def render(info: dict[str, Any]) -> str:
    """The text form of ``explain``'s result, one fact per line."""
    parsed = "yes" if info["parsed"] else "no (token fallback: no traits, tables or columns)"
    lines = [
        f"fingerprint:       {info['fingerprint']}",
        f"parsed:            {parsed}",
        f"dialect:           {info['dialect']}",
        f"kind:              {info['kind']}",
        f"normalized:        {info['normalized_sql']}",
        f"tables:            {', '.join(info['tables']) or '-'}",
        f"literals:          {len(info['literals']) or '-'}",
        *(f"  slot {lit['slot']}: {_value(lit['value'])}" + (f"  (column {lit['column']})" if lit["column"] else "")
          for lit in info["literals"]),
        f"traits:            {', '.join(info['traits']) or '-'}",
        f"unfiltered tables: {', '.join(info['unfiltered_tables']) or '-'}",
        f"longest IN list:   {info['in_list_max']}",
        f"expressions:       {', '.join(info['expressions']) or '-'}",
    ]
    return "\n".join(lines)


@cli.command("explain")
@click.argument("sql")
@click.option("--dialect", "-d", default="postgres", show_default=True, help="SQL dialect (a sqlglot dialect name).")
@click.option("--param", "-p", "params", multiple=True, metavar="V",
              help="A bind value: the first is $1 (or the first ?), and so on. Repeat for more.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain_cmd(sql: str, dialect: str, params: tuple[str, ...], fmt: str) -> None:
    """Show how one query is normalized: fingerprint, literals, traits (for writing rules). SQL "-" reads stdin."""
    if sql == "-":
        sql = sys.stdin.read()
    info = explain(sql, dialect, params)
    click.echo(json.dumps(info, indent=2, ensure_ascii=False) if fmt == "json" else render(info))
