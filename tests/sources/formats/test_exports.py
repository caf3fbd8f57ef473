"""Warehouse query-history exports (snowflake, bigquery, redshift, trino, clickhouse): the sample
files of tests/data/exports (written from the vendors' documented schemas by make_samples.py, with
the 136-story in miniature) read through frame/parse/assemble and through the file reader with
restarts, rows fed as plain dicts (what a polled source does), and two end-to-end replays."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.configs import write_config
from usagewatch import config
from usagewatch.cli.replay import replay
from usagewatch.errors import BadRecord, ConfigError
from usagewatch.model import QueryEvent
from usagewatch.sources.files import FileSource
from usagewatch.sources.formats import formats
from usagewatch.sources.formats.rows import RowsFormat, to_ts
from usagewatch.sources.formats.trino import duration_ms
from usagewatch.store import Store

DATA = Path(__file__).parents[2] / "data" / "exports"
T0 = datetime(2024, 5, 15, 14, 0, 0, tzinfo=timezone.utc)


def user(fmt: str, who: str) -> str:
    return {"snowflake": who.upper(), "bigquery": f"{who}@acme.example"}.get(fmt, who)


# per format: files, skipped rows by reason, whether rows / bytes are known, lee's error code
EXPECT: dict[str, dict[str, Any]] = {
    "snowflake": {"files": ["jsonl", "csv"], "skipped": {"not-finished": 1}, "rows": True, "bytes": True,
                  "error": "000904", "qid": "01b4c2d1-0000-6e3f-0000-0004a7b20000", "warehouse": "REPORTING_WH"},
    "bigquery": {"files": ["jsonl", "csv"], "skipped": {"not-query-job": 1, "script-parent": 1, "not-finished": 1},
                 "rows": False, "bytes": True, "error": "invalidQuery", "qid": "bquxjob_5e1d0000_18f7a2c3b4d",
                 "warehouse": "acme-dw:US.analytics"},
    "redshift": {"files": ["jsonl", "csv"], "skipped": {"not-finished": 1}, "rows": True, "bytes": False,
                 "error": "failed", "qid": "880000", "warehouse": None},
    "trino": {"files": ["jsonl"], "skipped": {"query-created": 5}, "rows": True, "bytes": True,
              "error": "COLUMN_NOT_FOUND", "qid": "20240515_140005_00000_x7k2p", "warehouse": None},
    "clickhouse": {"files": ["jsonl", "csv"], "skipped": {"query-start": 46, "not-initial": 1}, "rows": True,
                   "bytes": True, "error": "47", "qid": "6f0c2a4e-1b7d-4c21-9e35-000000000000", "warehouse": None},
}
CASES = [(name, ext) for name, e in EXPECT.items() for ext in e["files"]]


def make(name: str, ext: str = "jsonl") -> RowsFormat:
    cls = formats.get(name)
    fmt = cls(cls.Options.model_validate({"file_format": ext}))
    assert isinstance(fmt, RowsFormat)
    return fmt


def run(name: str, ext: str) -> tuple[list[QueryEvent], dict[str, int], dict[str, int]]:
    """Frame, parse and assemble a whole sample file: events, skipped and bad counts."""
    fmt = make(name, ext)
    data = (DATA / f"{name}.{ext}").read_bytes()
    asm = fmt.assembler("wh")
    events: list[QueryEvent] = []
    bad: dict[str, int] = {}
    prev = 0
    for end in fmt.frame(data, at_eof=True):
        try:
            events.extend(asm.feed(fmt.parse(data[prev:end]), f"f:{prev}"))
        except BadRecord as exc:
            bad[exc.reason] = bad.get(exc.reason, 0) + 1
        prev = end
    events.extend(asm.flush())
    return events, dict(asm.skipped), bad


def sans_position(events: list[QueryEvent]) -> list[QueryEvent]:
    return [replace(e, position="") for e in events]


@pytest.mark.parametrize("name,ext", CASES)
def test_sample_gives_the_story(name, ext):
    events, skipped, bad = run(name, ext)
    e = EXPECT[name]
    assert bad == {}
    assert skipped == e["skipped"]
    assert len(events) == 46
    assert {ev.dialect for ev in events} == {name}
    assert all(ev.ts.tzinfo is not None and ev.ts.utcoffset() == timedelta(0) for ev in events)

    kim = [ev for ev in events if ev.user == user(name, "kim")]
    assert len(kim) == 25
    assert len({ev.sql for ev in kim}) == 25  # 25 different company_ids
    first = kim[0]
    assert first.ts == T0 + timedelta(seconds=5)
    assert first.duration_ms == pytest.approx(400)
    assert first.sql.startswith("SELECT order_id, amount, status FROM orders WHERE company_id = 1000 ")
    assert first.rows == (10 if e["rows"] else None)
    assert first.bytes_scanned == (1_048_576 if e["bytes"] else None)
    assert first.query_id == e["qid"]
    assert first.warehouse == e["warehouse"]
    assert first.error_code is None and first.error_message is None

    dash = [ev for ev in events if ev.user == user(name, "dash")]
    assert len(dash) == 20 and len({ev.sql for ev in dash}) == 1
    assert dash[0].sql == "SELECT region,\n       count(*) AS orders\nFROM orders\nGROUP BY region"  # quoted newlines

    (lee,) = [ev for ev in events if ev.user == user(name, "lee")]
    assert lee.error_code == e["error"]
    assert lee.error_message and "compnay_id" in lee.error_message.lower()
    assert lee.ts == T0 + timedelta(minutes=17, seconds=45)


@pytest.mark.parametrize("name", [n for n, e in EXPECT.items() if "csv" in e["files"]])
def test_csv_and_jsonl_of_the_same_rows_give_the_same_events(name):
    assert sans_position(run(name, "csv")[0]) == sans_position(run(name, "jsonl")[0])


def read_with_restarts(name: str, ext: str, path: Path, batch: int) -> list[QueryEvent]:
    """The file reader, with a new reader (as after a restart) after every chunk, resuming from
    the cursor the last chunk would have committed."""
    events: list[QueryEvent] = []
    cursors: dict[str, Any] = {}
    while True:
        src = FileSource("wh", make(name, ext), [str(path)], [], batch_bytes=batch)
        src.load(cursors)
        chunk = next(iter(src.read(str(path), at_eof=True)), None)
        if chunk is None:
            return events
        events.extend(chunk.events)
        cursors = {str(path): chunk.cursor}


@pytest.mark.parametrize("name,ext", CASES)
def test_restart_mid_file_equals_an_uninterrupted_run(name, ext, tmp_path):
    path = tmp_path / f"{name}.{ext}"
    shutil.copy(DATA / f"{name}.{ext}", path)
    whole = FileSource("wh", make(name, ext), [str(path)], [], batch_bytes=1 << 20)
    uninterrupted = [ev for chunk in whole.read(str(path), at_eof=True) for ev in chunk.events]
    assert len(uninterrupted) == 46
    restarted = read_with_restarts(name, ext, path, batch=1500)
    assert restarted == uninterrupted


def test_csv_header_is_in_the_state_so_a_restart_still_maps_columns():
    fmt = make("snowflake", "csv")
    data = (DATA / "snowflake.csv").read_bytes()
    ends = fmt.frame(data, at_eof=True)
    asm = fmt.assembler("wh")
    assert asm.feed(fmt.parse(data[: ends[0]]), "f:0") == []  # the header
    state = asm.state()
    assert state["header"][:2] == ["query_id", "query_text"]
    fresh = fmt.assembler("wh")
    fresh.restore(state)
    (ev,) = fresh.feed(fmt.parse(data[ends[0]: ends[1]]), "f:1")
    assert (ev.user, ev.query_id) == ("KIM", "01b4c2d1-0000-6e3f-0000-0004a7b20000")


def test_half_written_records_are_not_framed():
    fmt = make("snowflake", "csv")
    data = (DATA / "snowflake.csv").read_bytes()
    ends = fmt.frame(data, at_eof=True)
    # cut inside dash's quoted multi-line SQL: only complete records before it are framed
    cut = data.index(b"count(*) AS orders")
    got = fmt.frame(data[:cut], at_eof=False)
    assert got == [e for e in ends if e <= cut]
    jl = make("snowflake").frame(b'{"a": 1}\n{"b":', at_eof=False)
    assert jl == [9]


# --- rows fed as plain dicts: what a `type: query` source does --------------------------------------
LOCAL = timezone(timedelta(hours=-7))
DRIVER_ROWS: dict[str, dict[str, Any]] = {
    "snowflake": {"QUERY_ID": "01b-1", "QUERY_TEXT": "SELECT 1", "USER_NAME": "KIM", "EXECUTION_STATUS": "SUCCESS",
                  "START_TIME": datetime(2024, 5, 15, 7, 0, 5, tzinfo=LOCAL), "TOTAL_ELAPSED_TIME": 412,
                  "BYTES_SCANNED": Decimal("2048"), "ROWS_PRODUCED": Decimal("3"), "WAREHOUSE_NAME": "WH",
                  "DATABASE_NAME": "DB", "SESSION_ID": 77, "ERROR_CODE": None},
    "bigquery": {"job_id": "j1", "job_type": "QUERY", "state": "DONE", "statement_type": "SELECT", "query": "SELECT 1",
                 "user_email": "kim@acme.example", "start_time": datetime(2024, 5, 15, 14, 0, 5, tzinfo=timezone.utc),
                 "end_time": datetime(2024, 5, 15, 14, 0, 5, 412000, tzinfo=timezone.utc), "total_bytes_processed": 2048,
                 "error_result": None, "project_id": "p", "reservation_id": None, "session_info": {"session_id": "s1"}},
    "redshift": {"user_id": 101, "query_id": 5, "session_id": 77, "database_name": "dev", "status": "success",
                 "start_time": datetime(2024, 5, 15, 14, 0, 5), "elapsed_time": 412000, "returned_rows": 3,
                 "query_text": "SELECT 1" + " " * 10, "error_message": None},
    "trino": {"query_id": "q1", "query": "SELECT 1", "query_state": "FINISHED", "user": "kim", "catalog": "hive",
              "create_time": datetime(2024, 5, 15, 14, 0, 5), "wall_time_millis": 412, "output_rows": 3,
              "physical_input_bytes": 2048},
    "clickhouse": {"type": "QueryFinish", "query_start_time": datetime(2024, 5, 15, 14, 0, 5), "query_duration_ms": 412,
                   "read_bytes": 2048, "result_rows": 3, "user": "kim", "query_id": "q1", "query": "SELECT 1",
                   "current_database": "default", "exception_code": 0, "exception": "", "is_initial_query": True},
}


@pytest.mark.parametrize("name", list(DRIVER_ROWS))
def test_feed_takes_a_plain_dict_row_with_driver_values(name):
    asm = make(name).assembler("poll")
    (ev,) = asm.feed(DRIVER_ROWS[name], "table:1")
    assert ev.sql == "SELECT 1"
    assert ev.ts == T0 + timedelta(seconds=5)
    assert ev.duration_ms == pytest.approx(412)
    assert ev.dialect == name and ev.position == "table:1" and ev.error_code is None
    assert ev.user in ("KIM", "kim", "kim@acme.example", "101")
    assert asm.state() == {}  # nothing to carry between polled rows


def test_redshift_user_id_without_a_name_and_truncated_text_is_noted():
    asm = make("redshift").assembler("poll")
    long_sql = "SELECT " + ", ".join(f"c{i}" for i in range(1200))
    (ev,) = asm.feed({"user_id": 101, "status": "success", "start_time": "2024-05-15 14:00:05",
                      "query_text": long_sql[:4000]}, "p")
    assert ev.user == "101"
    assert asm.notes["query-text-truncated"] == 1


def test_clickhouse_numeric_enum_type_and_exception_before_start():
    asm = make("clickhouse").assembler("poll")
    row = dict(DRIVER_ROWS["clickhouse"])
    assert asm.feed({**row, "type": 1}, "p") == []
    (ev,) = asm.feed({**row, "type": "ExceptionBeforeStart", "exception_code": 62,
                      "exception": "Code: 62. DB::Exception: Syntax error"}, "p")
    assert (ev.error_code, ev.error_message) == ("62", "Code: 62. DB::Exception: Syntax error")
    assert asm.skipped == {"query-start": 1}


def test_trino_split_events_are_skipped_and_durations_read_in_every_spelling():
    asm = make("trino").assembler("f")
    assert asm.feed({"queryId": "q", "stageId": "1", "taskId": "1.0"}, "p") == []
    assert asm.skipped == {"split-completed": 1}
    assert duration_ms(1.5) == 1500
    assert duration_ms("1.234000000") == pytest.approx(1234)
    assert duration_ms("PT1M2.5S") == pytest.approx(62500)
    assert duration_ms("450.00ms") == pytest.approx(450)
    assert duration_ms("1.50m") == pytest.approx(90000)
    with pytest.raises(BadRecord):
        duration_ms("soon")


def test_timestamps_in_every_export_spelling():
    utc = T0 + timedelta(seconds=5)
    for v in ("2024-05-15 14:00:05", "2024-05-15T14:00:05Z", "2024-05-15 14:00:05.000000 UTC",
              "2024-05-15 07:00:05.000 -0700", "2024-05-15T07:00:05-07:00", "1.715781605E9", 1715781605,
              1715781605000, "1715781605000000", datetime(2024, 5, 15, 14, 0, 5)):
        assert to_ts(v) == utc, v
    with pytest.raises(BadRecord):
        to_ts("yesterday")


def test_malformed_rows_raise_bad_record():
    fmt = make("snowflake")
    with pytest.raises(BadRecord, match="json-invalid"):
        fmt.parse(b'{"QUERY_ID": \n')
    with pytest.raises(BadRecord, match="json-not-object"):
        fmt.parse(b"[1, 2]\n")
    asm = fmt.assembler("f")
    with pytest.raises(BadRecord, match="no-time"):
        asm.feed({"QUERY_TEXT": "SELECT 1", "EXECUTION_STATUS": "SUCCESS"}, "p")
    with pytest.raises(BadRecord, match="bad-time"):
        asm.feed({"QUERY_TEXT": "SELECT 1", "START_TIME": "noon"}, "p")
    csv_fmt = make("snowflake", "csv")
    asm = csv_fmt.assembler("f")
    asm.feed(csv_fmt.parse(b"QUERY_TEXT,START_TIME\n"), "p")
    with pytest.raises(BadRecord, match="csv-columns"):
        asm.feed(csv_fmt.parse(b"SELECT 1,2024-05-15,extra\n"), "p")
    # a second header (files concatenated) is skipped, not an error
    assert asm.feed(csv_fmt.parse(b"QUERY_TEXT,START_TIME\n"), "p") == []
    assert asm.skipped["csv-header"] == 1


def test_export_options_are_validated_in_the_config(tmp_path):
    path = write_config(tmp_path, [{"name": "sf", "format": "snowflake", "options": {"file_format": "parquet"},
                                    "paths": [str(tmp_path / "*.csv")]}])
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert "file_format" in str(err.value)


# --- end to end: replay through the whole pipeline ------------------------------------------------
@pytest.mark.parametrize("name,ext", [("snowflake", "csv"), ("clickhouse", "jsonl")])
def test_replay_finds_the_looping_user(name, ext, tmp_path):
    shutil.copy(DATA / f"{name}.{ext}", tmp_path / f"history.{ext}")
    cfg_path = write_config(tmp_path, [{"name": "wh", "format": name, "options": {"file_format": ext},
                                        "paths": [str(tmp_path / f"*.{ext}")]}])
    stats = replay(config.load(cfg_path))
    assert stats.queries == 46 and sum(stats.bad_records.values()) == 0
    assert dict(stats.skipped) == EXPECT[name]["skipped"]
    store = Store(config.load(cfg_path).database)
    try:
        found = sorted((f["rule"], f["user"], f["count"], f["distinct_values"], f["varying"]) for f in store.findings())
    finally:
        store.close()
    assert found == [("same-query-different-ids", user(name, "kim"), 25, 25, ["company_id"]),
                     ("same-query-repeated", user(name, "dash"), 20, 1, [])]
    again = replay(config.load(cfg_path))
    assert (again.records, again.queries) == (0, 0)
