"""mysql-slow: framing holds an entry until the next header, every server variant parses, and a real
MariaDB's slow log of the workload gives exactly the workload's executions."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers.mysql_workload import BI_CUSTOMERS, KIM_IDS, expected_runs
from tests.helpers.postgres import assemble, read_records
from usagewatch.sources.formats import formats
from usagewatch.sources.formats.mysql_common import MysqlOptions

DATA = Path(__file__).parents[2] / "data" / "mysql" / "elastic-beats"
PERCONA = Path(__file__).parents[3].parent / "shared" / "samples" / "percona-toolkit" / "slowlogs"
UTC = timezone.utc

TWO = (b"# Time: 261126  4:39:19\n# User@Host: kim[kim] @ localhost [127.0.0.1]\n"
       b"# Thread_id: 4  Schema: w  QC_hit: No\n"
       b"# Query_time: 0.000487  Lock_time: 0.000321  Rows_sent: 3  Rows_examined: 9\n"
       b"use `w`;\nSET timestamp=1795667959;\nSELECT id\n\nFROM t -- x\nWHERE company_id = 6;\n"
       b"# User@Host: ann[ann] @  [10.0.0.7]\n# Thread_id: 5  Schema:   QC_hit: No\n"
       b"# Query_time: 1.5  Lock_time: 0.0  Rows_sent: 1  Rows_examined: 0\n"
       b"SET timestamp=1795667960;\nselect 1;\n")


def events(fmt: str, data: bytes, chunk: int | None = None):
    recs, bad = read_records(fmt, data, chunk)
    evs, asm = assemble(fmt, recs)
    return evs, asm, bad


def percona(name: str) -> bytes:
    p = PERCONA / name
    if not p.exists():
        pytest.skip(f"{p} is not here (GPL sample, read from ../shared only)")
    return p.read_bytes()


def test_frame_holds_the_last_entry_until_the_next_header():
    fmt = formats.get("mysql-slow")()
    second = TWO.index(b"# User@Host: ann")
    assert fmt.frame(TWO, at_eof=False) == [second]
    assert fmt.frame(TWO, at_eof=True) == [second, len(TWO)]
    # a header is a start as soon as its marker is complete; before that the entry is held
    assert fmt.frame(TWO[:second + 14], at_eof=False) == [second]
    assert fmt.frame(TWO[:second], at_eof=False) == []
    # blank lines inside the query do not end it
    ev = events("mysql-slow", TWO)[0][0]
    assert ev.sql == "SELECT id\n\nFROM t -- x\nWHERE company_id = 6"


def test_entry_fields():
    evs, asm, bad = events("mysql-slow", TWO)
    assert not bad
    kim, ann = evs
    assert (kim.user, kim.database, kim.session, kim.client) == ("kim", "w", "4", "127.0.0.1")
    assert kim.ts == datetime.fromtimestamp(1795667959, UTC)
    assert (kim.duration_ms, kim.rows, kim.dialect) == (0.487, 3, "mysql")
    assert (ann.user, ann.database, ann.client, ann.duration_ms, ann.sql) == ("ann", None, "10.0.0.7", 1500.0, "select 1")


@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_chunked_reads_equal_one_read(chunk):
    data = b"".join(p.read_bytes() for p in sorted(DATA.glob("*.log")))
    whole, _, _ = events("mysql-slow", data)
    parts, _, _ = events("mysql-slow", data, chunk)
    assert [(e.sql, e.ts, e.user, e.database) for e in parts] == [(e.sql, e.ts, e.user, e.database) for e in whole]


@pytest.mark.parametrize("log", sorted(p.name for p in DATA.glob("*.log")))
def test_beats_samples_give_one_event_per_entry(log):
    evs, asm, bad = events("mysql-slow", (DATA / log).read_bytes())
    expected = json.loads((DATA / f"{log}-expected.json").read_text())
    assert not bad
    assert len(evs) == len(expected)
    for ev in evs:
        assert ev.sql and ev.user and ev.ts.tzinfo is not None


def test_server_variants():
    # MySQL 5.7 ISO time with +08:00, Id on the User@Host line, no Schema
    (ev, *_), _, _ = events("mysql-slow", (DATA / "mysql-5.7.22.log").read_bytes())
    assert (ev.user, ev.session, ev.client, ev.duration_ms) == ("root", "7234", "218.76.8.37", 15000.223)
    assert ev.ts == datetime.fromtimestamp(1533630467, UTC)
    # MySQL 8 one-line extended stats, "use" before SET timestamp, multi-line query
    evs, _, _ = events("mysql-slow", (DATA / "mysql-ubuntu-8.0.15.log").read_bytes())
    assert [e.database for e in evs] == ["employees", "employees"]
    assert evs[1].sql.endswith("ORDER BY salary DESC\n    LIMIT 10") and evs[1].error_code is None
    # MariaDB: banners mid-file are skipped; extra "# Rows_affected"/"# Full_scan" lines are headers
    evs, asm, _ = events("mysql-slow", (DATA / "mariadb-10.2.12.log").read_bytes())
    assert [e.sql for e in evs] == ["select sleep(2)\nAS foo", "call PROC('blah')"]
    assert [e.database for e in evs] == [None, "blah"] and asm.skipped["banner"] == 2
    # Percona: "# Schema:" line, InnoDB lines
    evs, _, _ = events("mysql-slow", (DATA / "percona-ubuntu-5.7.19.log").read_bytes())
    assert [e.database for e in evs][:2] == [None, "database"]
    # a dangling "# Time:" at the end is not a query
    evs, asm, _ = events("mysql-slow", (DATA / "mysql-debian-5.7.19.log").read_bytes())
    assert len(evs) == 1 and asm.skipped["no-query"] == 1


def test_errno_and_old_time_with_a_zone_option():
    data = (b"# Time: 081127  8:51:20\n# User@Host: u[u] @ h []  Id: 9\n"
            b"# Query_time: 0.1  Lock_time: 0 Rows_sent: 0  Rows_examined: 0 Thread_id: 9 Errno: 1146 Killed: 0\n"
            b"SELECT * FROM nope;\n")
    fmt = formats.get("mysql-slow")(MysqlOptions(timezone="Europe/Oslo"))
    (end,) = fmt.frame(data, at_eof=True)
    ev, = fmt.assembler("t").feed(fmt.parse(data[:end]), "x:0")
    assert ev.error_code == "1146"
    assert ev.ts == datetime(2008, 11, 27, 7, 51, 20, tzinfo=UTC)  # Oslo is UTC+1 in November
    assert ev.ts.utcoffset() == timedelta(hours=1)
    with pytest.raises(ValueError):
        MysqlOptions(timezone="Mars/Olympus")


def test_percona_oddities():
    evs, asm, bad = events("mysql-slow", percona("slow006.txt"))  # db from Schema, else "use"
    assert [(e.session, e.database) for e in evs] == [("10", "foo"), ("10", "foo"), ("20", "bar"),
                                                      ("10", "bar"), ("20", "bar"), ("30", "foo")]
    evs, asm, _ = events("mysql-slow", percona("slow013.txt"))  # padded hour, admin command
    assert asm.skipped["admin-command"] == 1 and evs[0].ts == datetime(2008, 11, 27, 8, 51, 20, tzinfo=UTC)
    evs, asm, _ = events("mysql-slow", percona("slow014.txt"))  # banners between entries
    assert len(evs) == 2 and asm.skipped["banner"] == 5
    evs, asm, _ = events("mysql-slow", percona("slow041.txt"))  # starts mid-entry
    assert [e.sql for e in evs] == ["show /*!50002 GLOBAL */ status"] and asm.skipped["admin-command"] == 2
    _, _, bad = events("mysql-slow", percona("slow015.txt"))  # truncated header
    assert bad == Counter({"slow-user-host": 1})
    recs, _ = read_records("mysql-slow", percona("slow020.txt"))  # blank lines inside queries
    assert [r["sql"].split("\n").count("") for r, _ in recs] == [2, 5, 0]
    evs, _, _ = events("mysql-slow", percona("slow002.txt"))  # Time and User@Host on one line
    assert len(evs) == 8 and {e.user for e in evs} == {"SQL_SLAVE"}


def test_state_restore_mid_stream_equals_one_run(mysql_workload_logs):  # noqa: F811
    data = mysql_workload_logs.slow_log.read_bytes()
    recs, _ = read_records("mysql-slow", data)
    whole, _ = assemble("mysql-slow", recs)
    fmt = formats.get("mysql-slow")()
    for cut in (1, len(recs) // 3, len(recs) // 2, len(recs) - 1):
        a = fmt.assembler("test")
        first = [e for f, p in recs[:cut] for e in a.feed(f, p)]
        b = fmt.assembler("test")
        b.restore(json.loads(json.dumps(a.state())))
        assert first + [e for f, p in recs[cut:] for e in b.feed(f, p)] + b.flush() == whole


def test_real_mariadb_slow_log_has_every_execution(mysql_workload_logs):  # noqa: F811
    run = mysql_workload_logs.result
    evs, asm, bad = events("mysql-slow", mysql_workload_logs.slow_log.read_bytes())
    assert not bad
    users = Counter(e.user for e in evs)
    assert {u: users[u] for u in expected_runs()} == dict(expected_runs()) == dict(run.executions())
    kim = [e for e in evs if e.user == "kim" and "company_id" in e.sql]
    assert sorted(int(re.search(r"company_id\s*=\s*(\d+)", e.sql).group(1)) for e in kim) == KIM_IDS
    bi = [int(m.group(1)) for e in evs if e.user == "bi_tool" and (m := re.search(r"customer_id = (\d+)", e.sql))]
    assert bi == BI_CUSTOMERS  # the slow log shows the prepared statement's values
    mine = [e for e in evs if e.user in expected_runs()]
    assert {e.database for e in mine} == {run.database}
    assert all(e.duration_ms is not None and e.duration_ms >= 0 and e.session and e.rows is not None for e in mine)
    assert any("\n" in e.sql for e in mine if e.user == "kim")
