"""Literals: one per slot, with the column they are compared with; bind parameters; kind; tables."""

from __future__ import annotations

import pytest

from usagewatch.model import Literal
from usagewatch.normalize import Normalizer


@pytest.fixture
def n() -> Normalizer:
    return Normalizer("postgres")


def cols(q) -> dict[str, str | None]:
    return {lit.column: lit.value for lit in q.literals}


def test_equality_either_side(n: Normalizer) -> None:
    assert cols(n.normalize("SELECT * FROM o WHERE company_id = 42")) == {"company_id": "42"}
    assert cols(n.normalize("SELECT * FROM o WHERE 42 = company_id")) == {"company_id": "42"}


def test_in_list_is_one_slot_in_written_order(n: Normalizer) -> None:
    q = n.normalize("SELECT * FROM orders o WHERE o.company_id IN (3, 1, 2)")
    assert q.literals == (Literal(0, "3,1,2", "company_id"),)


def test_between_like_negative_and_strings(n: Normalizer) -> None:
    q = n.normalize("SELECT * FROM t WHERE d BETWEEN 1 AND 9 AND name LIKE 'ac%' AND x < -3 AND s = 'it''s'")
    assert [(lit.column, lit.value) for lit in q.literals] == [
        ("d", "1"), ("d", "9"), ("name", "ac%"), ("x", "-3"), ("s", "it's"),
    ]


def test_insert_values_and_update_set(n: Normalizer) -> None:
    q = n.normalize("INSERT INTO t (a, b) VALUES (1, 'x')")
    assert cols(q) == {"a": "1", "b": "x"}
    q = n.normalize("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')")
    assert cols(q) == {"a": "1,2", "b": "x,y"}
    q = n.normalize("UPDATE t SET a = 1, b = 'z' WHERE id = 7")
    assert cols(q) == {"a": "1", "b": "z", "id": "7"}
    q = n.normalize("INSERT INTO t (a, b) VALUES (1, now())")
    assert cols(q) == {"a": "1"}


def test_no_column_is_none(n: Normalizer) -> None:
    q = n.normalize("SELECT 1, coalesce(x, 5) FROM t")
    assert [lit.column for lit in q.literals] == [None, None]


def test_slots_follow_text_order_and_align_between_runs(n: Normalizer) -> None:
    a = n.normalize("SELECT * FROM t WHERE a = 1 AND b IN (2, 3) AND c = 'x' LIMIT 10")
    b = n.normalize("SELECT * FROM t WHERE a = 5 AND b IN (6) AND c = 'y' LIMIT 20")
    assert [lit.slot for lit in a.literals] == [0, 1, 2, 3]
    assert [lit.column for lit in a.literals] == [lit.column for lit in b.literals] == ["a", "b", "c", None]
    assert [lit.value for lit in b.literals] == ["5", "6", "y", "20"]


def test_dollar_params_take_values_and_columns(n: Normalizer) -> None:
    q = n.normalize("SELECT * FROM orders WHERE company_id = $2 AND status = $1", ["open", "178"])
    assert cols(q) == {"company_id": "178", "status": "open"}
    q = n.normalize("SELECT * FROM orders WHERE company_id IN ($1, $2)", ["5", None])
    assert q.literals == (Literal(0, "5,NULL", "company_id"),)
    q = n.normalize("SELECT * FROM orders WHERE company_id = $1", [None])
    assert q.literals == (Literal(0, None, "company_id"),)
    q = n.normalize("SELECT * FROM orders WHERE company_id = $3", ["1"])  # missing bind value
    assert q.literals == (Literal(0, None, "company_id"),)


def test_bound_and_inline_runs_group_together(n: Normalizer) -> None:
    a = n.normalize("SELECT * FROM orders WHERE company_id = $1", ["1"])
    b = n.normalize("SELECT * FROM orders WHERE company_id = 2")
    assert a.fingerprint == b.fingerprint
    assert a.literals[0].column == b.literals[0].column == "company_id"


def test_positional_placeholders() -> None:
    q = Normalizer("postgres").normalize("SELECT * FROM t WHERE a = %s AND b = %s", ["1", "2"])
    assert cols(q) == {"a": "1", "b": "2"}
    q = Normalizer("trino").normalize("SELECT * FROM t WHERE a = ? AND b = ?", ["1", "2"])
    assert cols(q) == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    "sql,kind",
    [
        ("SELECT 1", "select"), ("WITH c AS (SELECT 1) SELECT * FROM c", "select"),
        ("SELECT 1 UNION SELECT 2", "select"), ("INSERT INTO t VALUES (1)", "insert"),
        ("UPDATE t SET a = 1", "update"), ("DELETE FROM t WHERE a = 1", "delete"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", "merge"),
        ("CREATE TABLE t (a INT)", "create"), ("DROP TABLE t", "drop"),
        ("ALTER TABLE t ADD COLUMN c INT", "alter"), ("SET search_path = x", "set"),
        ("BEGIN", "transaction"), ("COMMIT", "transaction"), ("ROLLBACK", "transaction"),
        ("SHOW search_path", "show"), ("VACUUM t", "other"),
    ],
)
def test_kind(n: Normalizer, sql: str, kind: str) -> None:
    assert n.normalize(sql).kind == kind


def test_tables_qualified_lowercased_sorted_without_ctes(n: Normalizer) -> None:
    q = n.normalize(
        "WITH recent AS (SELECT * FROM Sales.Orders) "
        "SELECT * FROM recent JOIN public.Customers c ON c.id = recent.cid JOIN zeta z ON z.id = c.id"
    )
    assert q.tables == ("public.customers", "sales.orders", "zeta")
