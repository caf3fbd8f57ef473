"""postgres-csvlog: framing (records with newlines inside quotes, half-written records) and parsing
of real PostgreSQL 11/13/15 csvlog records into the common field dict."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import workload
from tests.helpers.postgres import read_records
from usagewatch.config import SAMPLE_LOG
from usagewatch.errors import BadRecord
from usagewatch.sources.formats import formats
from usagewatch.sources.formats.postgres_csvlog import PostgresCsvlog
from usagewatch.sources.formats.postgres_events import RECORD_KEYS, parse_log_time

DATA = Path(__file__).resolve().parents[2] / "data" / "postgres"
SAMPLES = SAMPLE_LOG.parent  # the real PostgreSQL 15 logs shipped with the package
SAMPLE = (SAMPLES / "postgresql.csv").read_bytes()
ELASTIC = sorted((DATA / "elastic-beats").glob("*.csv.log"))

PG15_LINE = (
    b'2026-11-26 04:20:45.203 UTC,"kim","wh",7136,"127.0.0.1:41290",6b07b39d.1be0,21,"SELECT",'
    b'2026-11-26 04:20:45 UTC,2/12,0,LOG,00000,"execute <unnamed>: SELECT * FROM t WHERE id = $1 '
    b'AND s = $2","parameters: $1 = \'3\', $2 = NULL",,,,,,,,"usagewatch-tests","client backend",,0\n'
)


def record_with_inner_newline() -> bytes:
    """The real csvlog record of the workload's multi-line query (SQL with a quoted newline)."""
    start = SAMPLE.index(b"statement: SELECT id, name\nFROM companies")
    start = SAMPLE.rindex(b"\n", 0, start) + 1
    end = SAMPLE.index(b"\n20", start + 1) + 1  # next record starts with the year
    return SAMPLE[start:end]


def test_registered_by_name() -> None:
    assert formats.get("postgres-csvlog") is PostgresCsvlog


def test_frame_waits_for_the_rest_of_a_record_split_inside_quotes() -> None:
    fmt = PostgresCsvlog()
    rec = record_with_inner_newline()
    assert rec.count(b"\n") > 2  # several lines, one record
    inner = rec.index(b"\n")
    assert fmt.frame(rec[: inner + 1], at_eof=False) == []
    assert fmt.frame(rec[:-1], at_eof=False) == []  # all but the final newline
    assert fmt.frame(rec, at_eof=False) == [len(rec)]
    assert fmt.frame(rec + PG15_LINE[:40], at_eof=False) == [len(rec)]


def test_frame_doubled_quotes_keep_parity() -> None:
    rec = b'a,"say ""hi""\nthen ""bye""",c\n'
    assert PostgresCsvlog().frame(rec + rec, at_eof=False) == [len(rec), 2 * len(rec)]


def test_frame_returns_an_unterminated_tail_only_at_eof() -> None:
    fmt = PostgresCsvlog()
    data = PG15_LINE + PG15_LINE[:-1]
    assert fmt.frame(data, at_eof=False) == [len(PG15_LINE)]
    assert fmt.frame(data, at_eof=True) == [len(PG15_LINE), len(data)]
    assert fmt.frame(b"", at_eof=True) == []


@pytest.mark.parametrize("path", ELASTIC, ids=lambda p: p.name)
def test_frame_matches_filebeat_record_offsets(path: Path) -> None:
    """filebeat's own expected output says where each record of these PG 11/13 logs starts."""
    expected = json.loads(path.with_name(path.name + "-expected.json").read_text())
    starts = [e.get("log.offset", e.get("offset")) for e in expected]
    data = path.read_bytes()
    assert PostgresCsvlog().frame(data, at_eof=True) == starts[1:] + [len(data)]


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_chunked_reading_gives_the_same_records(chunk: int) -> None:
    whole, bad = read_records("postgres-csvlog", SAMPLE)
    chunked, bad2 = read_records("postgres-csvlog", SAMPLE, chunk=chunk)
    assert not bad and not bad2
    assert chunked == whole
    assert len(whole) == SAMPLE.count(b"\n2026-") + 1


