"""Local tuning of rules without editing them: an overrides file (``rule_overrides:`` in the
config) whose entries are merged over the rules they name, before the rules are validated.

    overrides:
      - rule: same-query-*            # rule id, or a glob over ids
        filter: {allow: [svc_etl]}    # exclude_* and allow lists are ADDED to the rule's;
        params: {min_runs: 50}        # every other key (include lists too) replaces the rule's value
        severity: high
        cooldown: 3d
        enabled: false

So an admin keeps the stock library as shipped (and upgradable) and says what is local in one file.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from usagewatch.errors import ConfigError, Problem
from usagewatch.registry import did_you_mean
from usagewatch.validation import problems_from
from usagewatch.yamlload import Located, load_file


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str = Field(description="Rule id, or a glob over rule ids.")
    enabled: bool | None = None
    severity: str | None = None
    cooldown: str | int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    filter: dict[str, Any] = Field(default_factory=dict)
    title: str | None = None
    intervention: str | None = None
    howto: str | None = None


class OverridesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overrides: list[Override] = Field(default_factory=list)


class LoadedOverrides:
    """Every override entry of every file, with where it came from (for messages)."""

    def __init__(self) -> None:
        self.entries: list[tuple[Override, Located, int]] = []

    def apply(self, rule_id: str, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """``data`` (a rule's raw mapping) with every matching override merged in, and where the
        overrides came from ("path:line")."""
        merged = dict(data)
        used: list[str] = []
        for o, doc, i in self.entries:
            if not fnmatch.fnmatchcase(rule_id, o.rule):
                continue
            used.append(f"{doc.path}:{doc.where(('overrides', i))[0]}")
            for key in ("enabled", "severity", "cooldown", "title", "intervention", "howto"):
                value = getattr(o, key)
                if value is not None:
                    merged[key] = value
            if o.params:
                merged["params"] = {**(merged.get("params") or {}), **o.params}
            if o.filter:
                flt = dict(merged.get("filter") or {})
                for k, v in o.filter.items():
                    accumulates = k.startswith("exclude_") or k == "allow"  # exclusions add up
                    old = flt.get(k)
                    flt[k] = [*old, *v] if accumulates and isinstance(v, list) and isinstance(old, list) else v
                merged["filter"] = flt
        return merged, used

    def unmatched(self, rule_ids: list[str]) -> list[Problem]:
        """An override that names no rule is a typo until proven otherwise."""
        out = []
        for o, doc, i in self.entries:
            if not any(fnmatch.fnmatchcase(r, o.rule) for r in rule_ids):
                out.append(doc.problem(("overrides", i, "rule"), f'override for rule "{o.rule}" matches no rule.'
                                       + did_you_mean(o.rule, sorted(rule_ids))))
        return out


def load_overrides(paths: list[str]) -> tuple[LoadedOverrides, list[Problem]]:
    loaded, problems = LoadedOverrides(), []
    for p in paths:
        try:
            doc = load_file(Path(p))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        try:
            parsed = OverridesFile.model_validate(doc.data or {})
        except ValidationError as exc:
            problems.extend(problems_from(exc, doc, OverridesFile))
            continue
        loaded.entries.extend((o, doc, i) for i, o in enumerate(parsed.overrides))
    return loaded, problems
