"""The shape cache: a hit gives exactly what a fresh parse gives, a repeated shape is parsed once,
and shapes where the cheap scan and the parser could disagree are never answered wrongly."""

from __future__ import annotations

import random

import pytest

from usagewatch.normalize import Normalizer

TEMPLATES = [
    "SELECT * FROM orders o WHERE o.company_id = {n} AND status = {s}",
    "select  count(*) from orders where company_id in ({lst}) -- daily {n}",
    "SELECT a, b FROM t WHERE x BETWEEN {n} AND {n2} AND name LIKE {s} LIMIT {n}",
    "INSERT INTO t (a, b) VALUES {rows}",
    "UPDATE accounts SET balance = {n}, note = {s} WHERE id = {n2}",
    "SELECT * FROM t WHERE d > now() - INTERVAL {ivl} AND x = {n}",
    "SELECT date_trunc({unit}, ts), sum(x) FROM t WHERE y = {n} GROUP BY 1",
    "SELECT CAST(x AS VARCHAR({n})) FROM t WHERE z = {s}",
    "SELECT f({n}, {n2}) FROM t WHERE q IN ({lst})",
    "SELECT * FROM t WHERE a = {n} /* {s} */ AND b = {s}",
    "SELECT * FROM t WHERE id = $1 AND k IN ({lst}) AND v = {n}",
    'SELECT "Odd Col" FROM "My Table" WHERE "Odd Col" = {s}',
    "SELECT {n}.5 + x, 1e{n2} FROM t",
    "SELECT ((",  # unparseable, with no literals
    "SHOW {s}",
]


def _value(rng: random.Random, kind: str) -> str:
    if kind in ("n", "n2"):
        return str(rng.choice([0, 1, 7, 42, 136, -3, 10**12, 3.25]))
    if kind == "s":
        return "'" + rng.choice(["", "x", "it''s", "a,b", "ünï", "-- no", "/* no */", "?", "1 day"]) + "'"
    if kind == "lst":
        items = [str(rng.randint(-5, 500)) if rng.random() < 0.7 else "'v%d'" % rng.randint(0, 9) for _ in range(rng.randint(1, 6))]
        return ", ".join(items)
    if kind == "rows":
        return ", ".join(f"({rng.randint(-9, 99)}, '{rng.choice('xyz')}')" for _ in range(rng.randint(1, 4)))
    if kind == "ivl":
        return rng.choice(["'1 day'", "'2 days'", "'5'", "'3 hours'", "'7'"])
    if kind == "unit":
        return rng.choice(["'day'", "'month'", "'hour'"])
    raise AssertionError(kind)


def _render(rng: random.Random, template: str) -> str:
    keys = ["n", "n2", "s", "lst", "rows", "ivl", "unit"]
    return template.format(**{k: _value(rng, k) for k in keys})


def test_hit_equals_fresh_parse_over_many_values() -> None:
    rng = random.Random(136)
    cached = Normalizer("postgres", cache_size=1000)
    fresh = Normalizer("postgres", cache_size=0)
    for _ in range(40):
        for template in TEMPLATES:
            sql = _render(rng, template)
            params = [str(rng.randint(1, 9))]
            assert cached.normalize(sql, params) == fresh.normalize(sql, params), sql
    assert cached.stats.hits > 300  # the cache did answer most of them
    assert fresh.stats.hits == 0


def test_repeated_shape_is_parsed_once() -> None:
    n = Normalizer("postgres")
    for company_id in range(136):
        n.normalize(f"SELECT * FROM orders WHERE company_id = {company_id}")
    assert n.stats.misses == 1 and n.stats.hits == 135


def test_in_list_lengths_share_one_cache_entry() -> None:
    n = Normalizer("postgres")
    for k in range(1, 30):
        q = n.normalize("SELECT * FROM t WHERE id IN (" + ", ".join(str(i) for i in range(k)) + ")")
        assert q.literals[0].value == ",".join(str(i) for i in range(k))
    assert n.stats.misses == 1


def test_reinterpreted_literal_is_not_taken_from_cache() -> None:
    n = Normalizer("postgres")
    a = n.normalize("SELECT * FROM t WHERE d > INTERVAL '5'")
    b = n.normalize("SELECT * FROM t WHERE d > INTERVAL '5 days'")
    assert b == Normalizer("postgres", cache_size=0).normalize("SELECT * FROM t WHERE d > INTERVAL '5 days'")
    assert a.normalized_sql != b.normalized_sql


def test_group_that_is_not_an_in_list_keeps_its_arity() -> None:
    n = Normalizer("postgres")
    n.normalize("SELECT round(1, 2) FROM t")
    q = n.normalize("SELECT round(3) FROM t")
    assert q == Normalizer("postgres", cache_size=0).normalize("SELECT round(3) FROM t")


