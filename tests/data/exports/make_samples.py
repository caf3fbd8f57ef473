"""Writes the warehouse query-history samples of this directory (run it to regenerate them).

Each sample is written from the vendor's documented schema (see the format modules) and carries
the 136-story in miniature, on 2024-05-15 from 14:00 UTC:

- kim runs one query 25 times, two minutes apart, each time with another company_id,
- dash runs one identical (multi-line) query 20 times,
- lee's query fails once (its error message spans two lines),
- plus rows that are not query executions, which the formats must skip:
  Snowflake a RUNNING row; BigQuery a LOAD job, a RUNNING job and a SCRIPT parent job;
  Redshift a running query; Trino QueryCreatedEvent records; ClickHouse a QueryStart row for
  every query and a non-initial (shard) query.

JSON lines and CSV of one warehouse hold the same rows, so they must give the same events.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).parent
T0 = datetime(2024, 5, 15, 14, 0, 0, tzinfo=timezone.utc)

KIM_SQL = "SELECT order_id, amount, status FROM orders WHERE company_id = {id} AND created_at >= '2024-01-01'"
DASH_SQL = "SELECT region,\n       count(*) AS orders\nFROM orders\nGROUP BY region"
LEE_SQL = "SELECT * FROM orders WHERE compnay_id = 12"
COMPANY_IDS = [1000 + 7 * i for i in range(25)]


def story() -> list[dict[str, Any]]:
    """The executions, in time order: user, sql, start, duration ms, rows, bytes, error."""
    runs: list[dict[str, Any]] = []
    for i, cid in enumerate(COMPANY_IDS):
        runs.append({"who": "kim", "sql": KIM_SQL.format(id=cid), "start": T0 + timedelta(minutes=2 * i, seconds=5),
                     "ms": 400 + i, "rows": 10 + i, "bytes": 1_048_576 + i, "error": None})
    for i in range(20):
        runs.append({"who": "dash", "sql": DASH_SQL, "start": T0 + timedelta(minutes=2 * i + 1, seconds=30),
                     "ms": 1200, "rows": 4, "bytes": 52_428_800, "error": None})
    runs.append({"who": "lee", "sql": LEE_SQL, "start": T0 + timedelta(minutes=17, seconds=45),
                 "ms": 35, "rows": 0, "bytes": 0, "error": True})
    runs.sort(key=lambda r: r["start"])
    for n, r in enumerate(runs):
        r["n"] = n
        r["end"] = r["start"] + timedelta(milliseconds=r["ms"])
    return runs


def write(name: str, rows: list[dict[str, Any]], columns: list[str] | None, csv_value: Callable[[Any], str] = str) -> None:
    with open(HERE / f"{name}.jsonl", "w", newline="") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n")
    if columns is None:
        return
    with open(HERE / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else csv_value(r[c]) for c in columns])


# --- Snowflake: ACCOUNT_USAGE.QUERY_HISTORY, START_TIME in the default TIMESTAMP_LTZ output format --
def sf_time(t: datetime) -> str:
    local = t.astimezone(timezone(timedelta(hours=-7)))
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d} -0700"


def snowflake() -> None:
    cols = ["QUERY_ID", "QUERY_TEXT", "DATABASE_NAME", "SCHEMA_NAME", "QUERY_TYPE", "SESSION_ID", "USER_NAME",
            "ROLE_NAME", "WAREHOUSE_NAME", "EXECUTION_STATUS", "ERROR_CODE", "ERROR_MESSAGE", "START_TIME",
            "END_TIME", "TOTAL_ELAPSED_TIME", "BYTES_SCANNED", "ROWS_PRODUCED"]
    rows = []
    for r in story():
        rows.append({
            "QUERY_ID": f"01b4c2d1-0000-6e3f-0000-0004a7b2{r['n']:04x}", "QUERY_TEXT": r["sql"],
            "DATABASE_NAME": "ANALYTICS", "SCHEMA_NAME": "PUBLIC", "QUERY_TYPE": "UNKNOWN" if r["error"] else "SELECT",
            "SESSION_ID": {"kim": 4711001, "dash": 4711002, "lee": 4711003}[r["who"]], "USER_NAME": r["who"].upper(),
            "ROLE_NAME": "ANALYST", "WAREHOUSE_NAME": "REPORTING_WH",
            "EXECUTION_STATUS": "FAIL" if r["error"] else "SUCCESS",
            "ERROR_CODE": "000904" if r["error"] else None,
            "ERROR_MESSAGE": "SQL compilation error: error line 1 at position 27\ninvalid identifier 'COMPNAY_ID'" if r["error"] else None,
            "START_TIME": sf_time(r["start"]), "END_TIME": sf_time(r["end"]), "TOTAL_ELAPSED_TIME": r["ms"],
            "BYTES_SCANNED": r["bytes"], "ROWS_PRODUCED": r["rows"],
        })
    rows.insert(30, {"QUERY_ID": "01b4c2d1-0000-6e3f-0000-0004a7b2ffff", "QUERY_TEXT": "SELECT count(*) FROM events",
                     "DATABASE_NAME": "ANALYTICS", "SCHEMA_NAME": "PUBLIC", "QUERY_TYPE": "SELECT", "SESSION_ID": 4711009,
                     "USER_NAME": "ETL", "ROLE_NAME": "LOADER", "WAREHOUSE_NAME": "ETL_WH", "EXECUTION_STATUS": "RUNNING",
                     "START_TIME": sf_time(T0 + timedelta(minutes=30)), "TOTAL_ELAPSED_TIME": 0})
    write("snowflake", rows, cols)


# --- BigQuery: INFORMATION_SCHEMA.JOBS via EXPORT DATA (JSON: INT64 as strings, nested RECORDs;
# CSV: RECORDs as TO_JSON_STRING) ----------------------------------------------------------------
def bq_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"


def bigquery() -> None:
    cols = ["job_id", "creation_time", "start_time", "end_time", "project_id", "user_email", "job_type",
            "statement_type", "state", "query", "total_bytes_processed", "total_slot_ms", "cache_hit",
            "reservation_id", "session_info", "error_result"]
    rows: list[dict[str, Any]] = []
    for r in story():
        err = {"reason": "invalidQuery", "location": "query",
               "message": "Unrecognized name: compnay_id; Did you mean company_id?\nat [1:28]"} if r["error"] else None
        rows.append({
            "job_id": f"bquxjob_5e1d{r['n']:04d}_18f7a2c3b4d", "creation_time": bq_time(r["start"] - timedelta(milliseconds=20)),
            "start_time": bq_time(r["start"]), "end_time": bq_time(r["end"]), "project_id": "acme-dw",
            "user_email": f"{r['who']}@acme.example", "job_type": "QUERY",
            "statement_type": "SELECT", "state": "DONE", "query": r["sql"],
            "total_bytes_processed": str(r["bytes"]), "total_slot_ms": str(r["ms"] * 3), "cache_hit": False,
            "reservation_id": "acme-dw:US.analytics", "session_info": None, "error_result": err,
        })
    load = {"job_id": "bquxjob_load_0001", "creation_time": bq_time(T0 + timedelta(minutes=3)),
            "start_time": bq_time(T0 + timedelta(minutes=3)), "end_time": bq_time(T0 + timedelta(minutes=4)),
            "project_id": "acme-dw", "user_email": "loader@acme-dw.iam.gserviceaccount.com", "job_type": "LOAD",
            "state": "DONE", "total_bytes_processed": "0"}
    running = {"job_id": "bquxjob_run_0001", "creation_time": bq_time(T0 + timedelta(minutes=55)),
               "start_time": bq_time(T0 + timedelta(minutes=55)), "project_id": "acme-dw", "user_email": "kim@acme.example",
               "job_type": "QUERY", "statement_type": "SELECT", "state": "RUNNING", "query": "SELECT count(*) FROM events"}
    script = {"job_id": "script_job_0001", "creation_time": bq_time(T0 + timedelta(minutes=40)),
              "start_time": bq_time(T0 + timedelta(minutes=40)), "end_time": bq_time(T0 + timedelta(minutes=40, seconds=2)),
              "project_id": "acme-dw", "user_email": "etl@acme.example", "job_type": "QUERY", "statement_type": "SCRIPT",
              "state": "DONE", "query": "DECLARE d DATE DEFAULT CURRENT_DATE();\nDELETE FROM staging.t WHERE day = d;",
              "total_bytes_processed": "0", "session_info": {"session_id": "CgwKBmFjbWUtZHcQARoI"}}
    rows.insert(5, load)
    rows.insert(40, script)
    rows.append(running)
    write("bigquery", rows, cols, lambda v: json.dumps(v) if isinstance(v, dict) else ("true" if v is True else "false" if v is False else str(v)))


# --- Redshift: SYS_QUERY_HISTORY joined with pg_user (usename), UNLOAD ... FORMAT JSON / CSV HEADER --
def rs_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")  # timestamp without time zone, UTC


def redshift() -> None:
    cols = ["user_id", "usename", "query_id", "transaction_id", "session_id", "database_name", "query_type", "status",
            "result_cache_hit", "start_time", "end_time", "elapsed_time", "queue_time", "execution_time",
            "returned_rows", "returned_bytes", "query_text", "error_message"]
    uid = {"kim": 101, "dash": 102, "lee": 103}
    rows = []
    for r in story():
        rows.append({
            "user_id": uid[r["who"]], "usename": r["who"], "query_id": 880000 + r["n"], "transaction_id": 990000 + r["n"],
            "session_id": 1073800000 + uid[r["who"]], "database_name": "dev", "query_type": "SELECT",
            "status": "failed" if r["error"] else "success", "result_cache_hit": False,
            "start_time": rs_time(r["start"]), "end_time": rs_time(r["end"]), "elapsed_time": r["ms"] * 1000,
            "queue_time": 0, "execution_time": r["ms"] * 1000 - 500, "returned_rows": r["rows"],
            "returned_bytes": r["rows"] * 64, "query_text": r["sql"] + "   ",  # character(n) is blank-padded
            "error_message": "column \"compnay_id\" does not exist in orders" if r["error"] else None,
        })
    rows.append({"user_id": 104, "usename": "etl", "query_id": 889999, "transaction_id": 999999, "session_id": 1073800104,
                 "database_name": "dev", "query_type": "INSERT", "status": "running", "result_cache_hit": False,
                 "start_time": rs_time(T0 + timedelta(minutes=50)), "elapsed_time": 0,
                 "query_text": "INSERT INTO daily SELECT * FROM staging"})
    write("redshift", rows, cols, lambda v: "t" if v is True else "f" if v is False else str(v))


# --- Trino: QueryCompletedEvent (and QueryCreatedEvent) JSON as the HTTP event listener sends it ----
def trino_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def trino() -> None:
    rows: list[dict[str, Any]] = []
    for r in story():
        qid = f"20240515_{r['start'].strftime('%H%M%S')}_{r['n']:05d}_x7k2p"
        context = {"user": r["who"], "principal": r["who"], "source": "trino-cli" if r["who"] != "dash" else "superset",
                   "catalog": "hive", "schema": "sales", "remoteClientAddress": "10.1.2.3", "serverVersion": "448",
                   "environment": "production", "queryType": "SELECT", "retryPolicy": "NONE"}
        metadata = {"queryId": qid, "query": r["sql"], "queryState": "FAILED" if r["error"] else "FINISHED",
                    "uri": f"http://trino.acme.example:8080/v1/query/{qid}", "tables": [], "routines": []}
        if r["n"] % 10 == 0:
            rows.append({"createTime": trino_time(r["start"]), "context": context,
                         "metadata": {**metadata, "queryState": "QUEUED"}})
        event: dict[str, Any] = {
            "metadata": metadata,
            "statistics": {"cpuTime": r["ms"] / 2000, "wallTime": r["ms"] / 1000, "queuedTime": 0.001,
                           "physicalInputBytes": r["bytes"], "physicalInputRows": 1000, "totalBytes": r["bytes"] + 10,
                           "totalRows": 1000, "outputBytes": r["rows"] * 64, "outputRows": r["rows"],
                           "writtenBytes": 0, "writtenRows": 0, "completedSplits": 4, "complete": True},
            "context": context,
            "ioMetadata": {"inputs": [], "output": None},
            "warnings": [],
            "createTime": trino_time(r["start"]),
            "executionStartTime": trino_time(r["start"] + timedelta(milliseconds=5)),
            "endTime": trino_time(r["end"]),
        }
        if r["error"]:
            event["failureInfo"] = {"errorCode": {"code": 47, "name": "COLUMN_NOT_FOUND", "type": "USER_ERROR"},
                                    "failureType": "io.trino.spi.TrinoException",
                                    "failureMessage": "line 1:28: Column 'compnay_id' cannot be resolved",
                                    "failuresJson": "{}"}
        rows.append(event)
    write("trino", rows, None)


# --- ClickHouse: system.query_log, FORMAT JSONEachRow (64-bit integers quoted) / CSVWithNames ------
def ch_time(t: datetime, micro: bool = False) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f" if micro else "%Y-%m-%d %H:%M:%S")


def clickhouse() -> None:
    cols = ["type", "event_time", "query_start_time", "query_start_time_microseconds", "query_duration_ms", "read_rows",
            "read_bytes", "result_rows", "user", "query_id", "query", "current_database", "exception_code",
            "exception", "query_kind", "is_initial_query", "client_name", "address"]
    rows: list[dict[str, Any]] = []
    for r in story():
        qid = f"6f0c2a4e-1b7d-4c21-9e35-{r['n']:012x}"
        base = {"query_start_time": ch_time(r["start"]), "query_start_time_microseconds": ch_time(r["start"], True),
                "user": r["who"], "query_id": qid, "query": r["sql"], "current_database": "sales",
                "query_kind": "Select", "is_initial_query": 1, "client_name": "ClickHouse client",
                "address": "::ffff:10.1.2.3", "exception": ""}
        rows.append({"type": "QueryStart", "event_time": ch_time(r["start"]), "query_duration_ms": "0", "read_rows": "0",
                     "read_bytes": "0", "result_rows": "0", "exception_code": 0, **base})
        if r["error"]:
            rows.append({**base, "type": "ExceptionWhileProcessing", "event_time": ch_time(r["end"]),
                         "query_duration_ms": str(r["ms"]), "read_rows": "0", "read_bytes": "0", "result_rows": "0",
                         "exception_code": 47,
                         "exception": "Code: 47. DB::Exception: Missing columns: 'compnay_id'\nwhile processing query. (UNKNOWN_IDENTIFIER)"})
        else:
            rows.append({**base, "type": "QueryFinish", "event_time": ch_time(r["end"]), "query_duration_ms": str(r["ms"]),
                         "read_rows": "1000", "read_bytes": str(r["bytes"]), "result_rows": str(r["rows"]),
                         "exception_code": 0})
        if r["n"] == 3:  # the shard part of a distributed query
            rows.append({**rows[-1], "query_id": qid + "-shard", "is_initial_query": 0,
                         "query": "SELECT order_id FROM orders_local WHERE company_id = 1007"})
    write("clickhouse", rows, cols)


if __name__ == "__main__":
    snowflake()
    bigquery()
    redshift()
    trino()
    clickhouse()
