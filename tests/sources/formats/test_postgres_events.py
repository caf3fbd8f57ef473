"""The PostgreSQL assembler: records -> one QueryEvent per execution.

Hand-made records use the exact message texts a PostgreSQL 15 server wrote (see the sample logs);
the end-to-end tests run the workload on a real cluster and read its csvlog and jsonlog.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import workload
from tests.helpers.postgres import PgCluster, assemble, read_records
from usagewatch.config import SAMPLE_LOG
from usagewatch.model import QueryEvent
from usagewatch.sources.formats.postgres_events import (
    RECORD_KEYS,
    PostgresAssembler,
    parse_params,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "postgres"
SAMPLES = SAMPLE_LOG.parent  # the real PostgreSQL 15 logs shipped with the package
SAMPLES = Path(__file__).resolve().parents[3] / "usagewatch" / "samples"
T0 = datetime(2026, 11, 26, 4, 15, 7, tzinfo=timezone.utc)
BI_SQL = "SELECT o.id FROM orders o WHERE o.customer_id = $1"
TABLES = "parameters: $1 = 'tables'"


def rec(message: str, *, severity: str = "LOG", session: str = "s1", detail: str | None = None,
        query: str | None = None, sqlstate: str = "00000", tag: str | None = "SELECT",
        t: float = 0.0) -> dict[str, Any]:
    fields: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    fields.update(log_time=T0 + timedelta(seconds=t), user="kim", database="wh", pid=7,
                  client="127.0.0.1:41290", session_id=session, session_line=1, command_tag=tag,
                  severity=severity, sqlstate=sqlstate, message=message, detail=detail,
                  query=query, application="psql", backend_type="client backend")
    return fields


def feed_all(asm: PostgresAssembler, records: list[dict[str, Any]]) -> list[QueryEvent]:
    return [ev for i, r in enumerate(records) for ev in asm.feed(r, f"f:{i}")]


def test_statement_and_its_duration_are_one_event() -> None:
    asm = PostgresAssembler("src")
    assert asm.feed(rec("statement: SELECT 1", tag="idle"), "f:10") == []
    (ev,) = asm.feed(rec("duration: 0.123 ms", t=0.5), "f:20")
    assert (ev.sql, ev.duration_ms, ev.ts, ev.position) == ("SELECT 1", 0.123, T0, "f:20")
    assert (ev.source, ev.user, ev.database, ev.session, ev.application, ev.client, ev.dialect) == (
        "src", "kim", "wh", "s1", "psql", "127.0.0.1:41290", "postgres")
    assert ev.params == () and ev.error_code is None
    assert asm.flush() == [] and not asm.skipped


def test_sessions_are_assembled_separately() -> None:
    events = feed_all(PostgresAssembler("src"), [
        rec("statement: SELECT 'a'", session="A"), rec("statement: SELECT 'b'", session="B"),
        rec("duration: 2.0 ms", session="B"), rec("duration: 1.0 ms", session="A"),
    ])
    assert [(e.session, e.sql, e.duration_ms) for e in events] == [
        ("B", "SELECT 'b'", 2.0), ("A", "SELECT 'a'", 1.0)]


def test_extended_protocol_is_one_execution_with_bind_values() -> None:
    params = "parameters: $1 = '178', $2 = NULL"
    asm = PostgresAssembler("src")
    events = feed_all(asm, [
        rec(f"duration: 0.115 ms  parse <unnamed>: {BI_SQL}", tag="PARSE"),
        rec(f"duration: 0.099 ms  bind <unnamed>: {BI_SQL}", tag="BIND", detail=params),
        rec(f"execute <unnamed>: {BI_SQL}", detail=params, t=1),
        rec("duration: 0.011 ms", t=2),
        # psycopg's prepared statement: parsed once, then only bind + execute per run
        rec(f"duration: 0.019 ms  parse _pg3_0: {BI_SQL}", tag="PARSE"),
        rec(f"duration: 0.031 ms  bind _pg3_0: {BI_SQL}", tag="BIND", detail="parameters: $1 = '179'"),
        rec(f"execute _pg3_0: {BI_SQL}", detail="parameters: $1 = '179'", t=3),
        rec("duration: 0.009 ms", t=4),
        rec(f"duration: 0.023 ms  bind _pg3_0: {BI_SQL}", tag="BIND", detail="parameters: $1 = '180'"),
        rec(f"execute _pg3_0: {BI_SQL}", detail="parameters: $1 = '180'", t=5),
        rec("duration: 0.009 ms", t=6),
    ])
    assert [(e.sql, e.params, e.duration_ms, e.ts) for e in events] == [
        (BI_SQL, ("178", None), 0.011, T0 + timedelta(seconds=1)),
        (BI_SQL, ("179",), 0.009, T0 + timedelta(seconds=3)),
        (BI_SQL, ("180",), 0.009, T0 + timedelta(seconds=5)),
    ]
    assert asm.skipped == Counter({"protocol-step": 5})


def test_min_duration_statement_alone_gives_complete_events() -> None:
    asm = PostgresAssembler("src")
    events = feed_all(asm, [
        rec("duration: 7.775 ms  parse py:0x7f: SELECT * FROM t WHERE n = $1", tag="PARSE"),
        rec("duration: 4.091 ms  bind py:0x7f: SELECT * FROM t WHERE n = $1", detail=TABLES),
        rec("duration: 0.455 ms  execute py:0x7f: SELECT * FROM t WHERE n = $1", detail=TABLES),
        rec("duration: 148.472 ms  statement: select generate_series(1, 10);"),
        rec("duration: 1.0 ms  execute S_1/C_2: SELECT $1", detail="parameters: $1 = 'x'"),
    ])
    assert [(e.sql, e.params, e.duration_ms, e.position) for e in events] == [
        ("SELECT * FROM t WHERE n = $1", ("tables",), 0.455, "f:2"),
        ("select generate_series(1, 10);", (), 148.472, "f:3"),
        ("SELECT $1", ("x",), 1.0, "f:4"),
    ]
    assert asm.skipped == Counter({"protocol-step": 2})


def test_next_statement_or_disconnection_releases_an_event_without_duration() -> None:
    asm = PostgresAssembler("src")
    events = feed_all(asm, [
        rec("statement: BEGIN"), rec("statement: SELECT 2"),
        rec("disconnection: session time: 0:00:00.005 user=kim database=wh host=127.0.0.1", tag="idle"),
    ])
    assert [(e.sql, e.duration_ms, e.position) for e in events] == [
        ("BEGIN", None, "f:0"), ("SELECT 2", None, "f:1")]
    assert asm.flush() == []


def test_error_marks_the_pending_statement() -> None:
    asm = PostgresAssembler("src")
    (ev,) = feed_all(asm, [
        rec("statement: SELECT 1/0", tag="idle"),
        rec("division by zero", severity="ERROR", sqlstate="22012", query="SELECT 1/0", t=1),
    ])
    assert (ev.sql, ev.error_code, ev.error_message, ev.duration_ms, ev.ts, ev.position) == (
        "SELECT 1/0", "22012", "division by zero", None, T0, "f:1")
    assert asm.flush() == []


def test_error_with_a_query_and_nothing_pending_is_an_event() -> None:
    asm = PostgresAssembler("src")
    events = feed_all(asm, [
        rec("statement: SELECT 1", tag="idle"),  # logged without a duration (log_statement only)
        rec('syntax error at or near "SELEC"', severity="ERROR", sqlstate="42601",
            query="SELEC 1", tag="idle", t=1),
        rec("password authentication failed for user \"x\"", severity="FATAL", sqlstate="28P01"),
    ])
    assert [(e.sql, e.error_code, e.ts) for e in events] == [
        ("SELECT 1", None, T0), ("SELEC 1", "42601", T0 + timedelta(seconds=1))]
    assert asm.skipped == Counter({"error-without-query": 1})


def test_fatal_while_idle_does_not_blame_the_last_statement() -> None:
    """PostgreSQL 13 csvlog (elastic/beats sample): BEGIN, then an idle-in-transaction timeout."""
    data = (DATA / "elastic-beats" / "postgresql-13-error-code.csv.log").read_bytes()
    events, asm = assemble("postgres-csvlog", read_records("postgres-csvlog", data)[0])
    assert [(e.sql, e.error_code) for e in events] == [
        ("SET idle_in_transaction_session_timeout = 50;", None), ("BEGIN;", None)]


def test_other_records_are_skipped_and_counted() -> None:
    asm = PostgresAssembler("src")
    events = feed_all(asm, [
        rec("connection received: host=127.0.0.1 port=41280", tag=None),
        rec("checkpoint starting: time", session="cp"),
        rec("duration: 0.5 ms"),  # nothing pending
        rec("duration: 1.0 ms  plan:\nQuery Text: SELECT 1"),  # auto_explain
        rec("execute fetch from S_1/C_2: SELECT 1"),
        rec("table \"x\" does not exist, skipping", severity="NOTICE"),
        rec(""), rec("duration: soon ms"), rec("execute without-colon"),
        rec("statement: SELECT 1", severity=None),  # type: ignore[arg-type]
    ])
    assert events == []
    assert asm.skipped == Counter({"not-a-query": 8, "orphan-duration": 1, "protocol-step": 1})


@pytest.mark.parametrize(("detail", "values"), [
    ("parameters: $1 = '178'", ("178",)),
    ("parameters: $1 = '178', $2 = NULL, $3 = ''", ("178", None, "")),
    ("parameters: $1 = 'it''s, $2 = x', $2 = 'b'", ("it's, $2 = x", "b")),
    ("parameters: $1 = 'line\nbreak'", ("line\nbreak",)),
    ("parameters: $1 = '12345...'", ("12345...",)),
    ("parameters: $1 = 'unterminated", ("unterminated",)),
    ("prepare: PREPARE q AS SELECT $1", ()),
    (None, ()),
])
def test_parse_params(detail: str | None, values: tuple[str | None, ...]) -> None:
    assert parse_params(detail) == values


def _sample_records(kind: str) -> list[tuple[dict[str, Any], str]]:
    name = {"postgres-csvlog": "postgresql.csv", "postgres-jsonlog": "postgresql.json"}[kind]
    records, bad = read_records(kind, (SAMPLES / name).read_bytes(), path=name)
    assert not bad
    return records


@pytest.mark.parametrize("kind", ["postgres-csvlog", "postgres-jsonlog"])
def test_state_restore_mid_stream_gives_the_same_events(kind: str) -> None:
    records = _sample_records(kind)
    expected, _ = assemble(kind, records)
    checked_pending = 0
    for cut in range(0, len(records) + 1, 23):
        first = PostgresAssembler("test")
        events = [ev for f, pos in records[:cut] for ev in first.feed(f, pos)]
        state = json.loads(json.dumps(first.state()))  # the checkpoint is JSON
        checked_pending += len(state["pending"])
        second = PostgresAssembler("test")
        second.restore(state)
        events += [ev for f, pos in records[cut:] for ev in second.feed(f, pos)]
        events += second.flush()
        assert events == expected, f"cut at record {cut}"
    assert checked_pending > 0  # some cuts really split a statement from its duration


def events_by_user(events: list[QueryEvent], database: str) -> dict[str, list[QueryEvent]]:
    out: dict[str, list[QueryEvent]] = defaultdict(list)
    for ev in events:
        if ev.database == database and ev.user in workload.USERS:
            out[ev.user].append(ev)
    return out


def check_story(events: list[QueryEvent], database: str, runs: Counter[str]) -> None:
    """Per-user executions and values as the workload made them."""
    by_user = events_by_user(events, database)
    assert Counter({u: len(evs) for u, evs in by_user.items()}) == runs
    kim = by_user["kim"]
    shapes = [re.sub(r"\s+", " ", e.sql.lower()) for e in kim]
    assert all("from orders where company_id = " in s for s in shapes)
    assert [re.search(r"company_id = (\d+)", s).group(1) for s in shapes] == [  # type: ignore[union-attr]
        str(v) for v in workload.KIM_IDS]
    assert all(e.params == () and e.duration_ms is not None for e in kim)
    bi = by_user["bi_tool"]
    assert [e.params for e in bi] == [(str(v),) for v in workload.BI_CUSTOMERS]
    assert len({e.sql for e in bi}) == 1 and "$1" in bi[0].sql
    assert len({e.sql for e in by_user["dash"]}) == 1
    assert len({e.sql for e in by_user["lee"]}) == len(workload.LEE_IDS)
    assert len({e.sql for e in by_user["ann"]}) == len(workload.ANN_CUSTOMERS)
    assert workload.MULTILINE_SQL in {e.sql for e in by_user["sam"]}
    errors = {u: sorted(e.error_code for e in evs if e.error_code) for u, evs in by_user.items()}
    assert errors == {u: sorted(workload.SAM_FAILURES[i][1] for i in range(3)) if u == "sam"
                      else (["22P02"] if u == "ops" else []) for u in runs}
    assert all(e.duration_ms is None for evs in by_user.values() for e in evs if e.error_code)


def without_position(events: list[QueryEvent]) -> list[QueryEvent]:
    return sorted((dataclasses.replace(e, position="") for e in events), key=lambda e: (e.ts, e.session, e.sql))


def test_sample_logs_tell_the_story() -> None:
    """The fixed logs (real PostgreSQL 15 output of the workload) give the documented counts."""
    results = {}
    for kind, name in (("postgres-csvlog", "postgresql.csv"), ("postgres-jsonlog", "postgresql.json")):
        records, bad = read_records(kind, (SAMPLES / name).read_bytes())
        assert not bad
        events, _ = assemble(kind, records)
        check_story(events, "warehouse", workload.expected_runs())
        results[kind] = without_position(events)
    assert results["postgres-csvlog"] == results["postgres-jsonlog"]


def test_workload_on_a_real_cluster(pg_cluster: PgCluster) -> None:
    result = workload.run_workload(pg_cluster)
    assert result.runs == workload.expected_runs()
    results = {}
    for kind in ("csvlog", "jsonlog"):
        (path,) = pg_cluster.log_files(kind)
        data = path.read_bytes()
        records, bad = read_records(f"postgres-{kind}", data, chunk=65536, path=str(path))
        assert not bad
        events, asm = assemble(f"postgres-{kind}", records)
        check_story(events, result.database, result.runs)
        assert asm.skipped["protocol-step"] > 0 and asm.skipped["not-a-query"] > 0
        results[kind] = without_position([e for e in events if e.database == result.database])
    assert results["csvlog"] == results["jsonlog"]
