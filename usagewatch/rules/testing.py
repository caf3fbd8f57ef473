"""Tooling for rule authors: YAML unit tests for rules (like ``promtool test rules``) and the JSON
Schema of rule files for editors.

A test file names rule files and lists cases; each case is a timeline of events (or a log file) and
the findings expected from it. The format is documented in ``docs/rule-testing.md``; every problem
in a test file is reported as ``path:line:col: message``, like ``usagewatch check`` does for rules.
Cases run through ``usagewatch.dryrun`` (so, unlike the engine, this module sits above the rules
stage, next to that second composition root): nothing is stored and nothing is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from usagewatch import dryrun
from usagewatch.config import Config
from usagewatch.durations import Duration, parse_duration
from usagewatch.errors import ConfigError, Problem
from usagewatch.model import FindingUpdate, QueryEvent
from usagewatch.registry import did_you_mean
from usagewatch.rules.loader import Rule, load_rules
from usagewatch.sources.formats import formats
from usagewatch.validation import problems_from
from usagewatch.yamlload import Located, load_file

#: when a case's timeline starts unless it says ``start:`` (a Monday, 09:00 UTC)
DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_at(value: Any) -> timedelta | datetime:
    """``10m`` (an offset from the case's start) or ``2026-01-05T09:30:00Z`` (a time)."""
    try:
        return parse_duration(value)
    except ValueError:
        pass
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is neither an offset (10m, 1h30m) nor a time (2026-01-05T09:30:00Z)")


class EventSpec(_Strict):
    """One line of a timeline: one event, or ``repeat`` events ``every`` apart (``{i}`` = 1, 2, ...)."""

    sql: str
    at: Any = Field(default=None, description="Offset from the case's start (10m) or a time; "
                                              "default: one `every` after the previous line's last event.")
    user: str | None = "analyst"
    database: str | None = "dw"
    params: list[str | None] = Field(default_factory=list, description="Bind values ($1, $2, ...).")
    duration: Duration | None = None
    rows: int | None = Field(default=None, ge=0)
    bytes_scanned: int | None = Field(default=None, ge=0)
    error_code: str | None = None
    error_message: str | None = None
    dialect: str = "postgres"
    source: str = "test"
    application: str | None = None
    repeat: int = Field(default=1, ge=1, le=100_000)
    every: Duration = timedelta(minutes=1)

    @field_validator("at")
    @classmethod
    def _at(cls, v: Any) -> Any:
        return None if v is None else parse_at(v)


class Expectation(_Strict):
    """A finding that must be among the results; only the keys given are compared."""

    rule: str
    user: str | None = None
    database: str | None = None
    count: int | None = None
    distinct_values: int | None = None
    varying: list[str] | None = None
    severity: str | None = None
    episodes: int | None = Field(default=None, description="How many times the pattern started.")
    title: str | None = Field(default=None, description="The rendered title, exactly.")
    intervention_contains: str | None = None


class CaseSpec(_Strict):
    name: str
    start: Any = Field(default=None, description="Time the timeline's offsets count from.")
    events: list[EventSpec] = Field(default_factory=list, description="The timeline (or give log).")
    log: str | None = Field(default=None, description="A log file (relative to the test file) instead of events.")
    format: str | None = Field(default=None, description="The log's format (default: from its extension).")
    expect: list[Expectation]

    @field_validator("start")
    @classmethod
    def _start(cls, v: Any) -> Any:
        if v is None:
            return None
        at = parse_at(v)
        if not isinstance(at, datetime):
            raise ValueError(f"{v!r} is not a time; write it like 2026-01-05T09:00:00Z")
        return at

    @model_validator(mode="after")
    def _one_input(self) -> CaseSpec:
        if ("events" in self.model_fields_set) == (self.log is not None):
            raise ValueError("a case needs events or a log, exactly one of them")
        if self.format is not None and self.log is None:
            raise ValueError("format is only for a case with a log")
        return self


class TestFileSpec(_Strict):
    rules: list[str] = Field(min_length=1, description="Rule files or directories, relative to this file.")
    cases: list[CaseSpec] = Field(min_length=1)


@dataclass
class TestCase:
    file: str
    line: int
    spec: CaseSpec
    log: Path | None = None


@dataclass
class TestFile:
    path: str
    rules: list[Rule]
    cases: list[TestCase]


@dataclass
class CaseResult:
    case: TestCase
    missing: list[dict[str, Any]] = field(default_factory=list)  # expectations no finding matched
    unexpected: list[dict[str, Any]] = field(default_factory=list)  # findings no expectation matched

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def line(self) -> str:
        """``ok   path:line: name`` or ``FAIL path:line: name``."""
        return f"{'ok  ' if self.ok else 'FAIL'} {self.case.file}:{self.case.line}: {self.case.spec.name}"

    def diff(self) -> list[str]:
        """Expected findings no result matched (``-``) and results nobody expected (``+``)."""
        return ([f"  - expected {flow(e)}" for e in self.missing]
                + [f"  + got      {flow(g)}" for g in self.unexpected])


def flow(d: dict[str, Any]) -> str:
    """A one-line YAML-ish mapping: ``{rule: x, user: kim, count: 25}``."""
    return "{" + ", ".join(f"{k}: {json.dumps(v) if not isinstance(v, int) else v}" for k, v in d.items()) + "}"


# --- loading ---------------------------------------------------------------------------------------

def find_test_files(paths: list[str]) -> tuple[list[Path], list[Problem]]:
    """Test files in ``paths``: a file is one; a directory contributes its ``tests/*.yaml``, its
    ``*.test.yaml`` and, when it is itself named ``tests``, all its ``*.yaml``."""
    out: list[Path] = []
    problems: list[Problem] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            found = set(path.glob("*.test.y*ml")) | set((path / "tests").glob("*.y*ml"))
            if path.name == "tests":
                found |= set(path.glob("*.y*ml"))
            out.extend(sorted(f for f in found if f.is_file() and f.suffix in (".yaml", ".yml")))
        else:
            problems.append(Problem(str(path), None, None, "test file or rule directory does not exist."))
    return list(dict.fromkeys(out)), problems


def load_test_file(path: str | Path) -> TestFile:
    """Parse and check a test file: schema, rule files, log files. Raises ConfigError with every problem."""
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(doc.problem((), "a rule test file must be a mapping with rules and cases."))
    problems = _missing_files(doc)
    spec = None
    try:
        spec = TestFileSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, doc, TestFileSpec))
    rules: list[Rule] = []
    if spec is not None and not problems:
        try:
            rules = load_rules([str(Path(doc.path).parent / r) for r in spec.rules])
        except ConfigError as exc:
            problems.extend(exc.problems)
    ids = sorted(r.id for r in rules)
    cases = []
    for i, c in enumerate(spec.cases if spec is not None else []):
        for j, e in enumerate(c.expect):
            if rules and e.rule not in ids:
                problems.append(doc.problem(("cases", i, "expect", j, "rule"),
                                            f'rule "{e.rule}" is not in this file\'s rules.' + did_you_mean(e.rule, ids)))
        log = Path(doc.path).parent / c.log if c.log is not None else None
        cases.append(TestCase(doc.path, doc.where(("cases", i))[0] or 1, c, log))
    if problems or spec is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.path, p.line or 0, p.col or 0)))
    return TestFile(doc.path, rules, cases)


