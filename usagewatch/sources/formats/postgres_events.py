"""PostgreSQL log records -> QueryEvents: the one assembler behind ``postgres-csvlog`` and
``postgres-jsonlog``, plus the helpers both parsers share (record keys, timestamps).

Both formats parse a record into the same field dict (keys in ``RECORD_KEYS``), so this module is
the only place that knows how PostgreSQL describes one execution across several records.

What a real PostgreSQL 15 writes (checked against a live server, see tests/helpers/postgres.py),
with ``log_statement=all`` and ``log_min_duration_statement=0``:

- simple protocol: ``statement: SQL``, then ``duration: 0.1 ms`` (the statement is not repeated).
- extended protocol: ``duration: X ms  parse <name>: SQL`` (only when a statement is prepared;
  a named statement is parsed once and executed many times), ``duration: X ms  bind <name>: SQL``
  with DETAIL ``parameters: $1 = '178'``, then ``execute <name>: SQL`` with the same DETAIL, then
  ``duration: X ms``. Parse and bind are protocol steps; the execute record starts the execution.
- ``log_min_duration_statement`` alone: one record ``duration: X ms  statement: SQL`` or
  ``duration: X ms  execute <name>: SQL`` (+ parameters DETAIL): a complete execution.
- a failing statement gets no ``duration:`` record, only an ERROR record whose ``query`` field is
  the statement text. A syntax error (or an error during bind) is never logged as ``statement:``,
  so an ERROR with a query and nothing pending is an execution of its own.

Held-back work is per session: an execution waits for its ``duration:`` (or ERROR) record and is
emitted without a duration when the session's next statement or its disconnection arrives, or on
``flush()``. Messages are matched with ``startswith`` on the English texts, so the server must log
with ``lc_messages='C'`` (or English); translated logs come out as "not-a-query" skips.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, cast

from usagewatch.model import QueryEvent
from usagewatch.sources.formats.base import Assembler

RECORD_KEYS: tuple[str, ...] = (
    "log_time",          # aware datetime
    "user", "database",
    "pid",               # int | None
    "client",            # "host:port", "[local]" or None
    "session_id", "session_line",  # str, int | None
    "command_tag", "session_start", "vxid",
    "txid",              # int | None
    "severity", "sqlstate", "message", "detail", "hint",
    "internal_query", "context", "query",
    "query_pos",         # int | None
    "application", "backend_type",
    "leader_pid", "query_id",  # int | None
)
"""The keys of every parsed PostgreSQL record, whichever format it came from. Absent or empty
values are None (``message`` is always a string)."""

# --- timestamps -------------------------------------------------------------------------------

UTC = timezone.utc
# Zone abbreviations PostgreSQL may print with %Z. Only unambiguous ones are listed (CST, IST, ...
# mean different offsets in different places); anything else is read as UTC and counted by the
# format as "tz-assumed-utc", so a wrong guess is visible rather than silent.
_ABBREVIATIONS: dict[str, float] = {
    "UTC": 0, "GMT": 0, "UT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2,
    "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "SAST": 2, "EST": -5, "EDT": -4,
    "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10,
    "NST": -3.5, "NDT": -2.5, "JST": 9, "KST": 9, "HKT": 8, "AWST": 8, "ACST": 9.5,
    "ACDT": 10.5, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "PKT": 5, "WIB": 7,
}
_TZ_CACHE: dict[str, tzinfo | None] = {}


def _zone(name: str) -> tzinfo | None:
    """tzinfo for a zone suffix ("UTC", "CEST", "+02", "-0330", "+05:30"); None when unknown."""
    if name in _TZ_CACHE:
        return _TZ_CACHE[name]
    found: tzinfo | None = None
    if name in _ABBREVIATIONS:
        found = UTC if _ABBREVIATIONS[name] == 0 else timezone(timedelta(hours=_ABBREVIATIONS[name]))
    elif name[:1] in "+-" and name[1:].replace(":", "").isdigit():
        digits = name[1:].replace(":", "")
        if len(digits) in (1, 2, 4):
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours < 24 and minutes < 60:
                sign = -1 if name[0] == "-" else 1
                found = timezone(sign * timedelta(hours=hours, minutes=minutes))
    _TZ_CACHE[name] = found
    return found


def parse_log_time(text: str) -> tuple[datetime, bool]:
    """``2026-11-26 04:15:07.123 UTC`` -> (aware datetime, zone_known).

    A missing or unknown zone gives UTC and ``zone_known=False``. Raises ValueError on a
    timestamp that is not one.

    PostgreSQL writes milliseconds and many records share a millisecond, all of them a second: the
    last text's result is kept, and for ``YYYY-MM-DD HH:MM:SS.mmm ZONE`` the second with its zone
    (the key holds the zone, so a DST change or a zone switch is a different key) is parsed once and
    the milliseconds added. Any other shape goes through ``_parse_log_time``, which defines the
    result; the shortcut only ever returns what that returns.
    """
    global _last_time
    last = _last_time
    if text == last[0]:
        return last[1]
    if text[19:20] == "." and text[23:24] == " ":
        key = text[:19] + text[23:]  # the second and " ZONE", without the milliseconds
        second = _SECONDS.get(key)
        if second is None:
            second = _second(key)
        millis = _MILLIS.get(text[20:23])  # exactly three ASCII digits, or None
        if second is not _UNCACHEABLE and millis is not None:
            result = (second[0] + millis, second[1])
            _last_time = (text, result)
            return result
    result = _parse_log_time(text)
    _last_time = (text, result)
    return result


def _second(key: str) -> tuple[datetime, bool]:
    """The cached ``(datetime, zone_known)`` of ``YYYY-MM-DD HH:MM:SS ZONE`` (``key``), or
    ``_UNCACHEABLE`` when that is not a naive whole second plus a one-word zone (the full text then
    always goes the long way, so errors and odd shapes stay ``_parse_log_time``'s)."""
    if len(_SECONDS) >= _SECONDS_MAX:
        _SECONDS.clear()
    found = _UNCACHEABLE
    if key[4] == "-" and key[7] == "-" and key[13] == ":" and key[16] == ":" and key[19] == " " \
            and " " not in key[20:]:
        try:
            naive = datetime.fromisoformat(key[:19])
        except ValueError:
            naive = None
        if naive is not None and naive.tzinfo is None and not naive.microsecond:
            found = _parse_log_time(key)
    _SECONDS[key] = found
    return found


def _parse_log_time(text: str) -> tuple[datetime, bool]:
    """``parse_log_time`` without its caches: what any text means."""
    sp = text.rfind(" ")
    if sp > 10:
        base, zone = text[:sp], text[sp + 1:]
    else:
        base, zone = text, ""
    tz = _zone(zone) if zone else None
    dt = datetime.fromisoformat(base)
    if dt.tzinfo is not None:  # "2026-...+02:00" without a space
        return dt, True
    return dt.replace(tzinfo=tz or UTC), tz is not None


_UNCACHEABLE: tuple[datetime, bool] = (datetime.min, False)  # a sentinel, compared by identity
_SECONDS: dict[str, tuple[datetime, bool]] = {}  # "YYYY-MM-DD HH:MM:SS ZONE" -> parse_log_time of it
_SECONDS_MAX = 4096  # log time moves forward: the cache is emptied when full
_MILLIS: dict[str, timedelta] = {f"{i:03d}": timedelta(milliseconds=i) for i in range(1000)}
_last_time: tuple[str | None, tuple[datetime, bool]] = (None, _UNCACHEABLE)  # the last text and its result


def to_int(text: str | int | None) -> int | None:
    """int of a numeric field; None for empty. Raises ValueError on junk."""
    if text is None or text == "":
        return None
    return int(text)


# --- bind parameters --------------------------------------------------------------------------


_QUOTED_PARAMS_RE = re.compile(r"parameters: \$\d+ = '[^']*'(?:, \$\d+ = '[^']*')*")
_QUOTED_PARAM_RE = re.compile(r"\$\d+ = '([^']*)'")


def parse_params(detail: str | None) -> tuple[str | None, ...]:
    """Values of a ``parameters: $1 = '178', $2 = NULL`` DETAIL, in order ('' unescaped, NULL ->
    None). Anything else (no DETAIL, ``prepare: ...``) gives (). A value PostgreSQL truncated
    (``log_parameter_max_length``) keeps its trailing ``...``."""
    if not detail or not detail.startswith("parameters: $"):
        return ()
    if _QUOTED_PARAMS_RE.fullmatch(detail):  # every value quoted, none with a quote inside: the
        return tuple(_QUOTED_PARAM_RE.findall(detail, 12))  # usual case, two C scans
    return _parse_params(detail)


def _parse_params(detail: str) -> tuple[str | None, ...]:
    """``parse_params`` of any ``parameters: $...`` DETAIL, one value at a time."""
    s, n, i = detail, len(detail), 12
    out: list[str | None] = []
    while i < n and s[i] == "$":
        eq = s.find(" = ", i)
        if eq < 0:
            break
        j = eq + 3
        if s.startswith("NULL", j):
            out.append(None)
            i = j + 4
        elif j < n and s[j] == "'":
            k, parts = j + 1, []
            while True:
                q = s.find("'", k)
                if q < 0:  # unterminated: keep what there is
                    parts.append(s[k:])
                    i = n
                    break
                if q + 1 < n and s[q + 1] == "'":
                    parts.append(s[k:q + 1])
                    k = q + 2
                    continue
                parts.append(s[k:q])
                i = q + 1
                break
            out.append("".join(parts))
        else:
            break
        if not s.startswith(", ", i):
            break
        i += 2
    return tuple(out)


# --- the assembler ----------------------------------------------------------------------------

_ERRORS = frozenset(("ERROR", "FATAL", "PANIC"))


class PostgresAssembler(Assembler):
    """Parsed PostgreSQL records (``RECORD_KEYS`` dicts) -> one QueryEvent per execution.

    ``skipped`` reasons: "not-a-query" (connections, checkpoints, autovacuum, notices, ...),
    "protocol-step" (parse, bind, execute-fetch), "orphan-duration" (a ``duration:`` with nothing
    pending), "error-without-query" (an ERROR/FATAL with no statement, e.g. auth failure).
    ``position`` of an event is that of the record that completed it (its duration or ERROR);
    an event emitted without one (superseded, disconnected, flushed) keeps its own record's.
    """

    def __init__(self, source: str, dialect: str = "postgres"):
        super().__init__(source, dialect)
        # session -> the held-back execution, as QueryEvent keyword arguments (minus duration)
        self._pending: dict[str, dict[str, Any]] = {}

    # -- contract --

    def feed(self, fields: dict[str, Any], position: str) -> list[QueryEvent]:
        msg: str = fields["message"] or ""
        sev = fields["severity"]
        if sev == "LOG":
            if msg.startswith("duration: "):
                return self.duration(fields, msg, position)
            if msg.startswith("statement: "):
                return self._start(fields, msg[11:], (), position)
            if msg.startswith("execute "):
                if msg.startswith("execute fetch from "):
                    self.skipped["protocol-step"] += 1
                    return []
                colon = msg.find(": ", 8)
                if colon < 0:
                    self.skipped["not-a-query"] += 1
                    return []
                return self._start(fields, msg[colon + 2:], parse_params(fields["detail"]), position)
            self.skipped["not-a-query"] += 1
            if msg.startswith("disconnection: "):
                held = self._pending.pop(_session(fields), None)
                return [self._event(held)] if held else []
            return []
        if sev in _ERRORS:
            return self._error(fields, msg, position)
        self.skipped["not-a-query"] += 1
        return []

    def flush(self) -> list[QueryEvent]:
        held = sorted(self._pending.values(), key=lambda p: p["ts"])
        self._pending.clear()
        return [self._event(p) for p in held]

    def state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "pending": {
                sid: dict(p, ts=p["ts"].isoformat(), params=list(p["params"]))
                for sid, p in self._pending.items()
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._pending = {
            sid: dict(p, ts=datetime.fromisoformat(p["ts"]), params=tuple(p["params"]))
            for sid, p in (state or {}).get("pending", {}).items()
        }

    # -- record kinds --

    def _start(self, fields: dict[str, Any], sql: str, params: tuple[str | None, ...],
               position: str) -> list[QueryEvent]:
        """A statement / execute record: hold it until its duration; emit what it supersedes."""
        sid = _session(fields)
        prev = self._pending.pop(sid, None)
        self._pending[sid] = self._held(fields, sql, params, position)
        return [self._event(prev)] if prev else []

    def duration(self, fields: dict[str, Any], msg: str, position: str) -> list[QueryEvent]:
        """``feed`` of a LOG record whose message (``msg``) starts with "duration: ". It reads only
        these keys of ``fields``: log_time, user, database, pid, client, session_id, detail,
        application (a parser may pass just those: ``PostgresCsvlog.parse_into``)."""
        ms_end = msg.find(" ms", 10)
        try:
            ms = float(msg[10:ms_end])
        except ValueError:
            self.skipped["not-a-query"] += 1
            return []
        at = ms_end + 3  # what follows "duration: X ms", read in place (no copy of the SQL)
        if msg.startswith(("  parse ", "  bind "), at):  # the most common records: protocol steps
            self.skipped["protocol-step"] += 1
            return []
        sid = _session(fields)
        if at >= len(msg):  # the duration of the statement/execute logged before it
            held = self._pending.pop(sid, None)
            if held is None:
                self.skipped["orphan-duration"] += 1
                return []
            return [self._event(held, ms, position)]
        if msg.startswith("  statement: ", at):
            sql, params = msg[at + 13:], cast(tuple[str | None, ...], ())
        elif msg.startswith("  execute ", at) and not msg.startswith("  execute fetch from ", at):
            colon = msg.find(": ", at + 10)
            if colon < 0:
                self.skipped["not-a-query"] += 1
                return []
            sql, params = msg[colon + 2:], parse_params(fields["detail"])
        elif msg.startswith("  execute fetch from ", at):
            self.skipped["protocol-step"] += 1
            return []
        else:  # e.g. auto_explain's "duration: X ms  plan: ..."
            self.skipped["not-a-query"] += 1
            return []
        # log_min_duration_statement alone: this one record is a whole execution
        prev = self._pending.pop(sid, None)
        complete = QueryEvent(  # what _event(_held(fields, sql, params, position), ms, position) gives
            source=self.source, ts=fields["log_time"], sql=sql, user=fields["user"],
            database=fields["database"], params=params, duration_ms=ms, session=sid,
            application=fields["application"], client=fields["client"], error_code=None,
            error_message=None, dialect=self.dialect, position=position)
        return [self._event(prev), complete] if prev else [complete]

    def _error(self, fields: dict[str, Any], msg: str, position: str) -> list[QueryEvent]:
        sid = _session(fields)
        query = fields["query"]
        held = self._pending.pop(sid, None)
        out: list[QueryEvent] = []
        if held is not None:
            # The held statement failed when the error names it; with no query field, only when
            # the backend was busy (a FATAL "idle-in-transaction timeout" is not the statement's).
            busy = not (fields["command_tag"] or "").startswith("idle")
            if query == held["sql"] or (query is None and busy):
                held["error_code"], held["error_message"] = fields["sqlstate"], msg
                return [self._event(held, None, position)]
            out.append(self._event(held))  # unrelated: it finished earlier without a duration
        if query:  # failed before it was logged (syntax error, error in bind)
            ev = self._held(fields, query, (), position)
            ev["error_code"], ev["error_message"] = fields["sqlstate"], msg
            out.append(self._event(ev))
        else:
            self.skipped["error-without-query"] += 1
        return out

    # -- building events --

    @staticmethod
    def _held(fields: dict[str, Any], sql: str, params: tuple[str | None, ...],
              position: str) -> dict[str, Any]:
        return {
            "ts": fields["log_time"], "sql": sql, "user": fields["user"],
            "database": fields["database"], "params": params, "session": _session(fields),
            "application": fields["application"], "client": fields["client"],
            "error_code": None, "error_message": None, "position": position,
        }

    def _event(self, held: dict[str, Any], duration_ms: float | None = None,
               position: str | None = None) -> QueryEvent:
        kw = dict(held)
        if position is not None:
            kw["position"] = position
        return QueryEvent(source=self.source, duration_ms=duration_ms, dialect=self.dialect, **kw)


def _session(fields: dict[str, Any]) -> str:
    """The session key: ``session_id``, or the pid when a record has none."""
    sid = fields["session_id"]
    if sid:
        return str(sid)
    return f"pid:{fields['pid']}"
