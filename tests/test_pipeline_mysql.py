"""End to end on a real MariaDB: the 136-query workload, its slow log and general log replayed through
the whole pipeline (formats -> normalize -> stock rules -> SQLite store), exactly the expected findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.configs import write_config
from tests.helpers.mysql_workload import BI_CUSTOMERS, DASH_RUNS, KIM_IDS
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.sources.files import FileSource
from usagewatch.sources.formats import formats
from usagewatch.store import Store

EXPECTED = [
    # rule, user, runs, distinct values, varying column
    ("same-query-different-ids", "kim", len(KIM_IDS), len(KIM_IDS), ["company_id"]),
    ("same-query-different-ids", "bi_tool", len(BI_CUSTOMERS), len(BI_CUSTOMERS), ["customer_id"]),
    ("same-query-repeated", "dash", DASH_RUNS, 1, []),
]


def found(cfg_path: Path) -> list[tuple]:
    store = Store(config.load(cfg_path).database)
    try:
        return sorted((f["rule"], f["user"], f["count"], f["distinct_values"], f["varying"]) for f in store.findings())
    finally:
        store.close()


@pytest.mark.parametrize("fmt,log", [("mysql-slow", "slow_log"), ("mysql-general", "general_log")])
def test_replay_of_real_logs_finds_exactly_the_story(mysql_workload_logs, tmp_path, fmt, log):  # noqa: F811
    path = getattr(mysql_workload_logs, log)
    run = mysql_workload_logs.result
    cfg_path = write_config(tmp_path, [{"name": "maria", "format": fmt, "paths": [str(path)]}])
    stats = replay(config.load(cfg_path))
    assert found(cfg_path) == sorted(EXPECTED)
    assert stats.queries == sum(run.executions().values()) + run.setup_statements
    assert sum(stats.bad_records.values()) == 0
    store = Store(config.load(cfg_path).database, "https://wiki.example.com/")
    kim = next(f for f in store.findings() if f["user"] == "kim")
    bi = next(f for f in store.findings() if f["user"] == "bi_tool")
    store.close()
    assert kim["sample_values"][:3] == [str(v) for v in run.values["kim"][:3]]
    assert "company_id = ?" in kim["normalized_sql"]
    assert "company_id IN (" in kim["intervention"]
    assert bi["sample_values"][:3] == [str(v) for v in BI_CUSTOMERS[:3]]  # the values of the prepared runs

    again = replay(config.load(cfg_path))
    assert (again.records, again.queries) == (0, 0)
    assert found(cfg_path) == sorted(EXPECTED)


def test_both_shipped_samples_give_the_same_findings(tmp_path):
    samples = Path(config.__file__).parent / "samples"
    for fmt, name in (("mysql-slow", "mysql-slow.log"), ("mysql-general", "mysql-general.log")):
        d = tmp_path / fmt
        d.mkdir()
        cfg_path = write_config(d, [{"name": "maria", "format": fmt, "paths": [str(samples / name)]}])
        replay(config.load(cfg_path))
        assert found(cfg_path) == sorted(EXPECTED)


@pytest.mark.parametrize("fmt,log", [("mysql-slow", "slow_log"), ("mysql-general", "general_log")])
def test_following_takes_the_last_entry_once_the_file_is_idle(mysql_workload_logs, fmt, log):  # noqa: F811
    """The daemon's way (no end of file): every entry arrives, the last one when the file idles,
    and a restart from the cursor reads nothing again."""
    path = str(getattr(mysql_workload_logs, log))
    strip = lambda evs: [(e.ts, e.user, e.sql, e.session) for e in evs]  # noqa: E731
    whole = [e for c in FileSource("t", formats.get(fmt)(), [path]).read(path, at_eof=True) for e in c.events]
    src = FileSource("t", formats.get(fmt)(), [path])
    chunks = list(src.read(path))
    following = [e for c in chunks for e in c.events]
    assert chunks[-1].cursor.offset < Path(path).stat().st_size  # the last entry is held back
    idle = list(src.flush_idle(0.0))
    assert strip(following + [e for c in idle for e in c.events]) == strip(whole)
    cursor = (idle or chunks)[-1].cursor
    again = FileSource("t", formats.get(fmt)(), [path])
    again.load({cursor.key: cursor})
    assert [e for c in again.read(path) for e in c.events] == [] and list(again.flush_idle(0.0)) == []