def _missing_files(doc: Located) -> list[Problem]:
    """Rule and log files that do not exist, unknown formats: checked on the raw document, so they
    are reported together with schema problems."""
    base = Path(doc.path).parent
    out = []
    rules = doc.data.get("rules")
    for i, r in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(r, str) and not (base / r).exists():
            out.append(doc.problem(("rules", i), f'rule file "{r}" does not exist (paths are relative to the test file).'))
    cases = doc.data.get("cases")
    for i, c in enumerate(cases if isinstance(cases, list) else []):
        if not isinstance(c, dict):
            continue
        if isinstance(c.get("log"), str) and not (base / c["log"]).is_file():
            out.append(doc.problem(("cases", i, "log"), f'log file "{c["log"]}" does not exist.'))
        if isinstance(c.get("format"), str) and c["format"] not in formats:
            out.append(doc.problem(("cases", i, "format"), formats.unknown(c["format"])))
    return out


# --- running ---------------------------------------------------------------------------------------

def timeline(case: CaseSpec) -> Iterator[QueryEvent]:
    """The case's events in time order (lines may overlap; the engine sees them sorted)."""
    start = case.start or DEFAULT_START
    events: list[tuple[datetime, int, QueryEvent]] = []
    cursor: datetime | None = None
    for line in case.events:
        if isinstance(line.at, datetime):
            t0 = line.at
        elif isinstance(line.at, timedelta):
            t0 = start + line.at
        else:
            t0 = start if cursor is None else cursor + line.every
        for n in range(line.repeat):
            i = str(n + 1)
            ts = t0 + n * line.every
            ev = QueryEvent(
                source=line.source, ts=ts, sql=line.sql.replace("{i}", i),
                user=line.user.replace("{i}", i) if line.user else line.user, database=line.database,
                params=tuple(p.replace("{i}", i) if p is not None else None for p in line.params),
                duration_ms=line.duration.total_seconds() * 1000 if line.duration is not None else None,
                rows=line.rows, bytes_scanned=line.bytes_scanned, error_code=line.error_code,
                error_message=line.error_message, dialect=line.dialect, application=line.application,
                position=f"event {len(events) + 1}")
            events.append((ts, len(events), ev))
        cursor = t0 + (line.repeat - 1) * line.every
    for _, _, ev in sorted(events, key=lambda e: (e[0], e[1])):
        yield ev


