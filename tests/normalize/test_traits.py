"""Shape traits, expression types, longest IN list and unfiltered tables: each trait on a positive and
a negative query, and a cache hit always says what a fresh parse says (also where a literal's value
decides a trait)."""

from __future__ import annotations

import pytest

from usagewatch.normalize import TRAITS, Normalizer

# (trait, dialect, sql that has it, sql that does not)
PAIRS = [
    ("select_star", "postgres", "SELECT * FROM t WHERE id = 1", "SELECT count(*) FROM t WHERE id = 1"),
    ("select_star", "postgres", "SELECT t.*, u.a FROM t JOIN u ON u.id = t.id WHERE t.x = 1",
     "SELECT a FROM t WHERE EXISTS (SELECT * FROM u WHERE u.id = t.id)"),
    ("select_star", "mysql", "SELECT a FROM t WHERE x = 1 UNION ALL SELECT * FROM u WHERE x = 2",
     "SELECT a FROM (SELECT * FROM t WHERE x = 1) s"),
    ("distinct_star", "postgres", "SELECT DISTINCT * FROM t WHERE a = 1", "SELECT DISTINCT a FROM t WHERE a = 1"),
    ("distinct_star", "postgres", "SELECT count(*) FROM (SELECT DISTINCT * FROM t WHERE a = 1) s",
     "SELECT DISTINCT ON (a) * FROM t WHERE a = 1"),
    ("no_where", "postgres", "SELECT a FROM t LIMIT 10", "SELECT a FROM t WHERE b = 1 LIMIT 10"),
    ("no_where", "postgres", "WITH x AS (SELECT a FROM t) SELECT a FROM x WHERE a = 1",
     "WITH x AS (SELECT a FROM t WHERE a > 1) SELECT a FROM x"),
    ("no_where", "postgres", "UPDATE accounts SET balance = 0", "UPDATE accounts SET balance = 0 WHERE id = 7"),
    ("no_where", "snowflake", "DELETE FROM events", "SELECT now(), 1"),
    ("cartesian_join", "postgres", "SELECT a.x FROM a, b WHERE a.k = 1", "SELECT a.x FROM a, b WHERE a.id = b.a_id"),
    ("cartesian_join", "postgres", "SELECT a.x FROM a CROSS JOIN b WHERE a.k = 1",
     "SELECT a.x FROM a JOIN b ON a.id = b.a_id"),
    ("cartesian_join", "mysql", "SELECT a.x FROM a JOIN b WHERE a.k = 1", "SELECT a.x FROM a NATURAL JOIN b WHERE a.k = 1"),
    ("cartesian_join", "postgres", "SELECT a.x FROM a, b, c WHERE a.id = b.a_id",
     "SELECT t.x FROM t, unnest(t.arr) AS u WHERE t.id = 1"),
    ("order_by_without_limit", "postgres", "SELECT a FROM t WHERE x = 1 ORDER BY a",
     "SELECT a FROM t WHERE x = 1 ORDER BY a LIMIT 10"),
    ("order_by_without_limit", "postgres", "SELECT a FROM t WHERE x = 1 UNION SELECT a FROM u WHERE x = 2 ORDER BY 1",
     "SELECT a, row_number() OVER (ORDER BY b) FROM t WHERE x = 1"),
    ("order_by_without_limit", "tsql", "SELECT a FROM t WHERE x = 1 ORDER BY a",
     "SELECT TOP 10 a FROM t WHERE x = 1 ORDER BY a"),
    ("order_by_without_limit", "postgres", "SELECT a FROM t WHERE x = 1 ORDER BY a OFFSET 5",
     "SELECT a FROM t WHERE x = 1 ORDER BY a FETCH FIRST 5 ROWS ONLY"),
    ("leading_wildcard_like", "postgres", "SELECT a FROM t WHERE name LIKE '%smith'",
     "SELECT a FROM t WHERE name LIKE 'smith%'"),
    ("leading_wildcard_like", "postgres", "SELECT a FROM t WHERE name ILIKE '_mith'", "SELECT a FROM t WHERE name LIKE $1"),
    ("leading_wildcard_like", "postgres", "SELECT a FROM t WHERE name LIKE '%' || $1 || '%'",
     "SELECT a FROM t WHERE name LIKE $1 || '%'"),
    ("leading_wildcard_like", "mysql", "SELECT a FROM t WHERE name LIKE CONCAT('%', ?)", "SELECT a FROM t WHERE name LIKE 'a%'"),
    ("function_on_filtered_column", "postgres", "SELECT a FROM t WHERE date(created_at) = '2024-01-01'",
     "SELECT a FROM t WHERE created_at >= '2024-01-01' AND created_at < '2024-01-02'"),
    ("function_on_filtered_column", "postgres", "SELECT a FROM t WHERE lower(email) = 'a@b.c'",
     "SELECT lower(email) FROM t WHERE email = 'a@b.c'"),
    ("function_on_filtered_column", "postgres", "SELECT a FROM t WHERE extract(year FROM ts) = 2024",
     "SELECT a FROM t WHERE ts >= date_trunc('year', now())"),
    ("function_on_filtered_column", "postgres", "SELECT a FROM t WHERE created_at::date = '2024-01-01'",
     "SELECT a FROM t WHERE created_at = '2024-01-01'::timestamp"),
    ("function_on_filtered_column", "postgres", "SELECT a FROM t JOIN u ON lower(u.email) = t.email WHERE t.x = 1",
     "SELECT a FROM t JOIN u ON u.email = t.email WHERE t.x + 1 = 2"),
    ("function_on_filtered_column", "mysql", "SELECT a FROM t WHERE DATE(created_at) = '2024-01-01'",
     "SELECT a FROM t GROUP BY a HAVING max(x) > 3"),
    ("not_in_subquery", "postgres", "SELECT a FROM t WHERE x NOT IN (SELECT y FROM u WHERE z = 1)",
     "SELECT a FROM t WHERE x IN (SELECT y FROM u WHERE z = 1)"),
    ("not_in_subquery", "mysql", "SELECT a FROM t WHERE NOT (x IN (SELECT y FROM u))", "SELECT a FROM t WHERE x NOT IN (1, 2, 3)"),
    ("union_not_all", "postgres", "SELECT a FROM t WHERE x = 1 UNION SELECT a FROM u WHERE x = 2",
     "SELECT a FROM t WHERE x = 1 UNION ALL SELECT a FROM u WHERE x = 2"),
    ("union_not_all", "bigquery", "SELECT a FROM t WHERE x = 1 UNION DISTINCT SELECT a FROM u WHERE x = 2",
     "SELECT a FROM t WHERE x = 1 INTERSECT DISTINCT SELECT a FROM u WHERE x = 2"),
    ("unbounded_date_range", "postgres", "SELECT a FROM t WHERE created_at >= '2024-01-01'",
     "SELECT a FROM t WHERE created_at >= '2024-01-01' AND created_at < '2024-02-01'"),
    ("unbounded_date_range", "postgres", "SELECT a FROM t WHERE x > now() - INTERVAL '7 days'",
     "SELECT a FROM t WHERE x BETWEEN now() - INTERVAL '7 days' AND now()"),
    ("unbounded_date_range", "postgres", "SELECT a FROM t WHERE shipped > '2024-01-01'", "SELECT a FROM t WHERE amount > 100"),
    ("unbounded_date_range", "postgres", "SELECT a FROM t WHERE k > DATE '2024-01-01'", "SELECT a FROM t WHERE name > 'abc'"),
    ("unbounded_date_range", "snowflake", "SELECT a FROM t WHERE event_ts >= dateadd(day, -7, current_timestamp())",
     "SELECT a FROM t WHERE o.created_at > c.created_at"),
    ("unbounded_date_range", "mysql", "SELECT a FROM t WHERE '2024-01-01' < updated_at",
     "SELECT a FROM t WHERE updated_at > '2024-01-01' AND updated_at <= '2024-03-01'"),
]


