"""``usagewatch explain``: what the normalizer makes of one query, as text lines or JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from usagewatch.cli import cli
from usagewatch.cli.explain import explain
from usagewatch.normalize import Normalizer


def invoke(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin)


def test_text_output_exact_lines():
    sql = "SELECT * FROM orders WHERE company_id = 42 AND status IN ('open', 'paid') ORDER BY id"
    r = invoke("explain", sql)
    assert r.exit_code == 0, r.output
    fp = Normalizer("postgres").normalize(sql).fingerprint
    assert r.output.splitlines() == [
        f"fingerprint:       {fp}",
        "parsed:            yes",
        "dialect:           postgres",
        "kind:              select",
        "normalized:        SELECT * FROM orders WHERE company_id = ? AND status IN (?...) ORDER BY id",
        "tables:            orders",
        "literals:          2",
        '  slot 0: "42"  (column company_id)',
        '  slot 1: "open,paid"  (column status)',
        "traits:            order_by_without_limit, select_star",
        "unfiltered tables: -",
        "longest IN list:   2",
        "expressions:       and, column, eq, from, identifier, in, literal, order, ordered, select, star, table, where",
    ]


def test_json_keys_and_bind_params():
    r = invoke("explain", "--format", "json", "--dialect", "postgres", "--param", "7", "--param", "x",
               "UPDATE accounts SET note = $2 WHERE id = $1")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert set(info) == {"dialect", "parsed", "fingerprint", "kind", "normalized_sql", "tables", "literals",
                         "traits", "unfiltered_tables", "in_list_max", "expressions"}
    assert info["kind"] == "update" and info["parsed"] is True and info["tables"] == ["accounts"]
    assert info["literals"] == [{"slot": 0, "value": "x", "column": "note"}, {"slot": 1, "value": "7", "column": "id"}]
    assert info["traits"] == [] and "update" in info["expressions"]


def test_unknown_dialect_is_an_error_with_did_you_mean():
    r = invoke("explain", "--dialect", "postgre", "SELECT 1")
    assert r.exit_code == 1
    assert r.stderr == 'Error: unknown SQL dialect "postgre". Did you mean "postgres"?\n'


def test_unparsed_sql_says_so():
    r = invoke("explain", "FROBNICATE widgets WHERE id = 1")
    assert r.exit_code == 0
    assert "parsed:            no (token fallback: no traits, tables or columns)" in r.output.splitlines()


def test_sql_from_stdin_and_library_function():
    r = invoke("explain", "-d", "mysql", "--format", "json", "-", stdin="SELECT a FROM t, u WHERE t.k = 1\n")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == explain("SELECT a FROM t, u WHERE t.k = 1", "mysql")
    info = explain("SELECT a FROM big.facts", "snowflake")
    assert info["dialect"] == "snowflake"
    assert info["traits"] == ["no_where"] and info["unfiltered_tables"] == ["big.facts"]
    assert info["in_list_max"] == 0
