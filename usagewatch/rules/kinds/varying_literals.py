"""``varying_literals``: one group (by default one user and one query shape) runs the query many
times in a window, each time with a different value in the same place: the 136-company-IDs story.

The place is named by the column the value is compared with (``company_id``) where the normalizer
knows it, otherwise by its position (``value 2``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from usagewatch.model import FindingUpdate, NormalizedEvent
from usagewatch.rules.kinds.base import KeyWindow, WindowedKind, WindowParams, kinds


class VaryingParams(WindowParams):
    min_distinct: int | None = Field(default=None, ge=2, description="Defaults to min_runs.")

    @field_validator("group_by")
    @classmethod
    def _needs_fingerprint(cls, v: list[str]) -> list[str]:
        if "fingerprint" not in v:
            raise ValueError("varying_literals needs fingerprint in group_by (values are compared place by place)")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> VaryingParams:
        if self.min_distinct is None:
            self.min_distinct = self.min_runs
        if self.min_distinct > self.min_runs:
            raise ValueError("min_distinct cannot be larger than min_runs")
        return self


def value_names(ne: NormalizedEvent) -> dict[str, str | None]:
    """Slot values keyed by a readable name: the column, or "value N" when there is none."""
    out: dict[str, str | None] = {}
    for lit in ne.query.literals:
        name = lit.column or f"value {lit.slot + 1}"
        if name in out:
            name = f"{name} #{lit.slot + 1}"
        out[name] = lit.value
    return out


def suggest_in_list(normalized_sql: str, column: str, values: list[str]) -> str:
    """The normalized query with ``column = ?`` rewritten as ``column IN (v1, v2, ...)``.

    Works on the normalizer's canonical output (one spelling of ``=``), so a plain pattern suffices.
    """
    shown = ", ".join(v if re.fullmatch(r"-?\d+(\.\d+)?", v) else "'" + v.replace("'", "''") + "'" for v in values)
    pattern = re.compile(r"((?:\b[\w\"]+\.)?\"?\b" + re.escape(column) + r"\b\"?)\s*=\s*\?")
    rewritten, n = pattern.subn(lambda m: f"{m.group(1)} IN ({shown}, ...)", normalized_sql, count=1)
    return rewritten if n else normalized_sql


@kinds.register("varying_literals")
class VaryingLiterals(WindowedKind):
    Params = VaryingParams
    params: VaryingParams

    def values(self, ne: NormalizedEvent) -> dict[str, str | None]:
        return value_names(ne)

    def holds(self, w: KeyWindow) -> bool:
        if len(w) < self.params.min_runs:
            return False
        need = self.params.min_distinct or self.params.min_runs
        return w.max_distinct() >= need

    def progress(self, w: KeyWindow) -> dict[str, Any]:
        distinct = w.max_distinct()
        return {"runs": len(w), "min_runs": self.params.min_runs,
                "distinct": distinct, "min_distinct": self.params.min_distinct}

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        ep = w.episode
        assert ep is not None
        need = self.params.min_distinct or self.params.min_runs
        ranked = sorted(ep.values, key=lambda n: -ep.distinct(n))
        varying = [n for n in ranked if ep.distinct(n) >= need] or ranked[:1]
        update.varying = varying
        top = varying[0] if varying else None
        update.distinct_values = ep.distinct(top) if top else 0
        update.sample_values = ep.samples(top) if top else []
        suggestion = update.normalized_sql or ""
        if top and update.normalized_sql:
            suggestion = suggest_in_list(update.normalized_sql, top, update.sample_values)
        update.details["suggested_sql"] = suggestion
