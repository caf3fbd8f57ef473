"""End to end with a ``type: query`` source: a history table in a real PostgreSQL, polled through
the whole pipeline by ``usagewatch replay`` (format -> normalize -> stock rules -> SQLite store),
with a password that only the environment knows."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.configs import write_config
from tests.helpers.postgres import PgCluster
from tests.sources.test_polled import T0, History, registered_history_rows, snowflake_history, snowflake_row
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.sources.formats import formats
from usagewatch.store import Store

PASSWORD = "pipeline-Secret-9"


@pytest.fixture(scope="module")
def dbname(pg_cluster: PgCluster) -> str:
    name = "polled_e2e_" + uuid.uuid4().hex[:8]
    pg_cluster.execute(f"CREATE DATABASE {name}")
    return name


def findings(cfg_path: Path) -> list[dict[str, Any]]:
    store = Store(config.load(cfg_path).database)
    try:
        return store.findings()
    finally:
        store.close()


def query_source(url_env: str, table: str, fmt: str, cursor: str, **extra: Any) -> dict[str, Any]:
    return {"name": "warehouse", "type": "query", "format": fmt, "url_env": url_env, "table": table,
            "cursor": cursor, "interval": "1m", "batch_rows": 7, **extra}


# the generic format with the mapping of docs/sources/polled.md's PostgreSQL example
MAPPING = {"mapping": {"sql": "query_text", "ts": "start_time", "user": "user_name", "query_id": "query_id",
                       "duration_ms": "total_elapsed_time"}}


@pytest.mark.parametrize("fmt,options,jobs", [("test-history-rows", None, 1), ("jsonl", MAPPING, 1),
                                              ("test-history-rows", None, 2)])
def test_one_query_with_25_company_ids_makes_one_finding(pg_cluster, dbname, tmp_path, monkeypatch, fmt, options,
                                                         jobs):
    """(``jobs`` 2: ``replay -j 2`` on a polled table finds the same and commits the same cursor.)"""
    if fmt not in formats and fmt != "test-history-rows":
        pytest.skip(f"the {fmt} format is not in the registry")
    registered_history_rows(monkeypatch)
    history = History(pg_cluster, dbname, "hist_" + uuid.uuid4().hex[:8])
    # kim: one query shape, 25 company ids, within 25 minutes; several runs share a timestamp so
    # batches of 7 end among them
    times = [T0 + timedelta(minutes=i // 3) for i in range(25)]
    kim = [history.add(t, user="kim", sql=f"SELECT * FROM orders WHERE company_id = {100 + i}")[0]
           for i, t in enumerate(times)]
    history.add(*(T0 + timedelta(minutes=i) for i in range(5)), user="ana", sql="SELECT count(*) FROM orders")
    monkeypatch.setenv("WH_URL", history.url(PASSWORD))
    extra = {"options": options} if options else {}
    cfg_path = write_config(tmp_path, [query_source("WH_URL", history.table, fmt, "start_time", **extra)])

    stats = replay(config.load(cfg_path), jobs=jobs)
    assert (stats.queries, sum(stats.bad_records.values())) == (30, 0)
    [f] = findings(cfg_path)
    assert (f["rule"], f["user"], f["count"], f["distinct_values"], f["varying"]) == (
        "same-query-different-ids", "kim", 25, 25, ["company_id"])
    assert "company_id IN (" in f["intervention"]

    again = replay(config.load(cfg_path), jobs=jobs)  # the cursor was committed: nothing is read twice
    assert (again.records, again.queries) == (0, 0)

    # five more runs, the first at the very timestamp the last batch ended on
    last = times[-1]
    for i in range(5):
        kim += history.add(last + timedelta(seconds=20 * i), user="kim", sql=f"SELECT * FROM orders WHERE company_id = {200 + i}")
    more = replay(config.load(cfg_path), jobs=jobs)
    assert more.queries == 5
    [f] = findings(cfg_path)
    assert (f["count"], f["distinct_values"]) == (30, 30)
    assert len(kim) == 30


def test_snowflake_history_through_the_pipeline(pg_cluster, dbname, tmp_path, monkeypatch):
    if "snowflake" not in formats:
        pytest.skip("the snowflake format is not in the registry")
    rows = [snowflake_row(i, T0 + timedelta(seconds=30 * (i // 2))) for i in range(25)]
    rows += [snowflake_row(100 + i, T0 + timedelta(minutes=i), user="ANA", status="FAIL") for i in range(3)]
    table = snowflake_history(pg_cluster, dbname, rows)
    monkeypatch.setenv("SF_URL", f"postgresql+psycopg://postgres:{PASSWORD}@{pg_cluster.host}:{pg_cluster.port}/{dbname}")
    cfg_path = write_config(tmp_path, [query_source("SF_URL", table, "snowflake", "START_TIME")])

    stats = replay(config.load(cfg_path))
    assert stats.queries == 28
    [f] = findings(cfg_path)
    assert (f["rule"], f["user"], f["count"], f["distinct_values"]) == ("same-query-different-ids", "KIM", 25, 25)
    assert f["varying"] == ["company_id"]
    assert replay(config.load(cfg_path)).queries == 0
