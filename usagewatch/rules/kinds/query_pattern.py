"""``query_pattern``: a query whose SHAPE is a known anti-pattern (SELECT * on a big table, a join
without a condition, a function on a filtered column, ...). The shape is described by named traits
that the normalizer computes from the sqlglot tree; one user doing it 50 times is one finding."""

from __future__ import annotations

import fnmatch
import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from usagewatch.durations import Duration
from usagewatch.model import FindingUpdate, NormalizedQuery
from usagewatch.registry import did_you_mean
from usagewatch.rules.kinds.base import KeyWindow, WindowedKind, WindowParams, kinds

#: traits the normalizer computes, plus ``large_in_list`` which this kind derives per rule
TRAITS = ("select_star", "no_where", "cartesian_join", "order_by_without_limit", "leading_wildcard_like",
          "function_on_filtered_column", "not_in_subquery", "large_in_list", "distinct_star", "union_not_all",
          "unbounded_date_range")


def _known(names: list[str]) -> list[str]:
    for name in names:
        if name not in TRAITS:
            raise ValueError(f'unknown trait "{name}".' + did_you_mean(name, list(TRAITS)))
    return names


class PatternParams(WindowParams):
    traits: list[str] = Field(default_factory=list, description="All of these traits must hold.")
    any_traits: list[str] = Field(default_factory=list, description="At least one of these must hold.")
    expressions: list[str] = Field(default_factory=list,
                                   description="sqlglot expression types that must all be present (join, window, ...).")
    large_tables: list[str] = Field(default_factory=list,
                                    description="no_where only counts for these tables (globs); empty = any table.")
    in_list_min: int = Field(default=100, ge=1, description="large_in_list: at least this many IN (...) values.")
    window: Duration = timedelta(days=1)
    min_runs: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _something(self) -> PatternParams:
        if not (self.traits or self.any_traits or self.expressions):
            raise ValueError("a query_pattern rule needs traits, any_traits or expressions")
        return self

    @field_validator("traits", "any_traits")
    @classmethod
    def _traits(cls, v: list[str]) -> list[str]:
        return _known(v)

    @field_validator("expressions")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [e.lower() for e in v]


@kinds.register("query_pattern")
class QueryPattern(WindowedKind):
    Params = PatternParams
    params: PatternParams

    def __init__(self, spec, params):  # type: ignore[no-untyped-def]
        super().__init__(spec, params)
        self._large = re.compile("|".join(fnmatch.translate(p) for p in params.large_tables)) \
            if params.large_tables else None

    def _traits(self, q: NormalizedQuery) -> set[str]:
        """The query's traits as this rule sees them (large_in_list and no_where are per rule)."""
        traits = set(q.traits)
        if q.in_list_max >= self.params.in_list_min:
            traits.add("large_in_list")
        if "no_where" in traits and self._large is not None \
                and not any(self._large.match(t) for t in q.unfiltered_tables):
            traits.discard("no_where")
        return traits

    def shape_matches(self, q: NormalizedQuery) -> bool:
        """Everything this kind checks is a property of the shape (and the IN-list length), so it
        has no per-event ``matches``: the engine only lets events of a matching shape through."""
        p = self.params
        traits = self._traits(q)
        if p.traits and not traits.issuperset(p.traits):
            return False
        if p.any_traits and traits.isdisjoint(p.any_traits):
            return False
        return not p.expressions or q.expressions.issuperset(p.expressions)

    def holds(self, w: KeyWindow) -> bool:
        return len(w) >= self.params.min_runs

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        update.distinct_values = 1
        p = self.params
        update.details["traits"] = sorted(set(p.traits) | set(p.any_traits))
        update.details["suggested_sql"] = update.normalized_sql or ""