def test_text_the_scan_cannot_follow_is_parsed_every_time() -> None:
    n = Normalizer("postgres")
    for i in range(3):
        q = n.normalize(f"SELECT $$ -- {i} $$, 'a\\b' FROM t WHERE x = {i}")
        assert q.parsed
    assert n.stats.hits == 0 and n.stats.uncached == 3


def test_lru_is_bounded() -> None:
    n = Normalizer("postgres", cache_size=5)
    for i in range(20):
        n.normalize(f"SELECT c{i} FROM t WHERE x = 1")
    assert n.stats.cache_entries == 5
    n.normalize("SELECT c19 FROM t WHERE x = 2")
    assert n.stats.hits == 1
    n.normalize("SELECT c0 FROM t WHERE x = 2")
    assert n.stats.hits == 1


def test_zero_cache_size_disables_cache() -> None:
    n = Normalizer("postgres", cache_size=0)
    n.normalize("SELECT 1")
    n.normalize("SELECT 2")
    assert n.stats.hits == 0 and n.stats.cache_entries == 0


@pytest.mark.parametrize("dialect", ["mysql", "bigquery", "snowflake", "clickhouse", "trino", "redshift"])
def test_hit_equals_fresh_in_other_dialects(dialect: str) -> None:
    rng = random.Random(7)
    cached, fresh = Normalizer(dialect), Normalizer(dialect, cache_size=0)
    for _ in range(15):
        for template in TEMPLATES[:5] + TEMPLATES[8:10]:
            sql = _render(rng, template)
            assert cached.normalize(sql) == fresh.normalize(sql), sql


def test_hits_build_the_same_objects_as_the_model_classes() -> None:
    """A hit stores the fields through the slots directly (faster than the frozen dataclass __init__);
    that must give instances equal in every way to the classes' own, and is only done while the model
    is what it was written for (if this fails, usagewatch/model.py changed: update cache.py)."""
    import pickle

    from usagewatch.model import Literal, NormalizedQuery
    from usagewatch.normalize import cache

    assert cache.new_literal is cache._make_literal and cache.new_query is cache._make_query
    lit = cache._make_literal(2, "x", None)
    assert lit == Literal(2, "x", None) and hash(lit) == hash(Literal(2, "x", None))
    args = ("fp", "SELECT ?", "select", ("t",), (lit,), True, frozenset({"no_where"}), frozenset({"select"}), 3, ("t",))
    q = cache._make_query(*args)
    assert q == NormalizedQuery(*args) and hash(q) == hash(NormalizedQuery(*args)) and repr(q) == repr(NormalizedQuery(*args))
    assert pickle.loads(pickle.dumps(q)) == q
    with pytest.raises(AttributeError):
        q.kind = "insert"  # type: ignore[misc]


def test_texts_without_literals_are_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A prepared statement's text is the same at every execution: its scan is remembered (bounded)."""
    import usagewatch.normalize as normalize_mod

    n, fresh = Normalizer("postgres"), Normalizer("postgres", cache_size=0)
    sql = "SELECT *\n  FROM t WHERE id = $1 AND name LIKE $2"
    for i in range(20):
        params = [str(i), "%x" if i % 2 else "x%"]
        assert n.normalize(sql, params) == fresh.normalize(sql, params)
    n.normalize("SELECT * FROM t WHERE id = 5")  # has a literal: not remembered
    assert list(n._plain_texts) == [sql] and n.stats.hits == 19
    monkeypatch.setattr(normalize_mod, "_PLAIN_TEXTS", 3)
    for i in range(7):
        n.normalize(f"SELECT c{i} FROM t WHERE id = $1", ["1"])
    assert len(n._plain_texts) <= 3


def test_a_text_holding_the_cache_keys_value_marks_is_never_served_from_the_cache():
    """The cache key replaces values with the control characters \\x01-\\x03; a text that holds
    them itself could share a key with another text, so it is always parsed on its own."""
    from usagewatch.normalize import Normalizer

    n = Normalizer(dialect="postgres")
    n.normalize("SELECT a FROM t WHERE b = 5")
    for odd in ("SELECT a FROM t WHERE b = \x01", "SELECT a FROM t WHERE b = '\x02'", "SELECT a FROM t WHERE b IN \x03"):
        hits = n.stats.hits
        got = [n.normalize(odd), n.normalize(odd)]  # the second time too: nothing was cached for it
        assert n.stats.hits == hits
        assert got == [Normalizer(dialect="postgres").normalize(odd)] * 2
