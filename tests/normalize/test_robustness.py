"""Unparseable and garbage input: a token fingerprint, parsed=False, counted, never an exception."""

from __future__ import annotations

import pytest

from usagewatch.normalize import Normalizer

GARBAGE = [
    "", "   ", "-- only a comment", "/* unterminated", "'unterminated string", "SELECT ((((",
    ")))", ";;;", "\x00\x01\x02", "SELECT * FROM t WHERE x = 'a", "ünïcödé ☃ 🎉", "$1 $2 $$",
    "SELECT " + "(" * 3000 + "1" + ")" * 3000, "SELECT 1 FROM t WHERE a = \\", '"', "`", "/*+ hint */",
    "SELECT * FROM t WHERE x IN (1, 2,", "0x" * 500, "SELECT 1e", "\ud800",
]


@pytest.mark.parametrize("sql", GARBAGE)
@pytest.mark.parametrize("dialect", ["postgres", "mysql", "bigquery"])
def test_never_raises(sql: str, dialect: str) -> None:
    n = Normalizer(dialect)
    for _ in range(2):  # once fresh, once from the cache
        q = n.normalize(sql, ["x"])
        assert isinstance(q.fingerprint, str) and q.fingerprint
        assert isinstance(q.kind, str)


def test_unparseable_sql_gets_token_fingerprint() -> None:
    n = Normalizer("postgres")
    a = n.normalize("FROBNICATE  widgets WHERE id = 1 -- x")
    b = n.normalize("frobnicate widgets where id = 2")
    c = n.normalize("FROBNICATE gadgets WHERE id = 1")
    assert not a.parsed and not b.parsed
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert [lit.value for lit in a.literals] == ["1"] and a.literals[0].column is None
    assert n.stats.unparsed == 3 and n.stats.parse_errors >= 2


def test_command_fallback_counts_as_unparsed() -> None:
    n = Normalizer("postgres")
    q = n.normalize("SHOW search_path")
    assert not q.parsed and q.kind == "show"


def test_unparsed_in_lists_still_group() -> None:
    n = Normalizer("postgres")
    a = n.normalize("FROBNICATE t WHERE id IN (1, 2, 3)")
    b = n.normalize("FROBNICATE t WHERE id IN (4)")
    assert a.fingerprint == b.fingerprint and a.literals[0].value == "1,2,3"


def test_empty_sql() -> None:
    q = Normalizer("postgres").normalize("")
    assert not q.parsed and q.literals == () and q.tables == ()


def test_unknown_dialect_suggests() -> None:
    with pytest.raises(ValueError, match='Did you mean "postgres"'):
        Normalizer("postgress")
    with pytest.raises(ValueError):
        Normalizer("no-such-thing")


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "snowflake", "bigquery", "redshift", "trino", "clickhouse"])
def test_known_dialects_accepted(dialect: str) -> None:
    assert Normalizer(dialect).normalize("SELECT 1").parsed