def finding_dict(u: FindingUpdate, episodes: int = 1) -> dict[str, Any]:
    """The comparable face of a finding: what an expectation may name."""
    return {"rule": u.rule, "user": u.user, "database": u.database, "count": u.count,
            "distinct_values": u.distinct_values, "varying": list(u.varying), "severity": u.severity,
            "episodes": episodes, "title": u.title, "intervention": u.intervention}


def _matches(exp: dict[str, Any], got: dict[str, Any]) -> bool:
    for k, v in exp.items():
        if k == "intervention_contains":
            if v not in got["intervention"]:
                return False
        elif got.get(k) != v:
            return False
    return True


def compare(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pair expectations with findings (each used once; a bipartite matching, so the order of the
    expectations never matters); returns the unmatched of each side."""
    owner: dict[int, int] = {}  # finding index -> expectation index

    def assign(e: int, seen: set[int]) -> bool:
        for g, finding in enumerate(got):
            if g in seen or not _matches(expected[e], finding):
                continue
            seen.add(g)
            if g not in owner or assign(owner[g], seen):
                owner[g] = e
                return True
        return False

    matched = {e for e in range(len(expected)) if assign(e, set())}
    shown = ["rule", "user", "count", "distinct_values", "varying"]
    extra = [k for e in expected for k in e if k not in shown]
    missing = [expected[e] for e in range(len(expected)) if e not in matched]
    unexpected = [{k: got[g].get(k if k != "intervention_contains" else "intervention") for k in dict.fromkeys(shown + extra)}
                  for g in range(len(got)) if g not in owner]
    return missing, unexpected


def run_case(tf: TestFile, case: TestCase, config: Config | None = None) -> CaseResult:
    c = case.spec
    events = dryrun.read_logs([str(case.log)], c.format, config) if case.log else timeline(c)
    result = dryrun.evaluate(tf.rules, events)
    got = [finding_dict(u, result.episodes.get((u.rule, u.key), 1)) for u in result.findings]
    expected = [e.model_dump(exclude_none=True) for e in c.expect]
    missing, unexpected = compare(expected, got)
    return CaseResult(case, missing, unexpected)


def run_tests(paths: list[str], config: Config | None = None) -> list[CaseResult]:
    """Load every test file in ``paths`` (all problems reported together), then run every case."""
    files, problems = find_test_files(paths)
    loaded: list[TestFile] = []
    for f in files:
        try:
            loaded.append(load_test_file(f))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return [run_case(tf, case, config) for tf in loaded for case in tf.cases]
