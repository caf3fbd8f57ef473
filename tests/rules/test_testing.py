"""Rule unit tests (YAML), the store-less dry run and the rule-file JSON Schema, called as library
functions. The stock rules' own YAML tests run here too, so CI fails when a stock rule regresses."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml

from usagewatch import config, dryrun
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.model import QueryEvent
from usagewatch.rules import load_rules
from usagewatch.rules.jsonschema import rule_json_schema, rule_json_schema_text
from usagewatch.rules.testing import (
    DEFAULT_START,
    CaseSpec,
    compare,
    find_test_files,
    run_tests,
    timeline,
)

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "rules-tests"
STOCK = ROOT / "rules"


def ids_events(user: str, n: int, start_minute: int = 0, every: float = 1.0) -> list[QueryEvent]:
    return [QueryEvent(source="t", ts=DEFAULT_START + timedelta(minutes=start_minute + i * every), user=user,
                       sql=f"SELECT * FROM orders WHERE company_id = {i + 1}") for i in range(n)]


# --- the stock library's YAML tests (CI) ------------------------------------------------------------

def test_every_stock_rule_test_file_passes():
    files, problems = find_test_files([str(STOCK / "tests")])
    assert problems == [] and len(files) >= 2
    results = run_tests([str(STOCK / "tests")])
    failed = [line for r in results if not r.ok for line in [r.line(), *r.diff()]]
    assert failed == []
    assert len(results) >= 10


def test_the_story_rules_have_tests_that_fire_miss_and_read_the_sample_log():
    for rule in ("same-query-different-ids", "same-query-repeated"):
        data = yaml.safe_load((STOCK / "tests" / f"{rule}.test.yaml").read_text())
        assert any(c.get("expect") for c in data["cases"] if "events" in c)
        assert any(c["expect"] == [] for c in data["cases"])
        assert any(c.get("log", "").endswith("samples/postgresql.csv") for c in data["cases"])


# --- timelines ----------------------------------------------------------------------------------------

def test_repeat_every_and_i_make_a_timeline_that_continues_line_after_line():
    case = CaseSpec.model_validate({"name": "t", "expect": [], "events": [
        {"repeat": 3, "every": "2m", "user": "u{i}", "sql": "SELECT {i}", "params": ["{i}", None]},
        {"sql": "SELECT 'next'", "duration": "2s", "rows": 7, "error_code": "42P01"},
        {"at": "1m", "sql": "SELECT 'early'"},
        {"at": "2026-01-05T08:00:00Z", "sql": "SELECT 'before the start'"},
    ]})
    evs = list(timeline(case))
    assert [(e.ts - DEFAULT_START, e.sql) for e in evs] == [
        (timedelta(hours=-1), "SELECT 'before the start'"),
        (timedelta(0), "SELECT 1"), (timedelta(minutes=1), "SELECT 'early'"), (timedelta(minutes=2), "SELECT 2"),
        (timedelta(minutes=4), "SELECT 3"), (timedelta(minutes=5), "SELECT 'next'"),
    ]
    first = evs[1]
    assert (first.user, first.params, first.database, first.dialect) == ("u1", ("1", None), "dw", "postgres")
    nxt = evs[-1]
    assert (nxt.duration_ms, nxt.rows, nxt.error_code) == (2000.0, 7, "42P01")


def test_a_case_can_start_at_a_given_time():
    case = CaseSpec.model_validate({"name": "t", "start": "2026-03-01T22:00:00+01:00", "expect": [],
                                    "events": [{"at": "90m", "sql": "SELECT 1"}]})
    assert [e.ts for e in timeline(case)] == [datetime(2026, 3, 1, 22, 30, tzinfo=timezone.utc)]


# --- matching expectations ---------------------------------------------------------------------------

def test_expectations_match_on_the_keys_they_give_each_finding_once():
    got = [{"rule": "r", "user": "kim", "count": 5}, {"rule": "r", "user": "lee", "count": 9}]
    # the general expectation comes first but must not take the finding the specific one needs
    assert compare([{"rule": "r"}, {"rule": "r", "user": "kim"}], got) == ([], [])
    missing, unexpected = compare([{"rule": "r", "user": "kim", "count": 6}], got)
    assert missing == [{"rule": "r", "user": "kim", "count": 6}]
    assert [g["user"] for g in unexpected] == ["kim", "lee"]
    assert compare([], []) == ([], [])
    # an unexpected finding shows the usual keys plus every key the expectations compared
    got[0].update(distinct_values=5, varying=["company_id"], severity="info")
    assert compare([{"rule": "r", "user": "lee", "severity": "high"}], got)[1][0] == {
        "rule": "r", "user": "kim", "count": 5, "distinct_values": 5, "varying": ["company_id"], "severity": "info"}


def test_a_failing_file_reports_ok_and_fail_lines_with_a_diff():
    results = run_tests([str(DATA / "failing")])
    path = DATA / "failing" / "ids.test.yaml"
    lines = [line for r in results for line in [r.line(), *r.diff()]]
    assert lines == [
        f"ok   {path}:3: five ids fire",
        f"FAIL {path}:8: an off-by-one expectation",
        '  - expected {rule: "ids", user: "kim", count: 5}',
        '  + got      {rule: "ids", user: "kim", count: 6, distinct_values: 6, varying: ["company_id"]}',
        f"FAIL {path}:13: nothing expected but something fires",
        '  + got      {rule: "ids", user: "lee", count: 5, distinct_values: 5, varying: ["company_id"]}',
    ]


def test_every_problem_of_a_test_file_is_reported_with_line_and_column():
    with pytest.raises(ConfigError) as exc:
        run_tests([str(DATA / "bad")])
    f = DATA / "bad" / "broken.test.yaml"
    assert [str(p) for p in exc.value.problems] == [
        f'{f}:1:22: rule file "../missing.yaml" does not exist (paths are relative to the test file).',
        f'{f}:5:21: unknown key "evry" in cases[0].events[0]. Did you mean "every"?',
        f"{f}:6:14: cases[0].events[1].at: 'yesterday' is neither an offset (10m, 1h30m) nor a time (2026-01-05T09:30:00Z)",
        f"{f}:6:35: cases[0].events[1].duration: '2 hours' is not a duration; write it like 30s, 10m, 1h or 7d",
        f'{f}:8:21: unknown key "usr" in cases[0].expect[0]. Did you mean "user"?',
        f'{f}:10:10: log file "nowhere.csv" does not exist.',
        f'{f}:11:13: unknown log format "postgres-csv". Did you mean "postgres-csvlog"?',
        f"{f}:13:5: cases[2]: a case needs events or a log, exactly one of them",
    ]


def test_an_expectation_naming_a_rule_the_file_does_not_load_is_an_error(tmp_path):
    (tmp_path / "t.test.yaml").write_text(
        f"rules: [{DATA / 'ids.yaml'}]\ncases:\n  - name: x\n    events: []\n    expect:\n      - {{rule: idz}}\n")
    with pytest.raises(ConfigError, match=r't.test.yaml:6:16: rule "idz" is not in this file\'s rules. Did you mean "ids"\?'):
        run_tests([str(tmp_path)])


def test_test_files_are_found_in_a_tests_directory_next_to_the_rules(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.yaml").write_text("")
    (tmp_path / "b.test.yml").write_text("")
    (tmp_path / "rule.yaml").write_text("")
    files, problems = find_test_files([str(tmp_path), str(tmp_path / "tests"), str(tmp_path / "nope")])
    assert files == [tmp_path / "b.test.yml", tmp_path / "tests" / "a.yaml"]
    assert [p.message for p in problems] == ["test file or rule directory does not exist."]


# --- the dry run ----------------------------------------------------------------------------------------

def test_dry_run_merges_updates_per_key_and_adds_up_episodes():
    rules = load_rules([str(DATA / "ids.yaml")])
    events = ids_events("kim", 6) + ids_events("kim", 5, start_minute=60) + ids_events("lee", 4)
    result = dryrun.evaluate(rules, sorted(events, key=lambda e: e.ts))
    assert [(u.user, u.count, u.distinct_values, u.varying) for u in result.findings] == [
        ("kim", 11, 11, ["company_id"])]
    assert list(result.episodes.values()) == [2]
    assert result.events == 15
    explained = {e["key"].split()[0]: (e["fired"], e["runs"], e["distinct"]) for e in result.engine.rules[0].kind.explain()}
    assert explained == {"user=kim": (True, 5, 5), "user=lee": (False, 4, 4)}


def test_each_dry_run_starts_from_empty_windows():
    rules = load_rules([str(DATA / "ids.yaml")])
    assert len(dryrun.evaluate(rules, ids_events("kim", 4)).findings) == 0
    assert len(dryrun.evaluate(rules, ids_events("kim", 4)).findings) == 0  # not 8 runs: nothing carried over


def test_read_logs_takes_format_options_from_a_configured_source():
    cfg = config.load(DATA / "history-config.yaml")
    stats: Counter[str] = Counter()
    events = list(dryrun.read_logs([str(DATA / "history.jsonl")], "jsonl", cfg, stats))
    assert [(e.user, e.sql[-1]) for e in events] == [("kim", str(i)) for i in range(1, 7)]
    assert stats["records"] == 6 and stats["bad"] == 0
    with pytest.raises(UsagewatchError, match="the jsonl format needs options"):
        list(dryrun.read_logs([str(DATA / "history.jsonl")], "jsonl"))
    with pytest.raises(UsagewatchError, match="cannot tell its log format; pass --format"):
        list(dryrun.read_logs([str(DATA / "ids.yaml")]))


# --- the JSON Schema of rule files -------------------------------------------------------------------------

def test_the_committed_schema_is_the_generated_one():
    assert (ROOT / "schema" / "rule.schema.json").read_text() == rule_json_schema_text(), \
        "schema/rule.schema.json is stale: run `usagewatch rules schema > schema/rule.schema.json`"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schema" / "rule.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_stock_rule_file_validates_against_the_schema():
    v = validator()
    files = sorted(STOCK.glob("*.yaml"))
    assert files
    assert {f.name: [e.message for e in v.iter_errors(yaml.safe_load(f.read_text()))] for f in files} == \
        {f.name: [] for f in files}


@pytest.mark.parametrize("change, message", [
    (lambda r: r["params"].update(windw="1h"), "Additional properties are not allowed ('windw' was unexpected)"),
    (lambda r: r.update(kind="varying_literal"), "'varying_literal' is not one of"),
    (lambda r: r["params"].update(window="2 hours"), "'2 hours' is not valid under any of the given schemas"),
    (lambda r: r.pop("title"), "'title' is a required property"),
])
def test_the_schema_rejects_what_the_loader_rejects(change, message):
    rule = yaml.safe_load((STOCK / "same-query-different-ids.yaml").read_text())
    change(rule)
    for doc in (rule, {"rules": [rule]}):
        assert any(message in e.message for e in validator().iter_errors(doc))


def test_params_are_checked_by_the_schema_of_the_rule_kind():
    rule = {"id": "x", "kind": "threshold", "title": "t", "intervention": "i", "howto": "h.md",
            "params": {"match": {"status": "failed"}, "window": 600}}
    assert list(validator().iter_errors(rule)) == []
    rule["params"]["min_distinct"] = 3  # a varying_literals parameter, not a threshold one
    assert [e.message for e in validator().iter_errors(rule)] == [
        "Additional properties are not allowed ('min_distinct' was unexpected)"]
    assert set(rule_json_schema()["$defs"]["rule"]["properties"]["kind"]["enum"]) >= {"threshold", "varying_literals"}
