"""Every stock rule on a real PostgreSQL: a workload where it must fire and a near miss where it
must not, each replayed through the whole pipeline (csvlog -> normalize -> that ONE rule -> SQLite
store) and judged by the findings stored: rule, user and run count.

The scenarios are in ``tests/helpers/scenarios.py``. Rules about time spans (long-running-queries,
usage-spike) run from a test-local copy whose params are scaled down to seconds (``Scenario.params``);
every other rule runs from the shipped file as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.configs import write_config
from tests.helpers.scenarios import LARGE_TABLES, NOT_EXISTS, NOT_IN, SCENARIOS, Scenario
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.store import Store

RULES_DIR = Path(__file__).parents[3] / "rules"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def rule_file(scenario: Scenario, tmp_path: Path) -> Path:
    """The shipped rule file, or a copy with the scenario's test-local params merged in."""
    shipped = RULES_DIR / f"{scenario.rule}.yaml"
    if not scenario.params:
        return shipped
    data = yaml.safe_load(shipped.read_text())
    data["params"] = _merge(data.get("params") or {}, scenario.params)
    copy = tmp_path / "rules" / shipped.name
    copy.parent.mkdir()
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_stock_rule_scenario(scenario: Scenario, scenario_log, tmp_path: Path) -> None:
    log = tmp_path / "scenario.csv"
    log.write_bytes(scenario_log(scenario))
    rule = rule_file(scenario, tmp_path)
    cfg_path = write_config(tmp_path, [{"name": "pg", "format": "postgres-csvlog", "paths": [str(log)]}],
                            rules=[str(rule)])
    cfg = config.load(cfg_path)
    stats = replay(cfg)
    assert sum(stats.bad_records.values()) == 0
    # every execution of the scenario became one query event (plus the begin marker)
    assert stats.queries == len(scenario.runs()) + 1

    store = Store(cfg.database)
    try:
        findings = store.findings()
    finally:
        store.close()
    got = sorted((f["rule"], f["user"], f["count"]) for f in findings)
    assert len(got) == len(scenario.expect), f"{scenario.story}: {got}"
    for want in scenario.expect:
        assert any(rule_id == scenario.rule and want.matches(user, count) for rule_id, user, count in got), \
            f"{scenario.story}: expected {want}, got {got}"
    howto = yaml.safe_load((RULES_DIR / f"{scenario.rule}.yaml").read_text())["howto"]
    for f in findings:
        assert f["howto"].endswith(howto)
        assert f["title"] and f["intervention"]
        assert f["user"] in f["title"]


def test_not_in_trap_is_real(pg_cluster, scenario_log) -> None:
    """What not-in-subquery's how-to claims: one NULL in the subquery and NOT IN returns nothing,
    while NOT EXISTS returns the customers who did not churn."""
    scenario = next(s for s in SCENARIOS if s.id == "not-in-subquery:fires")
    scenario_log(scenario)  # makes the scenario's database
    db = f"uw_sc_{SCENARIOS.index(scenario)}"
    with pg_cluster.connect(dbname=db) as conn:
        assert conn.execute(NOT_IN).fetchall() == []
        kept = conn.execute(NOT_EXISTS).fetchall()
        churned = conn.execute("SELECT count(DISTINCT customer_id) FROM churned").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    assert len(kept) == total - churned > 0


def test_scenario_tables_are_large_for_the_stock_rules() -> None:
    """The scenarios' large tables match the placeholder globs shipped in the stock rules, and the
    story workload's tables (orders, companies, customers) do not."""
    import fnmatch

    for path in sorted(RULES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        globs = (data.get("params") or {}).get("large_tables") or (data.get("filter") or {}).get("tables")
        if not globs:
            continue
        for table in LARGE_TABLES:
            assert any(fnmatch.fnmatchcase(table, g) for g in globs), (path.name, table)
        for table in ("orders", "companies", "customers"):
            assert not any(fnmatch.fnmatchcase(table, g) for g in globs), (path.name, table)
