"""The stock rule library as a whole: every file loads, links a how-to that exists, is listed in
docs/rules.md and has a firing and a near-miss scenario; and all of it together stays quiet on the
136-query story except for the story's own three findings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers.configs import write_config
from tests.helpers.scenarios import SCENARIOS
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.rules.loader import load_rules
from usagewatch.store import Store

ROOT = Path(__file__).parents[3]
RULES_DIR = ROOT / "rules"
HOWTO_DIR = ROOT / "docs" / "howto"
CATALOGUE = ROOT / "docs" / "rules.md"
SAMPLES = ROOT / "usagewatch" / "samples"
RULE_FILES = sorted(RULES_DIR.glob("*.yaml"))
STORY = [  # the story's findings (README, tests/test_pipeline_postgres.py)
    ("same-query-different-ids", "bi_tool", 40),
    ("same-query-different-ids", "kim", 136),
    ("same-query-repeated", "dash", 25),
]


def test_every_stock_rule_loads_and_ids_match_file_names() -> None:
    rules = load_rules([str(RULES_DIR)])
    assert sorted(r.id for r in rules) == sorted(p.stem for p in RULE_FILES)
    assert len(rules) >= 12


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_rule_links_an_existing_howto_listed_in_the_catalogue(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    howto = HOWTO_DIR / data["howto"]
    assert howto.is_file(), f"{path.name}: how-to {data['howto']} is missing"
    assert howto.read_text().startswith("# ")
    catalogue = CATALOGUE.read_text()
    assert f"`{data['id']}`" in catalogue
    assert f"howto/{data['howto']}" in catalogue
    assert data["severity"] in ("info", "warning", "high")
    assert data["description"].strip()


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_rule_has_a_firing_and_a_near_miss_scenario(path: Path) -> None:
    outcomes = {s.outcome for s in SCENARIOS if s.rule == path.stem}
    assert outcomes == {"fires", "near-miss"}
    firing = [s for s in SCENARIOS if s.rule == path.stem and s.outcome == "fires"]
    assert all(s.expect for s in firing)


@pytest.mark.parametrize("fmt,name", [("postgres-csvlog", "postgresql.csv"), ("postgres-jsonlog", "postgresql.json"),
                                      ("mysql-slow", "mysql-slow.log"), ("mysql-general", "mysql-general.log")])
def test_the_whole_library_finds_only_the_story_in_the_sample_logs(tmp_path: Path, fmt: str, name: str) -> None:
    """The sample logs (the 136-query workload on a real server) hold ordinary analyst queries
    too; none of the new stock rules may fire on them."""
    cfg_path = write_config(tmp_path, [{"name": "s", "format": fmt, "paths": [str(SAMPLES / name)]}],
                            rules=[str(RULES_DIR)])
    cfg = config.load(cfg_path)
    replay(cfg)
    store = Store(cfg.database)
    try:
        got = sorted((f["rule"], f["user"], f["count"]) for f in store.findings())
    finally:
        store.close()
    assert got == sorted(STORY)


def test_the_overrides_example_in_the_catalogue_loads(tmp_path: Path) -> None:
    """docs/rules.md's overrides example is valid and does what the page says."""
    text = CATALOGUE.read_text()
    block = text.split("# /etc/usagewatch/overrides.yaml\n", 1)[1].split("```", 1)[0]
    f = tmp_path / "overrides.yaml"
    f.write_text(block)
    rules = {r.id: r for r in load_rules([str(RULES_DIR)], [str(f)])}
    assert "union-instead-of-union-all" not in rules
    assert rules["full-scan-of-large-table"].kind.params.large_tables == ["dw.fct_*", "dw.events_*", "raw.*"]
    tables = rules["select-star-on-large-table"].spec.filter.tables
    assert tables == ["dw.fct_*", "dw.events_*"]  # include lists replace the placeholder
    assert "dw.events_lookup" in rules["select-star-on-large-table"].spec.filter.exclude_tables
    assert all(r.spec.filter.allow[-2:] == ["svc_etl", "svc_airflow"] for r in rules.values())
