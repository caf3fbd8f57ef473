"""Fingerprints: equal for runs of one shape, different when the structure differs; normalized SQL."""

from __future__ import annotations

import pytest

from usagewatch.normalize import Normalizer


@pytest.fixture
def n() -> Normalizer:
    return Normalizer("postgres")


def fp(n: Normalizer, sql: str) -> str:
    return n.normalize(sql).fingerprint


SAME = [
    ("SELECT * FROM orders WHERE company_id = 42", "select *   from orders\n where company_id = 7"),
    ("SELECT * FROM orders WHERE name = 'acme'", "SELECT * FROM orders WHERE name = 'it''s other'"),
    ("SELECT * FROM orders WHERE x > 5", "SELECT * FROM orders WHERE x > -5"),
    ("SELECT * FROM orders WHERE x > 1.5", "SELECT * FROM orders WHERE x > 100"),
    ("SELECT * FROM orders WHERE id = 1 -- one", "/* who */ SELECT * FROM orders WHERE id = 2"),
    ("SELECT * FROM orders WHERE id IN (1)", "SELECT * FROM orders WHERE id IN (1, 2, 3, 4, 5)"),
    ("SELECT * FROM orders WHERE id IN ('a', 'b')", "SELECT * FROM orders WHERE id IN ('c')"),
    ("INSERT INTO t (a, b) VALUES (1, 'x')", "INSERT INTO t (a, b) VALUES (2, 'y'), (3, 'z'), (4, 'w')"),
    ("SELECT A FROM Orders", "select a from orders"),
    ("SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = 5"),
    ("SELECT * FROM t WHERE a = ANY(ARRAY[1, 2])", "SELECT * FROM t WHERE a = ANY(ARRAY[3])"),
    ("SELECT * FROM t LIMIT 10", "SELECT * FROM t LIMIT 500"),
]

DIFFERENT = [
    ("SELECT * FROM orders WHERE company_id = 1", "SELECT * FROM invoices WHERE company_id = 1"),
    ("SELECT * FROM orders WHERE company_id = 1", "SELECT * FROM orders WHERE user_id = 1"),
    ("SELECT * FROM orders WHERE company_id = 1", "SELECT * FROM orders WHERE company_id > 1"),
    ("SELECT * FROM orders WHERE company_id = 1", "SELECT * FROM orders WHERE company_id = 1 AND x = 2"),
    ("SELECT * FROM a JOIN b ON a.id = b.id", "SELECT * FROM a LEFT JOIN b ON a.id = b.id"),
    ("SELECT * FROM orders WHERE company_id = 1", "SELECT * FROM orders WHERE company_id IN (1)"),
    ("SELECT * FROM t WHERE flag = TRUE", "SELECT * FROM t WHERE flag = FALSE"),
    ("SELECT * FROM t WHERE x IS NULL", "SELECT * FROM t WHERE x = 1"),
    ("SELECT a FROM t", "SELECT b FROM t"),
    ('SELECT * FROM "Users"', 'SELECT * FROM "users"'),
    ("SELECT CAST(x AS VARCHAR(10)) FROM t", "SELECT CAST(x AS VARCHAR(20)) FROM t"),
]


@pytest.mark.parametrize("a,b", SAME)
def test_same_shape_same_fingerprint(n: Normalizer, a: str, b: str) -> None:
    qa, qb = n.normalize(a), n.normalize(b)
    assert qa.parsed and qb.parsed
    assert qa.fingerprint == qb.fingerprint
    assert qa.normalized_sql == qb.normalized_sql


@pytest.mark.parametrize("a,b", DIFFERENT)
def test_different_structure_different_fingerprint(n: Normalizer, a: str, b: str) -> None:
    assert fp(n, a) != fp(n, b)


def test_fingerprint_is_short_hex(n: Normalizer) -> None:
    f = fp(n, "SELECT 1")
    assert 8 <= len(f) <= 32
    int(f, 16)


def test_normalized_sql_hides_values_and_is_readable(n: Normalizer) -> None:
    q = n.normalize("select * from orders where company_id in (101, 102, 103) and status = 'open' -- x")
    assert "101" not in q.normalized_sql and "open" not in q.normalized_sql
    assert "?" in q.normalized_sql
    assert "--" not in q.normalized_sql and " x" not in q.normalized_sql
    assert q.normalized_sql.startswith("SELECT * FROM orders WHERE")
    assert "IN (?...)" in q.normalized_sql


def test_normalized_sql_is_in_the_dialect() -> None:
    q = Normalizer("mysql").normalize("SELECT `id` FROM `orders` WHERE `x` = 1")
    assert "`" in q.normalized_sql
    q = Normalizer("postgres").normalize('SELECT "Id" FROM orders WHERE x = 1')
    assert '"Id"' in q.normalized_sql


@pytest.mark.parametrize(
    "dialect,sql",
    [
        ("mysql", "SELECT * FROM t WHERE a = 'x' # comment"),
        ("snowflake", "SELECT * FROM db.sch.t WHERE a = 1 // comment"),
        ("bigquery", "SELECT * FROM `proj.ds.t` WHERE a = \"x\""),
        ("redshift", "SELECT * FROM t WHERE a = 1"),
        ("trino", "SELECT * FROM t WHERE a = 1"),
        ("clickhouse", "SELECT * FROM t WHERE a = 1"),
    ],
)
def test_dialects_parse_and_group(dialect: str, sql: str) -> None:
    n = Normalizer(dialect)
    q = n.normalize(sql)
    assert q.parsed
    other = sql.replace("1", "2").replace("x", "yy")
    assert n.normalize(other).fingerprint == q.fingerprint


def test_multi_statement_text(n: Normalizer) -> None:
    q = n.normalize("SELECT 1 FROM a; SELECT 2 FROM b")
    assert q.parsed and q.tables == ("a", "b") and len(q.literals) == 2


def test_made_up_aliases_restart_at_t0_in_every_statement() -> None:
    """sqlglot invents ``_t0``, ``_t1`` ... for a table alias that has columns but no name. The
    normalizer keeps one generator and restarts its private counter (``generator._next_name``) per
    statement; if a sqlglot upgrade renamed that attribute, the counter would run on across
    statements and the same shape would change its normalized SQL (and fingerprint) over time."""
    n = Normalizer("postgres", cache_size=0)  # no cache: every statement is generated again
    texts = ["SELECT x FROM (SELECT 1) AS (x)", "SELECT * FROM GENERATE_SERIES(1, 10) AS (n)"]
    first = [n.normalize(t) for t in texts]
    assert [q.normalized_sql for q in first] == ["SELECT x FROM (SELECT ?) AS _t0(x)",
                                                 "SELECT * FROM GENERATE_SERIES(?, ?) AS _t0(n)"]
    again = [n.normalize(t) for t in reversed(texts * 2)]
    assert {q.fingerprint for q in again} == {q.fingerprint for q in first}
