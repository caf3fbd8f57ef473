"""``usagewatch rules test`` (dry run over logs, or the YAML unit tests) and ``usagewatch rules schema``:
exit codes and exact key lines."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from usagewatch.cli import cli

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "rules-tests"
SAMPLE = ROOT / "usagewatch" / "samples" / "postgresql.csv"
IDS_RULE = ROOT / "rules" / "same-query-different-ids.yaml"
REPEAT_RULE = ROOT / "rules" / "same-query-repeated.yaml"


def invoke(*args: str):
    return CliRunner().invoke(cli, ["rules", *args])


def test_dry_run_prints_each_finding_with_its_evidence_and_a_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written: no usagewatch.db appears
    r = invoke("test", "--rules", str(IDS_RULE), "--rules", str(REPEAT_RULE), "--format", "postgres-csvlog", str(SAMPLE))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    kim = lines.index("same-query-different-ids: kim ran one query 136 times with different company_id values")
    assert lines[kim + 1:kim + 5] == [
        "  user kim, count 136, distinct values 136, varying company_id",
        "  first seen 2026-11-26 04:42:04, last seen 2026-11-26 04:42:04 UTC",
        "  | kim ran the same query 136 times between 2026-11-26 04:42 and 04:42 UTC, each time with a different "
        "company_id (136 different values, e.g. 1000, 1007, 1014).",
        "  | Suggest putting the IDs in one list and running the query once:",
    ]
    assert "same-query-repeated: dash ran the same query 25 times with the same values" in lines
    assert "same-query-different-ids: bi_tool ran one query 40 times with different customer_id values" in lines
    assert lines[-1] == ("3 findings would fire from 2 rules over 272 queries (690 records, 0 bad, 10 queries not parsed); "
                         "nothing was stored or sent.")
    assert list(tmp_path.iterdir()) == []


def test_explain_ranks_keys_by_closeness_to_firing_and_caps_the_list():
    r = invoke("test", "--rules", str(IDS_RULE), "--explain", str(SAMPLE))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    head = lines.index("same-query-different-ids: 18 keys")
    shown = [" ".join(line.split()[0:2]) + " " + line.split("  ")[-1] for line in lines[head + 1:head + 4]]
    assert shown == ["fired user=kim runs 136/20, distinct 136/20", "fired user=bi_tool runs 40/20, distinct 40/20",
                     "no user=ann runs 19/20, distinct 19/20"]
    r = invoke("test", "--rules", str(REPEAT_RULE), "--explain", str(SAMPLE))
    assert "same-query-repeated: 225 keys" in r.stdout.splitlines()
    assert "  ... 205 more (--all shows every key)" in r.stdout.splitlines()
    r = invoke("test", "--rules", str(REPEAT_RULE), "--explain", "--all", str(SAMPLE))
    assert "more (--all" not in r.stdout and len(r.stdout.splitlines()) > 225


def test_json_output_for_scripts():
    r = invoke("test", "--rules", str(IDS_RULE), "--explain", "--output", "json", str(SAMPLE))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["queries"], out["records"], out["bad_records"], out["rules"]) == (272, 690, 0, ["same-query-different-ids"])
    kim = next(f for f in out["findings"] if f["user"] == "kim")
    assert {k: kim[k] for k in ("rule", "count", "distinct_values", "varying", "episodes", "howto")} == {
        "rule": "same-query-different-ids", "count": 136, "distinct_values": 136, "varying": ["company_id"],
        "episodes": 1, "howto": "batch-ids-into-one-query.md"}
    assert kim["first_seen"].startswith("2026-11-26T04:42:04")
    assert out["explain"]["same-query-different-ids"]["keys"][0]["runs"] == 136
    assert out["explain"]["same-query-different-ids"]["more"] == 0


def test_format_options_come_from_the_config():
    r = CliRunner().invoke(cli, ["rules", "test", "--config", str(DATA / "history-config.yaml"), "--format", "jsonl",
                                 str(DATA / "history.jsonl")])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "ids: kim ran one query 6 times with different company_id values"
    r = invoke("test", "--rules", str(DATA / "ids.yaml"), "--format", "jsonl", str(DATA / "history.jsonl"))
    assert r.exit_code == 1
    assert r.stderr == ("Error: the jsonl format needs options (e.g. a field mapping); give --config with a source "
                        "of that format and its options.\n")


def test_the_configs_rule_overrides_apply_to_a_dry_run():
    r = invoke("test", "--config", str(DATA / "history-overrides-config.yaml"), str(DATA / "history.jsonl"))
    assert r.exit_code == 0, r.output
    assert r.stdout == ("0 findings would fire from 1 rule over 6 queries (6 records, 0 bad, 0 queries not parsed); "
                        "nothing was stored or sent.\n")


def test_a_missing_log_is_one_clear_error(tmp_path):
    r = invoke("test", "--rules", str(IDS_RULE), str(tmp_path / "gone.csv"))
    assert r.exit_code == 1
    assert r.stderr == f"Error: {tmp_path}/gone.csv: no such file.\n"


def test_without_logs_the_stock_unit_tests_run_and_pass():
    r = invoke("test")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert f"ok   {ROOT}/rules/tests/same-query-different-ids.test.yaml:4: kim runs one query with 25 company ids" in lines
    assert all(line.startswith("ok   ") for line in lines[:-1])
    assert lines[-1] == f"{len(lines) - 1} rule test cases passed."


def test_a_failing_case_prints_a_diff_and_exits_one():
    r = invoke("test", "--rules", str(DATA / "failing"))
    assert r.exit_code == 1
    path = DATA / "failing" / "ids.test.yaml"
    assert r.stdout.splitlines() == [
        f"ok   {path}:3: five ids fire",
        f"FAIL {path}:8: an off-by-one expectation",
        '  - expected {rule: "ids", user: "kim", count: 5}',
        '  + got      {rule: "ids", user: "kim", count: 6, distinct_values: 6, varying: ["company_id"]}',
        f"FAIL {path}:13: nothing expected but something fires",
        '  + got      {rule: "ids", user: "lee", count: 5, distinct_values: 5, varying: ["company_id"]}',
    ]
    assert r.stderr == "Error: 2 of 3 rule test cases failed.\n"
    r = invoke("test", "--rules", str(DATA / "failing" / "ids.test.yaml"), "--output", "json")
    assert r.exit_code == 1
    assert [(c["name"], c["ok"]) for c in json.loads(r.stdout)][:2] == [("five ids fire", True),
                                                                       ("an off-by-one expectation", False)]


def test_a_broken_test_file_reports_every_problem_with_its_line():
    r = invoke("test", "--rules", str(DATA / "bad"))
    assert r.exit_code == 1
    err = r.stderr.splitlines()
    assert err[0] == (f'{DATA}/bad/broken.test.yaml:1:22: rule file "../missing.yaml" does not exist '
                      "(paths are relative to the test file).")
    assert err[-1] == "Error: 8 problems in the config or rules."


def test_no_tests_found_is_an_error_and_explain_without_logs_a_usage_error(tmp_path):
    r = invoke("test", "--rules", str(tmp_path))
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: no rule tests found in {tmp_path}.")
    r = invoke("test", "--explain")
    assert r.exit_code == 2
    assert "--explain, --all and --format need LOG files" in r.stderr


def test_schema_prints_the_committed_schema():
    r = invoke("schema")
    assert r.exit_code == 0
    assert r.stdout == (ROOT / "schema" / "rule.schema.json").read_text()
    assert json.loads(r.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