@pytest.mark.parametrize(("trait", "dialect", "yes", "no"), PAIRS, ids=[f"{p[0]}-{p[1]}-{i}" for i, p in enumerate(PAIRS)])
def test_trait_positive_and_negative(trait: str, dialect: str, yes: str, no: str) -> None:
    n = Normalizer(dialect)
    q_yes, q_no = n.normalize(yes), n.normalize(no)
    assert q_yes.parsed and q_no.parsed
    assert trait in q_yes.traits, (yes, q_yes.traits)
    assert trait not in q_no.traits, (no, q_no.traits)


def test_every_trait_is_documented_and_tested() -> None:
    assert {p[0] for p in PAIRS} == set(TRAITS)


def test_unfiltered_tables_name_the_tables_read_without_where() -> None:
    n = Normalizer("postgres")
    q = n.normalize('SELECT * FROM Sales.Orders o JOIN "Customers" c ON c.id = o.customer_id')
    assert q.unfiltered_tables == ("customers", "sales.orders")
    q = n.normalize("WITH recent AS (SELECT * FROM events) SELECT * FROM recent, big.facts f WHERE f.id = 1")
    assert q.unfiltered_tables == ("events",)
    assert n.normalize("SELECT * FROM t WHERE id = 1").unfiltered_tables == ()
    q = n.normalize("SELECT * FROM t WHERE x IN (SELECT y FROM u)")
    assert "no_where" in q.traits and q.unfiltered_tables == ("u",)


def test_expressions_are_lower_case_type_names() -> None:
    q = Normalizer("postgres").normalize(
        "WITH c AS (SELECT a, row_number() OVER (ORDER BY b) AS r FROM t WHERE x IN (1, 2) AND n LIKE 'a%') "
        "SELECT my_udf(a) FROM c JOIN u ON u.a = c.a WHERE r = (SELECT max(r) FROM c)")
    assert {"select", "join", "window", "subquery", "cte", "in", "like", "anonymous", "literal", "column"} <= q.expressions
    assert all(e == e.lower() for e in q.expressions)
    assert "neg" not in Normalizer("postgres").normalize("SELECT a FROM t WHERE x = -5").expressions  # -5 is one literal


