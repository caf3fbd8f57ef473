"""postgres-stderr: the prefix compiler, framing (DETAIL/STATEMENT lines, TAB continuations, held
back records, non-log lines), parsing into the common fields, and that the stderr log of a real
PostgreSQL run gives the same events as its csvlog (the shipped sample and a live cluster), plus
filebeat's stderr samples with their own prefixes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.helpers import workload
from tests.helpers.postgres import STDERR_PREFIX, PgCluster, assemble, read_records
from tests.sources.formats.test_postgres_events import check_story, without_position
from usagewatch import config
from usagewatch.config import SAMPLE_LOG
from usagewatch.errors import BadRecord, ConfigError
from usagewatch.sources.formats import formats
from usagewatch.sources.formats.postgres_events import RECORD_KEYS
from usagewatch.sources.formats.postgres_stderr import (
    SECONDARY,
    PostgresStderr,
    StderrOptions,
    compile_prefix,
)

BEATS = Path(__file__).resolve().parents[2] / "data" / "postgres" / "elastic-beats"
SAMPLES = SAMPLE_LOG.parent
SAMPLE = (SAMPLES / "postgresql.log").read_bytes()
OPTS = {"log_line_prefix": STDERR_PREFIX}
# keys the test prefix does not carry (csvlog has them); session_line: %l counts lines, not messages
NOT_IN_PREFIX = {"session_start", "txid", "backend_type", "query_id", "command_tag", "vxid", "leader_pid"}


def fmt(prefix: str = STDERR_PREFIX) -> PostgresStderr:
    return PostgresStderr(StderrOptions(log_line_prefix=prefix))


def split(data: bytes, f: PostgresStderr | None = None, at_eof: bool = True) -> list[bytes]:
    ends = (f or fmt()).frame(data, at_eof)
    return [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def sample_record(needle: bytes) -> bytes:
    """The record of the shipped sample whose first line contains ``needle``."""
    return next(r for r in split(SAMPLE) if needle in r.split(b"\n", 1)[0])


def test_registered_with_options() -> None:
    assert formats.get("postgres-stderr") is PostgresStderr
    assert PostgresStderr.Options is StderrOptions
    assert PostgresStderr().options.log_line_prefix == "%m [%p] "  # PostgreSQL's default


# -- the prefix --

@pytest.mark.parametrize(("prefix", "words"), [
    ("%m [%p] %z ", "unknown escape %z"),
    ("%m %", "lone %"),
    ("[%p] %u@%d ", "no timestamp"),
])
def test_an_invalid_prefix_is_a_sentence(prefix: str, words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        StderrOptions(log_line_prefix=prefix)
    assert words in str(exc.value)


def test_check_reports_a_bad_prefix_at_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database: sqlite:///x.db\nrules: []\nsources:\n  - name: pg\n"
                   "    format: postgres-stderr\n    paths: [/var/log/pg/*.log]\n"
                   "    options:\n      log_line_prefix: '%m [%p] %Z '\n")
    with pytest.raises(ConfigError) as exc:
        config.load(cfg)
    (problem,) = exc.value.problems
    assert problem.line == 8
    assert "sources[0].options.log_line_prefix" in str(problem) and "%Z" in str(problem)


def test_q_makes_the_rest_optional_and_padding_is_stripped() -> None:
    f = fmt("%m [%-6p] %q%-8u@%d ")
    bg = f.parse(b"2026-11-26 04:15:07.123 UTC [42    ] LOG:  checkpoint starting: time\n")
    assert (bg["pid"], bg["user"], bg["message"]) == (42, None, "checkpoint starting: time")
    s = f.parse(b"2026-11-26 04:15:07.123 UTC [42    ] kim     @wh LOG:  statement: SELECT 1\n")
    assert (s["user"], s["database"], s["message"]) == ("kim", "wh", "statement: SELECT 1")


def test_unknown_and_empty_values_are_none_and_epoch_time_is_read() -> None:
    f = fmt("%n %u@%d %a %r ")
    r = f.parse(b"1795666507.250 [unknown]@[unknown] [unknown] [local] LOG:  connection received\n")
    assert (r["user"], r["database"], r["application"], r["client"]) == (None, None, None, "[local]")
    assert r["log_time"].isoformat() == "2026-11-26T04:15:07.250000+00:00"
    assert f.parse(b"1795666507.250 @  ::1(5432) LOG:  x\n")["client"] == "::1:5432"


def test_compiled_once() -> None:
    assert compile_prefix(STDERR_PREFIX) is compile_prefix(STDERR_PREFIX)


# -- framing --

def test_detail_and_statement_lines_belong_to_their_message() -> None:
    error = sample_record(b" ERROR:  syntax error")
    lines = error.splitlines()
    assert len(lines) == 2 and b" STATEMENT:  " in lines[1]
    bind = sample_record(b"LOG:  execute <unnamed>: SELECT o.id")
    assert bind.splitlines()[1].split(b"  ")[0].endswith(b"DETAIL:")


def test_a_record_is_held_until_the_next_one_starts() -> None:
    error = sample_record(b" ERROR:  syntax error")
    first_line = error.split(b"\n", 1)[0] + b"\n"
    nxt = sample_record(b"LOG:  statement: SHOW server_version")
    f = fmt()
    assert f.frame(first_line, at_eof=False) == []  # its STATEMENT line may still come
    assert f.frame(error, at_eof=False) == []
    assert f.frame(error + nxt[:20], at_eof=False) == []  # 20 bytes: cannot tell yet
    assert f.frame(error + nxt[:-1], at_eof=False) == [len(error)]
    assert f.frame(error + nxt, at_eof=True) == [len(error), len(error) + len(nxt)]
    assert f.frame(first_line[:-1], at_eof=True) == [len(first_line) - 1]


def test_multiline_statement_is_one_record() -> None:
    rec = sample_record(b"LOG:  statement: SELECT id, name")
    assert rec.count(b"\n\t") == workload.MULTILINE_SQL.count("\n")
    assert fmt().parse(rec)["message"] == "statement: " + workload.MULTILINE_SQL


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_records_split_across_reads_come_out_whole_and_once(chunk: int) -> None:
    whole, bad = read_records("postgres-stderr", SAMPLE, options=OPTS)
    assert not bad
    assert read_records("postgres-stderr", SAMPLE, chunk=chunk, options=OPTS) == (whole, bad)


def test_lines_that_are_not_log_lines_are_counted_not_fatal() -> None:
    good = sample_record(b" ERROR:  syntax error")
    data = (good + b"pg_ctl: could not start server\n\tits continuation\nExamine the log output.\n"
            + good + b"\n")
    records, bad = read_records("postgres-stderr", data, options=OPTS)
    assert bad == {"stderr-no-prefix": 2}  # one per line that is not a log line
    assert [f["query"] for f, _ in records] == ["SELEC id FROM companies"] * 2  # not spoilt
    assert fmt().frame(b"\tno record before me\n" + good, at_eof=True)[0] == len(b"\tno record before me\n")


def test_a_detail_line_of_another_process_is_an_orphan() -> None:
    f = fmt("%m [%p] ")
    data = (b"2026-11-26 04:15:07.123 UTC [1] LOG:  statement: SELECT 1\n"
            b"2026-11-26 04:15:07.123 UTC [2] DETAIL:  parameters: $1 = '5'\n")
    parts = split(data, f)
    assert len(parts) == 2
    with pytest.raises(BadRecord) as exc:
        f.parse(parts[1])
    assert exc.value.reason == "stderr-orphan"


# -- parsing --

def test_parse_a_real_record_into_the_common_fields() -> None:
    r = fmt().parse(sample_record(b"LOG:  execute <unnamed>: SELECT o.id"))
    assert tuple(r) == RECORD_KEYS
    assert r["log_time"].tzinfo is not None and r["severity"] == "LOG" and r["sqlstate"] == "00000"
    assert (r["user"], r["database"], r["application"]) == ("bi_tool", "warehouse", "Metabase")
    assert r["client"].startswith("127.0.0.1:") and "." in r["session_id"] and r["pid"] > 0
    assert r["detail"] == f"parameters: $1 = '{workload.BI_CUSTOMERS[0]}'"
    assert r["message"] == "execute <unnamed>: " + workload.BI_SQL.replace("%s", "$1")


def test_error_position_moves_from_the_message_to_query_pos() -> None:
    r = fmt().parse(sample_record(b" ERROR:  syntax error"))
    assert (r["severity"], r["sqlstate"]) == ("ERROR", "42601")
    assert (r["message"], r["query_pos"]) == ('syntax error at or near "SELEC"', 1)
    assert r["query"] == workload.SAM_FAILURES[1][0]


def test_verbose_sqlstate_and_location_lines() -> None:
    f = fmt("%m [%p] ")
    data = (BEATS / "postgresql-11.4.log").read_bytes()
    parts = split(data, f)
    assert len(parts) == data.count(b"] LOCATION:  ") == data.count(b"\n") // 2
    recs = [f.parse(p) for p in parts]
    assert all(r["sqlstate"] and not r["message"][:5].isdigit() for r in recs)
    err = next(r for r in recs if r["severity"] == "ERROR")
    assert (err["sqlstate"], err["query"]) == ("42704", "show config_filel;")


# -- real logs --

def stderr_events(data: bytes, **kw: Any) -> tuple[list[Any], Any]:
    records, bad = read_records("postgres-stderr", data, options=OPTS, **kw)
    assert not bad
    return assemble("postgres-stderr", records, options=OPTS)


def test_the_shipped_sample_tells_the_story_like_its_csvlog() -> None:
    events, asm = stderr_events(SAMPLE)
    check_story(events, "warehouse", workload.expected_runs())
    csv_events, _ = assemble("postgres-csvlog", read_records("postgres-csvlog", SAMPLE_LOG.read_bytes())[0])
    assert without_position(events) == without_position(csv_events)


def test_sample_records_equal_the_csvlog_records_where_the_prefix_has_the_field() -> None:
    # background processes stop at %q, so only sessions have a session_id in the stderr log
    stderr = [f for f, _ in read_records("postgres-stderr", SAMPLE, options=OPTS)[0] if f["session_id"]]
    sessions = {f["session_id"] for f in stderr}
    by_session: dict[str, list[dict[str, Any]]] = {}
    for f, _ in read_records("postgres-csvlog", SAMPLE_LOG.read_bytes())[0]:
        if f["session_id"] in sessions:
            by_session.setdefault(f["session_id"], []).append(f)
    assert len(stderr) == sum(map(len, by_session.values()))
    seen: dict[str, int] = {}
    for f in stderr:
        i = seen[f["session_id"]] = seen.get(f["session_id"], -1) + 1
        csv = by_session[f["session_id"]][i]
        assert {k: v for k, v in f.items() if k not in NOT_IN_PREFIX | {"session_line"}} == \
               {k: v for k, v in csv.items() if k not in NOT_IN_PREFIX | {"session_line"}}


def test_workload_on_a_real_cluster(pg_cluster: PgCluster) -> None:
    result = workload.run_workload(pg_cluster)
    (log,) = pg_cluster.log_files("stderr")
    events, asm = stderr_events(log.read_bytes(), chunk=65536, path=str(log))
    check_story(events, result.database, result.runs)
    assert asm.skipped["protocol-step"] > 0
    (csv,) = pg_cluster.log_files("csvlog")
    csv_events, _ = assemble("postgres-csvlog", read_records("postgres-csvlog", csv.read_bytes())[0])
    mine = [e for e in events if e.database == result.database]
    assert without_position(mine) == without_position([e for e in csv_events if e.database == result.database])


BEATS_PREFIXES = {
    "postgresql-10-min-duration-statement.log": "%t ",
    "postgresql-11.4.log": "%m [%p] ",
    "postgresql-9.6-new-timestamp.log": "%t [%p-%l] %q%u@%d ",
    "postgresql-9.6-multi-core.log": "%m [%p-%l] %q%u@%d ",
    "postgresql-9.6-debian-with-slowlog.log": "%m [%p] %q%u@%d ",
    "postgresql-13-log-statement-all.log": "%m [%p] %q%u@%d ",
    "postgresql-13-default.log": "%m [%p-%l] %u@%d ",
}


@pytest.mark.parametrize("name", sorted(BEATS_PREFIXES))
def test_filebeat_samples_frame_where_filebeat_does(name: str) -> None:
    """filebeat makes one record per prefixed line; ours start at those offsets except where a
    DETAIL/STATEMENT/... line joins the message before it."""
    f = fmt(BEATS_PREFIXES[name])
    data = (BEATS / name).read_bytes()
    expected = json.loads((BEATS / f"{name}-expected.json").read_text())
    levels = {e.get("log.offset", e.get("offset")): e.get("log.level", e.get("postgresql.log.level"))
              for e in expected}
    ends = f.frame(data, at_eof=True)
    starts = [0, *ends[:-1]]
    last = max(levels)  # one expected file lists only the first records
    mine = {s for s in starts if s <= last}
    assert mine <= set(levels)
    assert all(levels[o] in SECONDARY for o in set(levels) - mine)
    for s, e in zip(starts, ends, strict=True):
        if s in levels and levels[s] not in SECONDARY:
            try:
                assert f.parse(data[s:e])["severity"] == levels[s]
            except BadRecord as exc:  # one line there has another prefix than the rest
                assert (name, exc.reason) == ("postgresql-13-default.log", "stderr-no-prefix")


def test_filebeat_statement_and_duration_records_make_events() -> None:
    name = "postgresql-13-log-statement-all.log"
    data = (BEATS / name).read_bytes()
    opts = {"log_line_prefix": BEATS_PREFIXES[name]}
    records, bad = read_records("postgres-stderr", data, options=opts)
    events, asm = assemble("postgres-stderr", records, options=opts)
    assert not bad and len(events) == data.count(b"LOG:  statement: ")
    assert sum(e.duration_ms is not None for e in events) == data.count(b"LOG:  duration: ")
    assert {e.user for e in events} == {"postgres"}
    assert sum(e.sql.count("\n") for e in events) == data.count(b"\n\t")
