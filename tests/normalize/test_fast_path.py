"""Edge cases of the cache-hit fast path (scan regex, IN lists and VALUES rows taken whole, bind
values, the per-kind slot recipes), against outputs recorded from the implementation before it.

``tests/data/normalize/fast_path.json`` holds, per dialect, a sequence of (sql, params) run through
ONE cached Normalizer in order - so most shapes come back as cache hits with other values: IN lists
of mixed literal types and lengths, negative numbers, strings holding commas, parentheses and quotes,
NULL inside a list, nested parentheses, multi-row VALUES, bind values, comments, quoted identifiers,
text the parser refuses - with each result and the final counters as that implementation gave them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from usagewatch.model import NormalizedQuery
from usagewatch.normalize import Normalizer

DATA = json.loads((Path(__file__).resolve().parents[1] / "data" / "normalize" / "fast_path.json").read_text("utf-8"))


def _dump(q: NormalizedQuery) -> dict[str, Any]:
    return {"fingerprint": q.fingerprint, "normalized_sql": q.normalized_sql, "kind": q.kind,
            "tables": list(q.tables), "literals": [[lit.slot, lit.value, lit.column] for lit in q.literals],
            "parsed": q.parsed, "traits": sorted(q.traits), "expressions": sorted(q.expressions),
            "in_list_max": q.in_list_max, "unfiltered_tables": list(q.unfiltered_tables)}


@pytest.mark.parametrize("dialect", sorted(DATA))
def test_cached_sequence_gives_the_recorded_outputs(dialect: str) -> None:
    n = Normalizer(dialect)
    for run in DATA[dialect]["runs"]:
        assert _dump(n.normalize(run["sql"], run["params"])) == run["expected"], run["sql"]
    s = n.stats
    assert {"hits": s.hits, "misses": s.misses, "uncached": s.uncached, "unparsed": s.unparsed,
            "parse_errors": s.parse_errors} == DATA[dialect]["stats"]


@pytest.mark.parametrize("dialect", sorted(DATA))
def test_each_hit_equals_a_fresh_parse(dialect: str) -> None:
    cached, fresh = Normalizer(dialect), Normalizer(dialect, cache_size=0)
    for run in DATA[dialect]["runs"]:
        assert cached.normalize(run["sql"], run["params"]) == fresh.normalize(run["sql"], run["params"]), run["sql"]
    assert cached.stats.hits >= 3


def test_in_list_values_are_joined_as_written() -> None:
    n = Normalizer("postgres")
    n.normalize("SELECT * FROM t WHERE id IN (0)")
    q = n.normalize("SELECT * FROM t WHERE id IN (1, -2, 'a,b', 'it''s', '(x)', 2.5e1)")
    assert n.stats.hits == 1
    assert [(lit.value, lit.column) for lit in q.literals] == [("1,-2,a,b,it's,(x),2.5e1", "id")]
    assert q.in_list_max == 6
    with_null = n.normalize("SELECT * FROM t WHERE id IN (1, NULL)")  # NULL is structure: not the same shape
    assert with_null.normalized_sql != q.normalized_sql or with_null.literals != q.literals
    assert with_null == Normalizer("postgres", cache_size=0).normalize("SELECT * FROM t WHERE id IN (1, NULL)")
