"""The ``mysql-general`` format: the general query log of MySQL and MariaDB (``general_log=ON``,
``log_output=FILE``).

The general log records every command a server receives, before running it, one tab-separated line
each (MariaDB 10.11 below; MySQL 5.7+ writes an ISO-8601 time, ``2026-11-26T04:39:19.123456Z``, on
every line); tabs shown as spaces::

    261126  4:39:19       4 Connect  kim@localhost on w using TCP/IP
                         4 Query  SELECT id FROM t WHERE company_id = 5
                         4 Query  SELECT id
    <blank line>
    FROM t -- a multi-line query goes on without the prefix
                         4 Query  EXECUTE bi USING 523
                         4 Execute  SELECT id FROM t WHERE company_id = 523
                         4 Quit

MariaDB prints the time only on the first line of each second (later lines have an empty time
column), so the assembler carries the last time from line to line and in ``state()``.

Framing: a record starts at a line with the ``[time] id Command`` prefix (the command must be one
of the server's command names, so a query's own lines do not look like a start) or at a start-up
banner; it ends where the next one starts, so the last record waits for the next line, ``at_eof``
or the file going idle (``frame_when_idle``). One regex ``finditer`` finds the starts.

Who ran it: only ``Connect`` names the user, host and database of a thread; ``Init DB`` (and a
``USE db`` query) changes the database; ``Quit`` ends the thread. The assembler keeps that thread
map, saved by ``state()``, so a restart in the middle of a file still knows who thread 4 is. A
thread that connected before the file began has no user (the events say ``user=None``).

What counts as one execution: a ``Query`` line, and an ``Execute`` line (a server-side prepared
statement, logged with its values substituted). ``Prepare`` is a protocol step and not counted. An
SQL-level ``EXECUTE stmt USING ...`` query is logged twice, as ``Query EXECUTE ...`` and then as
``Execute <the statement with values>``: the query line is held and dropped when its ``Execute``
line follows (emitted as it is otherwise), so it is one execution with its values, as in the slow
log. The general log has no durations and no errors (failing statements are logged like others).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from usagewatch.errors import BadRecord
from usagewatch.model import QueryEvent
from usagewatch.sources.formats.base import Assembler, formats
from usagewatch.sources.formats.mysql_common import (
    MysqlFormat,
    banner_starts,
    ends_before,
    is_banner,
)

COMMANDS: tuple[str, ...] = (
    "Query", "Execute", "Prepare", "Connect", "Quit", "Init DB", "Close stmt", "Reset stmt",
    "Field List", "Change user", "Statistics", "Ping", "Long Data", "Fetch", "Processlist", "Kill",
    "Refresh", "Shutdown", "Debug", "Set option", "Binlog Dump GTID", "Binlog Dump", "Daemon",
    "Delayed insert", "Sleep", "Time", "Connect Out", "Register Slave", "Table Dump", "Error",
    "Create DB", "Drop DB", "Reset Connection", "Bulk_execute", "Slave_worker", "Slave_IO", "Slave_SQL",
)
"""Command names as the server prints them (``command_name[]`` of MySQL and MariaDB)."""

_ALT = "|".join(re.escape(c) for c in sorted(COMMANDS, key=len, reverse=True))
_PREFIX = (r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"
           r"|\d{6}[ \t]+\d{1,2}:\d\d:\d\d(?:\.\d+)?)?[ \t]+(\d+) (" + _ALT + r")(?=[ \t]|\r?$)")
_PREFIX_B = re.compile(_PREFIX.encode(), re.M)
_PREFIX_S = re.compile(_PREFIX, re.M)
_CONNECT_RE = re.compile(r"([^@\s]*)@(\S*)(?: as (\S*))? on (\S*)")
_USE_RE = re.compile(r"use\s+(`?)([^`;\s]+)\1\s*;?\s*$", re.I)
_SQL_EXECUTE_RE = re.compile(r"\s*execute\s", re.I)

_STEPS = frozenset(("Prepare", "Close stmt", "Reset stmt", "Long Data", "Fetch"))


@formats.register("mysql-general")
class MysqlGeneral(MysqlFormat):
    """MySQL/MariaDB general query log (see the module docstring)."""

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        starts = [m.start() for m in _PREFIX_B.finditer(data)]
        banners = banner_starts(data)
        if banners:
            starts = sorted(set(starts).union(banners))
        return ends_before(starts, len(data), at_eof)

    def parse(self, raw: bytes) -> dict[str, Any]:
        text = raw.decode("utf-8", errors="replace")
        m = _PREFIX_S.match(text)
        if m is None:
            if is_banner(text):
                return {"kind": "banner"}
            if not text.strip():
                raise BadRecord("general-empty", "blank record")
            return {"kind": "fragment"}
        stamp, tid, command = m.groups()
        try:
            time = self._time(stamp) if stamp else None
        except ValueError:
            raise BadRecord("general-time", repr(stamp[:60])) from None
        rest = text[m.end():]
        rest = rest[1:] if rest.startswith("\t") else rest.lstrip(" ")
        return {"kind": "command", "time": time, "thread": int(tid), "command": command,
                "argument": rest.rstrip()}

    def assembler(self, source: str) -> MysqlGeneralAssembler:
        return MysqlGeneralAssembler(source, self.dialect)


class MysqlGeneralAssembler(Assembler):
    """General-log lines -> QueryEvents (``Query`` and ``Execute``), with the thread map.

    ``skipped`` reasons: "banner", "fragment" (a file starting mid-record), "connect", "connect-failed"
    ("Access denied ..."), "init-db", "quit", "protocol-step" (Prepare, Close stmt, ...),
    "sql-execute" (an ``EXECUTE`` query whose ``Execute`` line followed), "not-a-query" (Ping,
    Field List, ...), "no-time" (no timestamp seen yet in the file).
    """

    def __init__(self, source: str, dialect: str = "mysql"):
        super().__init__(source, dialect)
        self._threads: dict[int, list[str | None]] = {}  # id -> [user, host, db]
        self._pending: dict[int, dict[str, Any]] = {}  # id -> held "EXECUTE ..." query
        self._time: datetime | None = None

    def feed(self, fields: dict[str, Any], position: str) -> list[QueryEvent]:
        kind = fields["kind"]
        if kind != "command":
            if kind == "banner":  # restarted: thread ids start over
                flushed = self.flush()
                self._threads.clear()
                self.skipped["banner"] += 1
                return flushed
            self.skipped[kind] += 1
            return []
        if fields["time"] is not None:
            self._time = fields["time"]
        tid, cmd, arg = fields["thread"], fields["command"], fields["argument"]
        out: list[QueryEvent] = []
        held = self._pending.pop(tid, None)
        if held is not None and cmd != "Execute":
            out.append(self._event(held))  # its Execute line never came: it is its own execution
        if cmd == "Query" or cmd == "Execute":
            if self._time is None:
                self.skipped["no-time"] += 1
                return out
            if cmd == "Query":
                m = _USE_RE.match(arg)
                if m:
                    self._thread(tid)[2] = m.group(2)
                elif _SQL_EXECUTE_RE.match(arg):
                    self._pending[tid] = self._held(tid, arg, position)
                    return out
            else:
                if held is not None:
                    self.skipped["sql-execute"] += 1
            out.append(self._event(self._held(tid, arg, position)))
            return out
        if cmd == "Connect" or cmd == "Change user":
            m = _CONNECT_RE.match(arg + " ")  # the argument was rstripped: "on " + empty db
            if m is None:
                self.skipped["connect-failed"] += 1
                return out
            user, host, _priv, db = m.groups()
            self._threads[tid] = [user or None, host or None, db or None]
            self.skipped["connect"] += 1
        elif cmd == "Init DB":
            self._thread(tid)[2] = arg.strip() or None
            self.skipped["init-db"] += 1
        elif cmd == "Quit":
            self._threads.pop(tid, None)
            self.skipped["quit"] += 1
        elif cmd in _STEPS:
            self.skipped["protocol-step"] += 1
        else:
            self.skipped["not-a-query"] += 1
        return out

    def flush(self) -> list[QueryEvent]:
        held = sorted(self._pending.values(), key=lambda p: p["ts"])
        self._pending.clear()
        return [self._event(p) for p in held]

    def state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "time": self._time.isoformat() if self._time is not None else None,
            "threads": {str(t): list(v) for t, v in self._threads.items()},
            "pending": {str(t): dict(p, ts=p["ts"].isoformat()) for t, p in self._pending.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        state = state or {}
        t = state.get("time")
        self._time = datetime.fromisoformat(t) if t else None
        self._threads = {int(k): list(v) for k, v in state.get("threads", {}).items()}
        self._pending = {int(k): dict(p, ts=datetime.fromisoformat(p["ts"]))
                         for k, p in state.get("pending", {}).items()}

    # -- helpers --

    def _thread(self, tid: int) -> list[str | None]:
        """The thread's [user, host, db]; an unknown thread (connected before the file began) gets
        an entry without user."""
        entry = self._threads.get(tid)
        if entry is None:
            entry = self._threads[tid] = [None, None, None]
        return entry

    def _held(self, tid: int, sql: str, position: str) -> dict[str, Any]:
        user, host, db = self._threads.get(tid) or (None, None, None)
        assert self._time is not None
        return {"ts": self._time, "sql": sql, "user": user, "host": host, "db": db,
                "session": str(tid), "position": position}

    def _event(self, held: dict[str, Any]) -> QueryEvent:
        return QueryEvent(source=self.source, ts=held["ts"], sql=held["sql"], user=held["user"],
                          database=held["db"], session=held["session"], client=held["host"],
                          dialect=self.dialect, position=held["position"])