def test_parse_pg15_record_into_the_common_fields() -> None:
    f = PostgresCsvlog().parse(PG15_LINE)
    assert tuple(f) == RECORD_KEYS
    assert f["log_time"] == datetime(2026, 11, 26, 4, 20, 45, 203000, tzinfo=timezone.utc)
    assert (f["user"], f["database"], f["pid"], f["client"]) == ("kim", "wh", 7136, "127.0.0.1:41290")
    assert (f["session_id"], f["session_line"], f["command_tag"]) == ("6b07b39d.1be0", 21, "SELECT")
    assert (f["severity"], f["sqlstate"], f["txid"], f["vxid"]) == ("LOG", "00000", 0, "2/12")
    assert f["message"] == "execute <unnamed>: SELECT * FROM t WHERE id = $1 AND s = $2"
    assert f["detail"] == "parameters: $1 = '3', $2 = NULL"
    assert (f["hint"], f["context"], f["query"], f["query_pos"]) == (None, None, None, None)
    assert (f["application"], f["backend_type"], f["leader_pid"], f["query_id"]) == (
        "usagewatch-tests", "client backend", None, 0)


def test_parse_keeps_multiline_quoted_sql() -> None:
    f = PostgresCsvlog().parse(record_with_inner_newline())
    assert f["message"] == "statement: " + workload.MULTILINE_SQL


def test_parse_error_record_has_query_and_position() -> None:
    records, _ = read_records("postgres-csvlog", SAMPLE)
    syntax = [f for f, _ in records if f["sqlstate"] == "42601"]
    assert len(syntax) == 1
    assert syntax[0]["severity"] == "ERROR"
    assert syntax[0]["query"] == "SELEC id FROM companies"
    assert syntax[0]["query_pos"] == 1


@pytest.mark.parametrize("path", ELASTIC, ids=lambda p: p.name)
def test_parse_pg11_and_pg13_column_counts(path: Path) -> None:
    records, bad = read_records("postgres-csvlog", path.read_bytes())
    assert not bad
    assert records
    pg13 = "postgresql-13" in path.name
    for f, _ in records:
        assert f["log_time"].tzinfo is not None
        assert (f["backend_type"] is not None) == pg13 or f["backend_type"] is None
        assert f["query_id"] is None and f["leader_pid"] is None
    if pg13:
        assert any(f["backend_type"] == "client backend" for f, _ in records)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\n", "csv-empty"),
    (b"a,b,c\n", "csv-columns"),
    (PG15_LINE.rstrip(b"\n") + b",extra,extra\n", "csv-columns"),
    (b"yesterday" + PG15_LINE[23:], "csv-time"),
    (PG15_LINE.replace(b",7136,", b",pid,"), "csv-field"),
])
def test_parse_rejects_malformed_records(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRecord) as exc:
        PostgresCsvlog().parse(raw)
    assert exc.value.reason == reason


def test_parse_replaces_invalid_utf8() -> None:
    f = PostgresCsvlog().parse(PG15_LINE.replace(b"SELECT *", b"SELECT \xff"))
    assert f["message"].startswith("execute <unnamed>: SELECT \ufffd FROM")


@pytest.mark.parametrize(("text", "offset", "known"), [
    ("2026-11-26 04:15:07.123 UTC", timedelta(0), True),
    ("2026-11-26 04:15:07.123 GMT", timedelta(0), True),
    ("2026-11-26 04:15:07.123 CEST", timedelta(hours=2), True),
    ("2021-01-04 00:51:56 EST", timedelta(hours=-5), True),
    ("2026-11-26 04:15:07.123 +0530", timedelta(hours=5, minutes=30), True),
    ("2026-11-26 04:15:07.123 -03", timedelta(hours=-3), True),
    ("2026-11-26 04:15:07.123 XYZT", timedelta(0), False),
    ("2026-11-26 04:15:07.123", timedelta(0), False),
])
def test_timestamps_are_aware(text: str, offset: timedelta, known: bool) -> None:
    dt, ok = parse_log_time(text)
    assert dt.utcoffset() == offset
    assert ok is known
    assert dt.replace(tzinfo=None, microsecond=0) == datetime.fromisoformat(text[:19])


def test_unknown_zone_is_read_as_utc_and_counted() -> None:
    fmt = PostgresCsvlog()
    f = fmt.parse(PG15_LINE.replace(b".203 UTC", b".203 XYZT"))
    assert f["log_time"].utcoffset() == timedelta(0)
    assert fmt.notes["tz-assumed-utc"] == 1
    fmt.parse(PG15_LINE)
    assert fmt.notes["tz-assumed-utc"] == 1