def test_unparsed_sql_has_no_traits() -> None:
    q = Normalizer("postgres").normalize("FROBNICATE * FROM t WHERE name LIKE '%x'")
    assert not q.parsed
    assert q.traits == frozenset() and q.expressions == frozenset() and q.in_list_max == 0 and q.unfiltered_tables == ()


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_in_list_max_follows_the_list_through_the_cache(dialect: str) -> None:
    n = Normalizer(dialect)
    sql = "SELECT * FROM t WHERE kind = 'a' AND id IN ({})"
    three = n.normalize(sql.format(", ".join(str(i) for i in range(3))))
    many = n.normalize(sql.format(", ".join(str(i) for i in range(300))))
    again = n.normalize(sql.format("7, 8, 9"))
    assert (three.in_list_max, many.in_list_max, again.in_list_max) == (3, 300, 3)
    assert n.stats.misses == 1 and n.stats.hits == 2
    assert three.fingerprint == many.fingerprint


def test_in_list_max_counts_the_longest_list_and_mixed_and_bound_lists() -> None:
    n = Normalizer("postgres")
    assert n.normalize("SELECT 1 FROM t WHERE a IN (1, 2) AND b IN (1, 2, 3, 4)").in_list_max == 4
    assert n.normalize("SELECT 1 FROM t WHERE a IN (1, 2, x)").in_list_max == 3
    assert n.normalize("SELECT 1 FROM t WHERE a IN ($1, $2)", ["1", "2"]).in_list_max == 2
    assert n.normalize("SELECT 1 FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)").in_list_max == 0
    assert n.normalize("SELECT 1 FROM t WHERE a = ANY(ARRAY[1, 2, 3])").in_list_max == 0
    assert n.normalize("INSERT INTO t (a) VALUES (1), (2), (3)").in_list_max == 0


# Shapes whose literal values decide a trait: a hit must re-decide it from the new values.
VALUE_DEPENDENT = [
    ("SELECT a FROM t WHERE name LIKE {}", ["'%x'", "'x%'", "'_y'", "'y'", "''"], "leading_wildcard_like"),
    ("SELECT a FROM t WHERE name LIKE {} || $1", ["'%'", "'a'"], "leading_wildcard_like"),
    ("SELECT a FROM t WHERE k > {} AND z = 1", ["'2024-01-01'", "'abc'", "'2024-02-03 10:00'", "'12'"], "unbounded_date_range"),
]


@pytest.mark.parametrize(("template", "values", "trait"), VALUE_DEPENDENT)
@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_cache_hit_redecides_value_dependent_traits(template: str, values: list[str], trait: str, dialect: str) -> None:
    cached = Normalizer(dialect)
    for _ in range(2):
        for v in values:
            sql = template.format(v)
            fresh = Normalizer(dialect, cache_size=0).normalize(sql, ["p"])
            assert cached.normalize(sql, ["p"]) == fresh, sql
            assert (trait in fresh.traits) == (v[1:2] in ("%", "_") if "LIKE" in template else v[1:5].isdigit())
    assert cached.stats.hits >= len(values)


@pytest.mark.parametrize(("trait", "dialect", "yes", "no"), PAIRS, ids=[f"{p[0]}-{p[1]}-{i}" for i, p in enumerate(PAIRS)])
def test_cache_hit_gives_the_traits_of_a_fresh_parse(trait: str, dialect: str, yes: str, no: str) -> None:
    cached = Normalizer(dialect)
    for sql in (yes, no):
        first = cached.normalize(sql)
        hits = cached.stats.hits
        second = cached.normalize(sql)
        assert second == first == Normalizer(dialect, cache_size=0).normalize(sql)
        assert cached.stats.hits == hits + 1, sql  # the second run was answered by the cache


# Clients that bind values (JDBC, DBeaver, psycopg) send the LIKE pattern or the date as a parameter:
# each execution's bound value decides the trait, through the cache as for an inline literal.
BOUND = [
    ("postgres", "SELECT id FROM page_views WHERE page_url LIKE $1", "leading_wildcard_like", ["%cart%", "cart%", "_x", "", None]),
    ("mysql", "SELECT id FROM page_views WHERE page_url LIKE ?", "leading_wildcard_like", ["%cart%", "cart%"]),
    ("postgres", "SELECT a FROM t WHERE k > $1 AND z = 1", "unbounded_date_range", ["2024-01-01", "abc", "2024-02-03 10:00"]),
]


@pytest.mark.parametrize(("dialect", "sql", "trait", "values"), BOUND)
def test_a_bound_parameter_value_decides_its_trait(dialect: str, sql: str, trait: str, values: list[str | None]) -> None:
    cached = Normalizer(dialect)
    for _ in range(2):
        for v in values:
            got = cached.normalize(sql, [v])
            assert got == Normalizer(dialect, cache_size=0).normalize(sql, [v])
            expected = bool(v) and (v[0] in "%_" if trait == "leading_wildcard_like" else v[:4].isdigit())
            assert (trait in got.traits) == expected, (sql, v)
    assert cached.stats.hits >= len(values)
