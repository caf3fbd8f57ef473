"""`usagewatch report usage` on the real sample log (PostgreSQL 15 csvlog of the 136-query story),
replayed through the CLI: the table, the JSON contract and the HTML file."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from tests.helpers.configs import write_config
from usagewatch.cli import cli
from usagewatch.config import SAMPLE_LOG

SAMPLE_DAY = datetime(2026, 11, 26, tzinfo=timezone.utc)  # when the sample was written


@pytest.fixture
def replayed(tmp_path):
    cfg = write_config(tmp_path, [{"name": "pg", "format": "postgres-csvlog", "paths": [str(SAMPLE_LOG)]}],
                       usage={"teams": {"finance": ["kim", "ann"], "bi": ["bi_tool", "dash"]}})
    r = CliRunner().invoke(cli, ["replay", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    # a period reaching back to the sample whenever the test runs
    days = math.ceil((datetime.now(timezone.utc) - SAMPLE_DAY).total_seconds() / 86400) + 30
    return cfg, f"{days}d"


def usage(*args: str):
    r = CliRunner().invoke(cli, ["report", "usage", *args])
    assert r.exit_code == 0, r.output
    return r


def test_table(replayed):
    cfg, since = replayed
    out = usage("--config", str(cfg), "--since", since).stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"Warehouse usage, last {since} (")
    assert lines[1].startswith("8 users, 272 queries, ") and lines[1].endswith(" 4 failed")
    assert "12% of users (1 of 8) account for 84% of warehouse time." in lines
    assert "  Struggling (1): sam    [20% or more of 10+ queries failed]" in lines
    assert "  New this period (8): postgres, dash, kim, sam, ann, bi_tool, lee, ops    [first seen in this period]" in lines
    users = lines[lines.index("USERS") + 1:]
    assert users[0].split() == ["USER", "TEAM", "QUERIES", "TIME", "SHARE", "P95", "FAILED", "OPEN", "FINDINGS",
                                "SEGMENTS"]
    kim = next(row for row in users if row.startswith("kim "))
    assert kim.split()[:3] == ["kim", "finance", "136"] and kim.split()[-3:] == ["1", "occasional,", "new"]
    sam = next(row for row in users if row.startswith("sam "))
    assert "3 (27%)" in sam and sam.endswith("occasional, new, struggling")
    assert "TOP QUERY SHAPES BY WAREHOUSE TIME" in lines and "MOST-USED TABLES" in lines and "TEAMS" in lines
    hot = lines[lines.index("ERROR HOT SPOTS") + 1:lines.index("ERROR HOT SPOTS") + 6]
    assert [r.split()[0] for r in hot] == ["USER", "ops", "sam", "sam", "sam"]
    assert any(r.startswith("orders ") and r.split()[1] == "231" for r in lines)


def test_json_contract(replayed):
    cfg, since = replayed
    data = json.loads(usage("--config", str(cfg), "--since", since, "--format", "json").stdout)
    assert data["version"] == 1 and data["measure"] == "time" and data["cost"] == {"currency": "USD", "priced": False}
    assert set(data) == {"version", "period", "cost", "measure", "totals", "pareto", "segments", "new_heavy_users",
                         "users", "teams", "fingerprints", "tables", "error_hot_spots", "series"}
    assert (data["totals"]["users"], data["totals"]["queries"], data["totals"]["errors"]) == (8, 272, 4)
    assert data["pareto"]["sentence"] == "12% of users (1 of 8) account for 84% of warehouse time."
    assert [s["key"] for s in data["segments"]] == ["heavy", "regular", "occasional", "new", "gone_quiet", "struggling"]
    kim = next(u for u in data["users"] if u["user"] == "kim")
    assert {k: kim[k] for k in ("team", "queries", "errors", "open_findings")} == \
        {"team": "finance", "queries": 136, "errors": 0, "open_findings": 1}
    assert set(kim) == {"user", "team", "queries", "errors", "error_rate", "time_s", "p95_ms", "max_ms", "rows",
                        "bytes", "cost", "share", "active_days", "open_findings", "first_seen", "segments"}
    shape = next(f for f in data["fingerprints"] if f["users"] == [{"user": "kim", "queries": 136}])
    assert shape["sql"] == "SELECT id, amount, created_at FROM orders WHERE company_id = ?"
    assert sum(p["queries"] for p in data["series"]) == 272 and data["period"]["granularity"] == "day"
    assert any((t["team"], t["users"], t["queries"]) == ("finance", 2, 155) for t in data["teams"])  # kim + ann


def test_html_to_a_file_and_to_stdout(replayed, tmp_path):
    cfg, since = replayed
    out = tmp_path / "usage.html"
    r = usage("--config", str(cfg), "--since", since, "--format", "html", "--output", str(out))
    assert r.stdout == "" and r.stderr == f"Wrote the usage report (html) to {out}.\n"
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 3
    assert "<script" not in html and "<link" not in html and 'src="http' not in html
    assert usage("--config", str(cfg), "--since", since, "--format", "html").stdout.rstrip() == html.rstrip()


def test_a_bad_period_is_one_sentence(replayed):
    cfg, _ = replayed
    r = CliRunner().invoke(cli, ["report", "usage", "--config", str(cfg), "--since", "a month"])
    assert r.exit_code == 1
    assert r.stderr == "Error: --since: 'a month' is not a duration; write it like 30s, 10m, 1h or 7d.\n"
