"""mysql-general: framing keeps multi-line queries whole, the thread map names users and databases
(also across a restart), Execute counts and Prepare does not, and a real MariaDB's general log of
the workload gives exactly the workload's executions."""

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

PERCONA = Path(__file__).parents[3].parent / "shared" / "samples" / "percona-toolkit" / "genlogs"
UTC = timezone.utc

MARIA = (b"/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:\n"
         b"Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock\nTime\t\t    Id Command\tArgument\n"
         b"261126  4:39:19\t     4 Connect\tkim@localhost on w using TCP/IP\n"
         b"\t\t     4 Query\tSELECT id\n\nFROM t -- x\nWHERE company_id = 6\n"
         b"\t\t     4 Init DB\tsales\n"
         b"261126  4:39:20\t     4 Query\tPREPARE s FROM 'SELECT id FROM t WHERE company_id = ?'\n"
         b"\t\t     4 Prepare\tSELECT id FROM t WHERE company_id = ?\n"
         b"\t\t     4 Query\tEXECUTE s USING 7\n"
         b"\t\t     4 Execute\tSELECT id FROM t WHERE company_id = 7\n"
         b"\t\t     4 Quit\t\n")


def events(data: bytes, chunk: int | None = None):
    recs, bad = read_records("mysql-general", data, chunk)
    evs, asm = assemble("mysql-general", recs)
    return evs, asm, bad


def percona(name: str) -> bytes:
    p = PERCONA / name
    if not p.exists():
        pytest.skip(f"{p} is not here (GPL sample, read from ../shared only)")
    return p.read_bytes()


def test_frame_cuts_before_each_prefixed_line_and_holds_the_last():
    fmt = formats.get("mysql-general")()
    ends = fmt.frame(MARIA, at_eof=False)
    starts = [0] + ends
    first_lines = [MARIA[s:MARIA.index(b"\n", s)] for s in starts]
    assert first_lines[0].startswith(b"/usr/sbin/mariadbd") and first_lines[1].startswith(b"261126")
    assert len(ends) == 8  # banner + 8 command lines, the last (Quit) held back
    assert fmt.frame(MARIA, at_eof=True)[-1] == len(MARIA)
    # the lines of a multi-line query (one blank) are one record
    assert MARIA[ends[1]:ends[2]].count(b"\n") == 4


def test_thread_map_prepare_and_execute():
    evs, asm, bad = events(MARIA)
    assert not bad
    assert [(e.sql, e.user, e.database, e.session) for e in evs] == [
        ("SELECT id\n\nFROM t -- x\nWHERE company_id = 6", "kim", "w", "4"),
        ("PREPARE s FROM 'SELECT id FROM t WHERE company_id = ?'", "kim", "sales", "4"),
        ("SELECT id FROM t WHERE company_id = 7", "kim", "sales", "4"),  # one execution, with its value
    ]
    assert [e.ts for e in evs] == [datetime(2026, 11, 26, 4, 39, 19, tzinfo=UTC)] + 2 * [datetime(2026, 11, 26, 4, 39, 20, tzinfo=UTC)]
    assert asm.skipped == Counter({"banner": 1, "connect": 1, "init-db": 1, "protocol-step": 1, "sql-execute": 1, "quit": 1})
    assert evs[0].duration_ms is None and evs[0].client == "localhost" and evs[0].dialect == "mysql"


def test_an_sql_execute_without_its_execute_line_is_still_one_execution():
    data = b"2026-11-26T04:15:07.123456Z\t   12 Query\tEXECUTE s USING @v\n2026-11-26T04:15:07.2Z\t   12 Query\tSELECT 1\n"
    evs, _, _ = events(data)
    assert [e.sql for e in evs] == ["EXECUTE s USING @v", "SELECT 1"]
    assert evs[0].ts == datetime(2026, 11, 26, 4, 15, 7, 123456, tzinfo=UTC)


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_chunked_reads_equal_one_read(chunk):
    whole, _, _ = events(MARIA)
    parts, _, _ = events(MARIA, chunk)
    assert parts == whole


def test_percona_general_logs():
    evs, asm, _ = events(percona("genlog001.txt"))  # old format, spaces, multi-line, Init DB
    assert [(e.user, e.database) for e in evs] == [("root", "db1"), ("root", "my_webstats")]
    assert evs[0].sql.endswith("ORDER BY col") and evs[0].sql.count("\n") == 3
    assert evs[1].ts == datetime(2006, 12, 26, 15, 42, 36, tzinfo=UTC)
    evs, asm, _ = events(percona("genlog005.txt"))  # MySQL 5.7: ISO times, banner
    assert len(evs) == 11 and asm.skipped["banner"] == 1 and {e.user for e in evs} == {"root", None}
    evs, asm, _ = events(percona("pt-1573-general-log-system.log"))  # +08:00
    assert evs[0].ts.utcoffset() == timedelta(hours=8) and evs[0].user == "mysqlha_common"
    _, asm, _ = events(percona("genlog004.txt"))  # no times at all; access denied
    assert (asm.skipped["connect-failed"], asm.skipped["connect"], asm.skipped["no-time"]) == (1, 2, 1)


def test_state_restore_keeps_threads(mysql_workload_logs):  # noqa: F811
    recs, _ = read_records("mysql-general", mysql_workload_logs.general_log.read_bytes())
    whole, _ = assemble("mysql-general", recs)
    fmt = formats.get("mysql-general")()
    for cut in (2, len(recs) // 3, len(recs) // 2, len(recs) - 2):
        a = fmt.assembler("test")
        first = [e for f, p in recs[:cut] for e in a.feed(f, p)]
        b = fmt.assembler("test")
        b.restore(json.loads(json.dumps(a.state())))
        assert first + [e for f, p in recs[cut:] for e in b.feed(f, p)] + b.flush() == whole


def test_real_mariadb_general_log_has_every_execution(mysql_workload_logs):  # noqa: F811
    run = mysql_workload_logs.result
    evs, asm, bad = events(mysql_workload_logs.general_log.read_bytes())
    assert not bad
    users = Counter(e.user for e in evs)
    assert {u: users[u] for u in expected_runs()} == dict(expected_runs()) == dict(run.executions())
    kim = [e for e in evs if e.user == "kim" and "company_id" in e.sql]
    assert sorted(int(re.search(r"company_id\s*=\s*(\d+)", e.sql).group(1)) for e in kim) == KIM_IDS
    bi = [int(m.group(1)) for e in evs if e.user == "bi_tool" and (m := re.search(r"customer_id = (\d+)", e.sql))]
    assert bi == BI_CUSTOMERS
    assert asm.skipped["sql-execute"] == len(BI_CUSTOMERS) and asm.skipped["protocol-step"] == 1
    assert {e.database for e in evs if e.user in expected_runs()} == {run.database}
