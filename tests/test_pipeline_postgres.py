"""End to end on a real PostgreSQL: the 136-query workload, its csvlog and jsonlog replayed through
the whole pipeline (formats -> normalize -> stock rules -> SQLite store), exactly the expected findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers.configs import write_config
from tests.helpers.postgres import ClusterUnavailable, remove_cluster, start_cluster
from tests.helpers.servers import need_server
from tests.helpers.workload import run_workload
from usagewatch import config
from usagewatch.cli import cli
from usagewatch.cli.replay import replay
from usagewatch.store import Store


@pytest.fixture(scope="module")
def workload_logs():
    """A cluster of our own (the shared one collects other tests' queries too), the workload run
    once, and its log directory."""
    try:
        cluster = start_cluster()  # its own temp dir: the postgres user cannot enter pytest's
    except (ClusterUnavailable, OSError) as exc:
        need_server(f"cannot start a PostgreSQL cluster: {exc}")
    try:
        result = run_workload(cluster)
        yield cluster, result
    finally:
        remove_cluster(cluster)


EXPECTED = [
    # rule, user, runs, distinct values, varying column
    ("same-query-different-ids", "kim", 136, 136, ["company_id"]),
    ("same-query-different-ids", "bi_tool", 40, 40, ["customer_id"]),
    ("same-query-repeated", "dash", 25, 1, []),
]


def found(cfg_path: Path) -> list[tuple]:
    cfg = config.load(cfg_path)
    store = Store(cfg.database)
    try:
        return sorted((f["rule"], f["user"], f["count"], f["distinct_values"], f["varying"]) for f in store.findings())
    finally:
        store.close()


@pytest.mark.parametrize("fmt,ext", [("postgres-csvlog", "csv"), ("postgres-jsonlog", "json")])
def test_replay_of_real_logs_finds_exactly_the_story(workload_logs, tmp_path, fmt, ext):
    cluster, result = workload_logs
    cfg_path = write_config(tmp_path, [{"name": "pg", "format": fmt, "paths": [f"{cluster.log_dir()}/*.{ext}"]}])
    stats = replay(config.load(cfg_path))
    assert found(cfg_path) == sorted(EXPECTED)
    # every execution of the workload became exactly one query event
    assert stats.queries >= sum(result.runs.values())
    assert sum(stats.bad_records.values()) == 0
    # the finding carries what the support team needs
    store = Store(config.load(cfg_path).database, "https://wiki.example.com/")
    kim = next(f for f in store.findings() if f["user"] == "kim")
    store.close()
    assert kim["sample_values"][:3] == [str(v) for v in result.values["kim"][:3]]
    assert "company_id = ?" in kim["normalized_sql"]
    assert "company_id IN (" in kim["intervention"]
    assert kim["howto"].endswith("batch-ids-into-one-query.md")

    # replaying again reads nothing new and counts nothing twice
    again = replay(config.load(cfg_path))
    assert (again.records, again.queries) == (0, 0)
    assert found(cfg_path) == sorted(EXPECTED)


def test_findings_list_json_has_the_contract_fields(workload_logs, tmp_path):
    cluster, _ = workload_logs
    cfg_path = write_config(tmp_path, [{"name": "pg", "format": "postgres-csvlog",
                                        "paths": [f"{cluster.log_dir()}/*.csv"]}])
    runner = CliRunner()
    r = runner.invoke(cli, ["replay", "--config", str(cfg_path)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Replayed 1 files, ")
    assert ", 3 new findings (0 updated), 0 bad records, " in r.stdout
    r = runner.invoke(cli, ["findings", "list", "--config", str(cfg_path), "--format", "json"])
    rows = json.loads(r.stdout)
    for f in rows:
        for key in ("id", "rule", "user", "status", "count", "distinct_values", "first_seen", "last_seen",
                    "fingerprint", "sample_sql", "varying", "howto"):
            assert key in f
    bi = next(f for f in rows if f["user"] == "bi_tool")
    assert (bi["status"], bi["varying"]) == ("open", ["customer_id"])
    assert "$1" in bi["sample_sql"]
    r = runner.invoke(cli, ["findings", "show", "--config", str(cfg_path), str(bi["id"])])
    assert r.exit_code == 0
    assert "bi_tool ran one query 40 times with different customer_id values" in r.stdout
    r = runner.invoke(cli, ["findings", "show", "--config", str(cfg_path), "999"])
    assert r.exit_code == 1
    assert r.stderr == "Error: there is no finding 999. `usagewatch findings list` shows them.\n"
