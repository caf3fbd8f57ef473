"""Loads rule files (YAML) into ready-to-run rules, collecting EVERY problem before reporting.

A rule file holds one rule (a mapping) or several (``rules: [...]``). Kinds are looked up in the
registry (with "Did you mean ...?"), their ``params`` validated by the kind's own model, and the
title/intervention Jinja2 templates compiled and checked for unknown variables at load time, so a
typo in a template is a load error rather than a broken email at 3 a.m.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import jinja2
import jinja2.meta
import jinja2.sandbox
from pydantic import ValidationError

from usagewatch.durations import format_duration
from usagewatch.errors import ConfigError, Problem
from usagewatch.model import FindingUpdate
from usagewatch.registry import did_you_mean
from usagewatch.rules.filters import CompiledFilter
from usagewatch.rules.kinds import RuleKind, kinds
from usagewatch.rules.overrides import LoadedOverrides, load_overrides
from usagewatch.rules.schema import RuleSpec
from usagewatch.validation import problems_from
from usagewatch.yamlload import Located, load_file

#: variables a rule's title and intervention templates may use
TEMPLATE_VARS = frozenset({
    "rule", "user", "database", "count", "distinct_values", "varying", "column", "sample_values",
    "first_seen", "last_seen", "fingerprint", "normalized_sql", "sample_sql", "suggested_sql",
    "tables", "window", "severity", "traits", "details",
})

_ENV = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                           keep_trailing_newline=False)


@dataclass
class Rule:
    spec: RuleSpec
    kind: RuleKind
    accepts: CompiledFilter
    title: jinja2.Template
    intervention: jinja2.Template
    source: str

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def logic(self) -> str:
        """A digest of what decides matching (kind, params, filter): a rule whose logic changed
        starts with empty windows; a change of wording, severity or cooldown keeps them."""
        blob = json.dumps({"kind": self.spec.kind, "params": self.kind.params.model_dump(mode="json"),
                           "filter": self.spec.filter.model_dump(mode="json")}, sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()

    def render(self, update: FindingUpdate) -> None:
        """Fill the update's title, intervention and how-to link from the rule's templates."""
        window = getattr(self.kind.params, "window", None)
        ctx: dict[str, Any] = {
            "rule": self.spec.id, "user": update.user, "database": update.database,
            "count": update.count, "distinct_values": update.distinct_values, "varying": update.varying,
            "column": update.varying[0] if update.varying else None, "sample_values": update.sample_values,
            "first_seen": update.first_seen, "last_seen": update.last_seen,
            "fingerprint": update.fingerprint, "normalized_sql": update.normalized_sql,
            "sample_sql": update.sample_sql, "suggested_sql": update.details.get("suggested_sql", ""),
            "tables": update.details.get("tables", []), "severity": update.severity,
            "window": _fmt_window(window), "traits": update.details.get("traits", []),
            "details": update.details,
        }
        update.title = " ".join(self.title.render(ctx).split())
        update.intervention = self.intervention.render(ctx).strip()
        update.howto = self.spec.howto
        update.cooldown = self.spec.cooldown.total_seconds()


def _fmt_window(window: Any) -> str:
    return format_duration(window) if window is not None else ""


def _rule_files(paths: list[str]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, None, "rule file or directory does not exist."))
    return files, problems


def _compile(doc: Located, loc: tuple[Any, ...], field: str, text: str, problems: list[Problem]) -> jinja2.Template | None:
    try:
        ast = _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        line, _ = doc.where(loc + (field,))
        problems.append(Problem(doc.path, (line or 1) + exc.lineno - 1, None,
                                f"{field}: template syntax error: {exc.message}"))
        return None
    unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - TEMPLATE_VARS)
    if unknown:
        problems.append(doc.problem(loc + (field,), f'{field}: unknown template variable "{unknown[0]}".'
                                    + did_you_mean(unknown[0], sorted(TEMPLATE_VARS))))
        return None
    return _ENV.from_string(text)


def _build(doc: Located, data: Any, loc: tuple[Any, ...], problems: list[Problem],
           overrides: LoadedOverrides) -> Rule | None:
    if not isinstance(data, dict):
        problems.append(doc.problem(loc, "a rule must be a mapping with id, kind, params, title, ..."))
        return None
    data, used = overrides.apply(str(data.get("id", "")), data)
    before = len(problems)
    try:
        spec = RuleSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, doc, RuleSpec, loc))
        spec = None
    if spec is None:
        _blame(problems, before, used)
        return None
    params = kind_cls = None
    try:
        kind_cls = kinds.get(spec.kind)
        params = kind_cls.Params.model_validate(spec.params)
    except KeyError as exc:
        problems.append(doc.problem(loc + ("kind",), str(exc.args[0])))
    except ValidationError as exc:
        problems.extend(problems_from(exc, doc, kind_cls.Params, loc + ("params",)))  # type: ignore[union-attr]
    # templates are checked even when params are wrong: report every problem in one go
    title = _compile(doc, loc, "title", spec.title, problems)
    intervention = _compile(doc, loc, "intervention", spec.intervention, problems)
    _blame(problems, before, used)
    if kind_cls is None or params is None or title is None or intervention is None:
        return None
    id_line = doc.where(loc + ("id",))[0] or 1
    return Rule(spec, kind_cls(spec, params), CompiledFilter(spec.filter), title, intervention, f"{doc.path}:{id_line}")


def _blame(problems: list[Problem], since: int, used: list[str]) -> None:
    """Problems in a rule that overrides changed may be the overrides' doing: say which."""
    if used:
        for i in range(since, len(problems)):
            p = problems[i]
            problems[i] = Problem(p.path, p.line, p.col, f"{p.message} (with overrides from {', '.join(used)})")


def load_rules(paths: list[str], overrides: list[str] | None = None) -> list[Rule]:
    """Every enabled rule in ``paths`` (files or directories), with the overrides files merged in.
    Raises ConfigError listing all problems."""
    files, problems = _rule_files(paths)
    loaded, override_problems = load_overrides(overrides or [])
    problems.extend(override_problems)
    all_ids: list[str] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for f in files:
        try:
            doc = load_file(f)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        data = doc.data
        if isinstance(data, dict) and set(data) == {"rules"} and isinstance(data["rules"], list):
            items = [(item, ("rules", i)) for i, item in enumerate(data["rules"])]
        else:
            items = [(data, cast(tuple[Any, ...], ()))]
        for item, loc in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                all_ids.append(item["id"])
            rule = _build(doc, item, loc, problems, loaded)
            if rule is None:
                continue
            if rule.id in seen:
                problems.append(doc.problem(loc + ("id",), f'rule id "{rule.id}" is already defined at {seen[rule.id]}.'))
                continue
            seen[rule.id] = rule.source
            if rule.spec.enabled:
                rules.append(rule)
    problems.extend(loaded.unmatched(all_ids))
    if problems:
        raise ConfigError(problems)
    return rules
