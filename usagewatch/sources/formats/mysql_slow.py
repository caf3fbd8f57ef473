"""The ``mysql-slow`` format: the slow query log of MySQL 5.x/8.0, MariaDB 10.x and Percona Server.

With ``long_query_time=0`` every statement is logged, which makes the slow log the MySQL source with
the most per-execution detail (duration, rows, thread, schema). One entry, as MariaDB 10.11 writes it::

    # Time: 261126  4:39:19                          <- only when the second changed
    # User@Host: kim[kim] @ localhost [127.0.0.1]    <- MySQL adds "  Id: 12" here
    # Thread_id: 4  Schema: w  QC_hit: No            <- MariaDB; Percona: "# Schema: w  Last_errno: 0"
    # Query_time: 0.000487  Lock_time: 0.000321  Rows_sent: 0  Rows_examined: 0
    # Rows_affected: 0  Bytes_sent: 56                <- MariaDB; more lines with log_slow_verbosity
    use `w`;                                          <- only when the log's current db changes
    SET timestamp=1795667959;                         <- the statement's start, epoch seconds
    SELECT id FROM t WHERE company_id = 5;            <- any number of lines, blank ones too

Framing: an entry ends only where the next begins, at a ``# Time:`` line or a ``# User@Host:`` line
that does not directly follow its ``# Time:`` line (entries in the same second have no ``# Time:``),
or at a start-up banner (see ``mysql_common``). One ``re.finditer`` over the data finds them; the
last entry is held back until the next header arrives, ``at_eof``, or the file has been idle
(``frame_when_idle``: the reader then frames what it has, up to the last newline).

Why the database is kept in the assembler and for the whole FILE, not per thread: the server writes
``use db;`` when the statement's database differs from the last one written to the log, by any
thread (``MYSQL_QUERY_LOG::write`` keeps one ``db`` for the file). So an entry without ``use`` and
without a ``Schema:`` field ran in the log's current database; the assembler keeps that, and the
last ``# Time:``, in ``state()`` so a restart mid-file still knows them. A banner resets the database
(the server restarted). ``Schema:`` (MariaDB, Percona), where present, wins.

Not queries, skipped and counted: banners, ``# administrator command: Quit;`` entries, a file's
first lines when it starts mid-entry ("fragment"), headers without a statement (a dangling
``# Time:`` at the end of a file). The slow log has no error field except MySQL 8's
``log_slow_extra`` ``Errno:``, which becomes ``error_code`` when non-zero.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from usagewatch.errors import BadRecord
from usagewatch.model import QueryEvent
from usagewatch.sources.formats.base import Assembler, FormatOptions, formats
from usagewatch.sources.formats.mysql_common import (
    UTC,
    MysqlFormat,
    banner_starts,
    ends_before,
    is_banner,
)

# Where entries start: a "# Time:" line (with the User@Host line right after it, which belongs to
# it), or a User@Host line. A literal prefix: a fast C scan.
_HEADER_RE = re.compile(rb"\n# (?:Time: \d[^\n]*+(?:\n# User@Host: )?|User@Host: )")
_USER_HOST_RE = re.compile(
    r"# User@Host: ([^\[\s]*)\[([^\]]*)\] @ ?(\S*) ?\[([^\]]*)\](?:\s+Id:\s*(\d+))?")
_KV_RE = re.compile(r"(\w+): (\S*)")
_BODY_START_RE = re.compile(r"\n(?!#)")  # a literal first character: a fast C scan
_USE_RE = re.compile(r"use (`?)([^`;]+)\1;\s*$", re.I)
_SET_TS_RE = re.compile(r"^SET (?:[^;]*,)?timestamp=(\d+)[,;]")


_NEEDED = ("Query_time: ", "Rows_sent: ", "Rows_examined: ", "Errno: ", "Thread_id: ", "Schema: ")
_QUERY_TIME_RE = re.compile(r"# Query_time: (\S*) +Lock_time: \S* +Rows_sent: (\S*) +Rows_examined: (\S*)"
                            r"(?: +Thread_id: (\S*) +Errno: (\S*))?")
_SPACE_RE = re.compile(r"\s")
_USER_HOSTS_MAX = 4096


def _header_fields(header: str) -> dict[str, str]:
    """``dict(_KV_RE.findall(header))`` as far as the keys ``parse`` reads (``_NEEDED``) go.

    A regex scan of "Key: value" pairs costs per character, and MySQL 8's ``log_slow_extra``
    writes about 30 pairs. No match crosses a newline, so a scan is in step at any line start.
    MySQL's ``# Query_time: .. Lock_time: .. Rows_sent: .. Rows_examined: ..[ Thread_id: ..
    Errno: ..]`` line start is read with one anchored match: its pairs are the full scan's matches
    there, and when no needed key appears anywhere else in the header, they are all that counts.
    Anything else goes through ``_fields_scanned``.
    """
    at = header.find("# Query_time: ")
    if at >= 0 and (at == 0 or header[at - 1] == "\n"):
        m = _QUERY_TIME_RE.match(header, at)
        if m is not None:
            before, after = header[:at], header[m.end():]
            for key in _NEEDED:
                if key in before or key in after:
                    break
            else:
                query_time, rows_sent, rows_examined, thread_id, errno = m.groups()
                kv = {"Query_time": query_time, "Rows_sent": rows_sent, "Rows_examined": rows_examined}
                if thread_id is not None:
                    kv["Thread_id"], kv["Errno"] = thread_id, errno
                return kv
    return _fields_scanned(header)


def _fields_scanned(header: str) -> dict[str, str]:
    """``_header_fields`` of any header: the scan covers only the lines from the first place a
    needed key appears to the end of the value after the last place one appears. No match outside
    that has a needed key, and one the end would cut (a ": " right there) starts after that last
    place, so its key is not needed either."""
    first, last, width = len(header), -1, 0
    for key in _NEEDED:
        at = header.find(key)
        if at >= 0:
            first = min(first, at)
            at = header.rfind(key, at)
            if at > last:
                last, width = at, len(key)
    if last < 0:
        return {}
    m = _SPACE_RE.search(header, last + width)
    end = m.start() if m else len(header)
    return dict(_KV_RE.findall(header, header.rfind("\n", 0, first) + 1, end))


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


@formats.register("mysql-slow")
class MysqlSlow(MysqlFormat):
    """MySQL/MariaDB/Percona slow query log (see the module docstring)."""

    def __init__(self, options: FormatOptions | None = None) -> None:
        super().__init__(options)
        # "# User@Host:" line -> (user, host, ip, thread id): the same few lines come again and again
        self._user_hosts: dict[str, tuple[str, str | None, str | None, int | None]] = {}

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        # data starts at a record start; a "# Time:" there is not matched (no "\n" before it), and
        # a User@Host line right after it belongs to it: the search starts past that line's "\n"
        pos = 0
        if data.startswith(b"# Time: "):
            nl = data.find(b"\n")
            if nl >= 0 and data.startswith(b"# User@Host: ", nl + 1):
                pos = nl + 1
        starts = [m.start() + 1 for m in _HEADER_RE.finditer(data, pos)]
        banners = banner_starts(data)
        if banners:
            starts = sorted(set(starts).union(banners))
        return ends_before(starts, len(data), at_eof)

    def parse(self, raw: bytes) -> dict[str, Any]:
        text = raw.decode("utf-8", errors="replace")
        if is_banner(text):
            return {"kind": "banner"}
        if not text or text.isspace():  # not text.strip(), without copying the record
            raise BadRecord("slow-empty", "blank record")
        out: dict[str, Any] = {
            "kind": "entry", "time": None, "user": None, "host": None, "ip": None, "thread_id": None,
            "schema": None, "query_time": None, "rows_sent": None, "rows_examined": None,
            "errno": None, "use_db": None, "set_timestamp": None, "sql": None, "admin": None,
        }
        # the header block: the leading lines that start with "#" (what ``^(?!#)`` with re.M finds,
        # without trying every position)
        if text.startswith("#"):
            m = _BODY_START_RE.search(text)
            split = m.start() + 1 if m else len(text)
        else:
            split = 0
        header, body = text[:split], text[split:]
        for line in header.split("\n"):
            what = line[2:7]  # tells the three kinds of lines read here apart without three calls
            if what == "Time:" and line.startswith("# Time: "):
                rest = line[8:].rstrip("\r")
                glued = rest.find(" # User@Host: ")  # Percona's microslow patch: one line
                if glued >= 0:
                    self._user_host(rest[glued + 1:], out)
                    rest = rest[:glued]
                try:
                    out["time"] = self._time(rest)
                except ValueError:
                    raise BadRecord("slow-time", repr(rest[:60])) from None
            elif what == "User@" and line.startswith("# User@Host: "):
                self._user_host(line, out)
            elif what == "admin" and line.startswith("# administrator command: "):
                out["admin"] = line[25:].rstrip().rstrip(";")
        kv = _header_fields(header)
        if "Query_time" in kv:
            try:
                out["query_time"] = float(kv["Query_time"])
            except ValueError:  # seen in the wild: "18446744073708.796870.000036"
                pass
        value = kv.get("Rows_sent")  # _int(value), inlined for the common keys
        out["rows_sent"] = int(value) if value is not None and value.isdigit() else None
        value = kv.get("Rows_examined")
        out["rows_examined"] = int(value) if value is not None and value.isdigit() else None
        out["errno"] = _int(kv.get("Errno"))
        if out["thread_id"] is None:
            out["thread_id"] = _int(kv.get("Thread_id"))
        if "Schema" in kv:
            out["schema"] = kv["Schema"]
        # the preamble: "use db;" lines, then "SET timestamp=N;"; a last line is the statement itself
        pos = 0
        while True:
            nl = body.find("\n", pos)
            if nl < 0:
                break
            follows = body[nl + 1:nl + 2]  # not body[nl + 1:].strip() (a copy) when plainly not blank
            if not follows or follows.isspace() and not body[nl + 1:].strip():
                break
            line = body[pos:nl]
            if line.startswith("SET timestamp=") and line.endswith(";"):  # MySQL's own shape
                digits = line[14:-1]
                if digits.isdigit() and digits.isascii():
                    out["set_timestamp"] = int(digits)
                    pos = nl + 1
                    break
            um = _USE_RE.match(line)
            if um:
                out["use_db"] = um.group(2)
                pos = nl + 1
                continue
            sm = _SET_TS_RE.match(line)
            if sm:
                out["set_timestamp"] = int(sm.group(1))
                pos = nl + 1
            break
        sql = body[pos:].strip()
        if sql.endswith(";"):
            sql = sql[:-1].rstrip()
        out["sql"] = sql or None
        has_header = out["user"] is not None or "Query_time" in kv
        if out["admin"] is not None:
            out["kind"] = "admin"
        elif not has_header:
            out["kind"] = "time" if out["time"] is not None and not sql else "fragment"
        elif not sql:
            out["kind"] = "no-query"
        return out

    def _user_host(self, line: str, out: dict[str, Any]) -> None:
        found = self._user_hosts.get(line)  # a few thousand distinct lines in a whole log
        if found is None:
            m = _USER_HOST_RE.match(line)
            if not m:
                raise BadRecord("slow-user-host", repr(line[:80]))
            priv, user, host, ip, tid = m.groups()
            found = (user or priv, host or None, ip or None, int(tid) if tid else None)
            if len(self._user_hosts) >= _USER_HOSTS_MAX:
                self._user_hosts.clear()
            self._user_hosts[line] = found
        out["user"], out["host"], out["ip"] = found[0], found[1], found[2]
        if found[3] is not None:
            out["thread_id"] = found[3]

    def assembler(self, source: str) -> MysqlSlowAssembler:
        return MysqlSlowAssembler(source, self.dialect)


class MysqlSlowAssembler(Assembler):
    """Slow-log entries -> QueryEvents, one per entry (an entry is a whole execution).

    Keeps the log's current database (``use`` lines) and the last ``# Time:`` across records and
    in ``state()``. ``skipped`` reasons: "banner", "admin-command", "fragment" (a file starting
    mid-entry), "no-query" (a header without a statement), "no-time" (neither ``SET timestamp``
    nor any ``# Time:`` so far).
    """

    def __init__(self, source: str, dialect: str = "mysql"):
        super().__init__(source, dialect)
        self._db: str | None = None
        self._time: datetime | None = None
        self._stamp: int | None = None  # the last SET timestamp and its datetime
        self._stamp_ts = datetime.min  # (never read before a stamp is seen)

    def feed(self, fields: dict[str, Any], position: str) -> list[QueryEvent]:
        kind = fields["kind"]
        if kind == "banner":
            self._db = None  # the server (re)started: it writes "use" again for the next db
            self.skipped["banner"] += 1
            return []
        if fields["time"] is not None:
            self._time = fields["time"]
        if fields["use_db"]:
            self._db = fields["use_db"]
        if kind != "entry":
            reason = {"admin": "admin-command", "time": "no-query"}.get(kind, kind)
            self.skipped[reason] += 1
            return []
        stamp = fields["set_timestamp"]
        if stamp is not None:
            if stamp != self._stamp:  # consecutive entries mostly start in the same second
                self._stamp, self._stamp_ts = stamp, datetime.fromtimestamp(stamp, UTC)
            ts = self._stamp_ts
        elif self._time is not None:
            ts = self._time
        else:
            self.skipped["no-time"] += 1
            return []
        schema = fields["schema"]
        database = (schema or None) if schema is not None else self._db
        tid = fields["thread_id"]
        errno = fields["errno"]
        qt = fields["query_time"]
        return [QueryEvent(
            source=self.source, ts=ts, sql=fields["sql"], user=fields["user"], database=database,
            duration_ms=round(qt * 1000.0, 6) if qt is not None else None,
            session=str(tid) if tid is not None else None,
            client=fields["ip"] or fields["host"], error_code=str(errno) if errno else None,
            dialect=self.dialect, position=position, rows=fields["rows_sent"],
        )]

    def flush(self) -> list[QueryEvent]:
        return []  # nothing is held back here: framing holds an entry until it is complete

    def state(self) -> dict[str, Any]:
        return {"version": 1, "db": self._db,
                "time": self._time.isoformat() if self._time is not None else None}

    def restore(self, state: dict[str, Any]) -> None:
        state = state or {}
        self._db = state.get("db")
        t = state.get("time")
        self._time = datetime.fromisoformat(t) if t else None
