"""postgres-jsonlog: framing, parsing, and that jsonlog and csvlog of one real server run give the
same field dicts record for record (so one assembler serves both)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.helpers.postgres import read_records
from usagewatch.config import SAMPLE_LOG
from usagewatch.errors import BadRecord
from usagewatch.sources.formats import formats
from usagewatch.sources.formats.postgres_events import RECORD_KEYS
from usagewatch.sources.formats.postgres_jsonlog import PostgresJsonlog

DATA = Path(__file__).resolve().parents[2] / "data" / "postgres"
SAMPLES = SAMPLE_LOG.parent  # the real PostgreSQL 15 logs shipped with the package
SAMPLE = (SAMPLES / "postgresql.json").read_bytes()

LINE = (
    b'{"timestamp":"2026-11-26 04:20:45.204 UTC","user":"kim","dbname":"wh","pid":7136,'
    b'"remote_host":"127.0.0.1","remote_port":41290,"session_id":"6b07b39d.1be0","line_num":34,'
    b'"ps":"idle","session_start":"2026-11-26 04:20:45 UTC","vxid":"2/17","txid":0,'
    b'"error_severity":"LOG","message":"statement: SELECT \'a\\nb\'",'
    b'"application_name":"usagewatch-tests","backend_type":"client backend","query_id":0}\n'
)


def test_registered_by_name() -> None:
    assert formats.get("postgres-jsonlog") is PostgresJsonlog


def test_frame_one_object_per_line() -> None:
    fmt = PostgresJsonlog()
    data = LINE + LINE + LINE[:50]
    assert fmt.frame(data, at_eof=False) == [len(LINE), 2 * len(LINE)]
    assert fmt.frame(data, at_eof=True) == [len(LINE), 2 * len(LINE), len(data)]
    assert fmt.frame(LINE[:-1], at_eof=False) == []


def test_parse_into_the_common_fields() -> None:
    f = PostgresJsonlog().parse(LINE)
    assert tuple(f) == RECORD_KEYS
    assert f["log_time"] == datetime(2026, 11, 26, 4, 20, 45, 204000, tzinfo=timezone.utc)
    assert (f["user"], f["database"], f["pid"], f["client"]) == ("kim", "wh", 7136, "127.0.0.1:41290")
    assert (f["session_id"], f["session_line"], f["command_tag"]) == ("6b07b39d.1be0", 34, "idle")
    assert f["message"] == "statement: SELECT 'a\nb'"
    assert (f["detail"], f["query"], f["sqlstate"]) == (None, None, "00000")
    assert (f["application"], f["backend_type"], f["query_id"]) == ("usagewatch-tests", "client backend", 0)


def test_unix_socket_client_has_no_port() -> None:
    f = PostgresJsonlog().parse(LINE.replace(b'"remote_host":"127.0.0.1","remote_port":41290,',
                                             b'"remote_host":"[local]",'))
    assert f["client"] == "[local]"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\n", "json-empty"),
    (b'{"timestamp": "2026-11-26 04:20:45.204 UTC", \n', "json-invalid"),
    (b"[1, 2]\n", "json-not-object"),
    (b'{"message": "no time"}\n', "json-time"),
    (b'{"timestamp": "soon"}\n', "json-time"),
    (LINE.replace(b'"pid":7136', b'"pid":"seven"'), "json-field"),
])
def test_parse_rejects_malformed_records(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRecord) as exc:
        PostgresJsonlog().parse(raw)
    assert exc.value.reason == reason


def test_csvlog_and_jsonlog_of_one_run_parse_to_equal_records() -> None:
    json_records, bad = read_records("postgres-jsonlog", SAMPLE)
    csv_records, bad2 = read_records("postgres-csvlog", (SAMPLES / "postgresql.csv").read_bytes())
    assert not bad and not bad2
    assert len(json_records) == len(csv_records) == SAMPLE.count(b"\n")
    # Backends write each message to both logs separately, so the order of different sessions'
    # records may differ between the files; (session_id, session_line) identifies a record.
    def key(rec: tuple[dict, str]) -> tuple[str, int]:
        return rec[0]["session_id"], rec[0]["session_line"]

    for (j, _), (c, _) in zip(sorted(json_records, key=key), sorted(csv_records, key=key), strict=True):
        assert j == c
