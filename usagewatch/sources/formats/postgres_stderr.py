"""The ``postgres-stderr`` format: PostgreSQL's plain-text log (``log_destination = 'stderr'``).

This module owns reading that text: compiling the server's ``log_line_prefix`` into a regular
expression, finding where one log message ends, and mapping the prefix values and the message
lines onto ``postgres_events.RECORD_KEYS``, so the same ``PostgresAssembler`` that serves csvlog
and jsonlog turns the records into QueryEvents. The text log carries only what the prefix asks
for, which is why the prefix is an option (``log_line_prefix``, PostgreSQL's default
``'%m [%p] '``): a prefix with ``%u %d %c %e %a %r`` gives events equal to the csvlog's.

What PostgreSQL writes for ONE message (elog.c): a prefixed line ``<prefix>SEVERITY:  text``
(``SEVERITY:  SQLSTATE: text`` with ``log_error_verbosity=verbose``), then zero or more prefixed
lines ``<prefix>DETAIL:  ...`` (HINT, QUERY, CONTEXT, LOCATION, STATEMENT, BACKTRACE). A newline
inside any value is written as newline + TAB, so a line starting with a TAB continues the line
before it (one starting with spaces too: copies edited by hand turn the TAB into spaces). An
error's cursor position is appended to the message as `` at character N``; it is cut off into
``query_pos``, as csvlog has it. ``%l`` counts lines, not messages, so ``session_line`` differs
from csvlog's for sessions that logged DETAIL or STATEMENT lines.

Framing: a record is a first line plus its TAB continuations plus the secondary lines of the same
process (same ``%p``/``%c`` when the prefix has them). It is complete only once the first line of
the next record has begun (or at EOF). The framer scans lines with ``bytes.find``; a line whose
first ``":  "`` follows a main severity (``LOG:  ``) starts a record without further ado, only
the others (DETAIL, STATEMENT, ...) are matched against the compiled prefix.

Lines that are not log lines (``pg_ctl`` output, a wrong prefix) are not guessed at: each is a
record of its own that ``parse`` rejects as ``stderr-no-prefix`` (counted, never fatal); blank
lines belong to the record before them; a secondary line of another process (interleaved writes
without the logging collector) is a record of its own, rejected as ``stderr-orphan``.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from pydantic import field_validator

from usagewatch.errors import BadRecord
from usagewatch.sources.formats.base import FormatOptions, LogFormat, formats
from usagewatch.sources.formats.postgres_events import (
    RECORD_KEYS,
    PostgresAssembler,
    parse_log_time,
)

DEFAULT_PREFIX = "%m [%p] "
MAIN_SEVERITIES = ("DEBUG", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC")
# secondary line kind -> the record key it fills (None: read and dropped)
SECONDARY: dict[str, str | None] = {
    "DETAIL": "detail", "HINT": "hint", "QUERY": "internal_query", "CONTEXT": "context",
    "STATEMENT": "query", "LOCATION": None, "BACKTRACE": None,
}
_SECONDARY_B = frozenset(k.encode() for k in SECONDARY)
_MAIN_B = tuple(k.encode() for k in MAIN_SEVERITIES)
_LAZY = object()  # a record's key, not computed until a secondary line needs it
_CONTINUATION = frozenset(b"\t \n")  # first bytes of lines that continue a record
_SEVERITY = "(?P<severity>" + "|".join(MAIN_SEVERITIES + tuple(SECONDARY)) + "):  "

_ZONE = r"[A-Za-z0-9+\-:_/]+"
_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d " + _ZONE
# escape -> (group name, value pattern). A group name is a RECORD_KEYS key when the value maps
# onto one directly; the others are converted in ``parse``.
ESCAPES: dict[str, tuple[str, str]] = {
    "a": ("application", r".*?"),
    "u": ("user", r".*?"),
    "d": ("database", r".*?"),
    "r": ("client_port", r"\S*?"),        # host(port), or [local]
    "h": ("client_host", r"\S*?"),
    "L": ("local_address", r"\S*?"),      # PostgreSQL 16+; read, not kept
    "b": ("backend_type", r".*?"),
    "i": ("command_tag", r".*?"),
    "p": ("pid", r"\d+"),
    "P": ("leader_pid", r"\d*"),
    "c": ("session_id", r"[0-9a-f]+\.[0-9a-f]+"),
    "l": ("session_line", r"\d+"),
    "m": ("time_ms", r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} " + _ZONE),
    "t": ("time_s", _TIME),
    "n": ("time_epoch", r"\d+\.\d{3}"),
    "s": ("session_start", _TIME),
    "v": ("vxid", r"(?:\d+/\d+)?"),
    "x": ("txid", r"\d+"),
    "e": ("sqlstate", r"[0-9A-Z]{5}"),
    "Q": ("query_id", r"-?\d+"),
}
_ESCAPE_RE = re.compile(r"%(-?\d*)(.)", re.S)
_INT_KEYS = frozenset(("pid", "session_line", "txid", "leader_pid", "query_id"))
_UNKNOWN = "[unknown]"  # what PostgreSQL prints for a session value not known yet
_AT_CHARACTER = re.compile(r" at character (\d+)\Z")
_VERBOSE_STATE = re.compile(r"([0-9A-Z]{5}): ")


class Prefix(NamedTuple):
    """A compiled ``log_line_prefix``: ``line`` (str) matches a whole line's head and severity,
    ``head`` (bytes) the same for framing; ``keys`` are the prefix's identity groups (pid,
    session) that tie a DETAIL/STATEMENT line to its message."""

    text: str
    line: re.Pattern[str]
    head: re.Pattern[bytes]
    keys: tuple[str, ...]
    groups: frozenset[str]


@lru_cache(maxsize=32)
def compile_prefix(prefix: str) -> Prefix:
    """Compile ``log_line_prefix`` once. Raises ValueError with a sentence on an escape
    PostgreSQL does not know, or a prefix without a timestamp."""
    parts: list[str] = []
    seen: set[str] = set()
    optional_from: int | None = None
    pos = 0
    for m in _ESCAPE_RE.finditer(prefix):
        parts.append(re.escape(prefix[pos:m.start()]))
        pos = m.end()
        pad, esc = m.group(1), m.group(2)
        if esc == "%":
            parts.append("%")
        elif esc == "q":
            if optional_from is None:  # only the first %q stops non-session processes
                optional_from = len(parts)
        elif esc in ESCAPES:
            name, pattern = ESCAPES[esc]
            if name in seen:
                group = f"(?:{pattern})"
            else:
                seen.add(name)
                group = f"(?P<{name}>{pattern})"
            parts.append(f" *{group} *" if pad not in ("", "-") else group)
        else:
            known = " ".join("%" + e for e in sorted(ESCAPES, key=str.lower))
            raise ValueError(f"unknown escape %{esc} in {prefix!r}; a log_line_prefix may use "
                             f"{known} %q %%.")
    tail = prefix[pos:]
    if "%" in tail:
        raise ValueError(f"{prefix!r} ends with a lone %; write %% for a percent sign.")
    parts.append(re.escape(tail))
    if not seen & {"time_ms", "time_s", "time_epoch"}:
        raise ValueError(f"{prefix!r} has no timestamp (%m, %t or %n); usagewatch needs each "
                         "query's own time, so the server's log_line_prefix must have one.")
    if optional_from is not None:
        # lazy: a line of a non-session process stops at %q; a session line must have the rest
        parts[optional_from:] = ["(?:" + "".join(parts[optional_from:]) + ")??"]
    body = "".join(parts) + _SEVERITY
    keys = tuple(k for k in ("pid", "session_id") if k in seen)
    return Prefix(prefix, re.compile(body), re.compile(body.encode()), keys, frozenset(seen))


class StderrOptions(FormatOptions):
    """``options:`` of a ``postgres-stderr`` source."""

    log_line_prefix: str = DEFAULT_PREFIX
    """The server's ``log_line_prefix``, exactly as in postgresql.conf (``SHOW log_line_prefix``)."""

    @field_validator("log_line_prefix")
    @classmethod
    def _compiles(cls, v: str) -> str:
        compile_prefix(v)
        return v


@formats.register("postgres-stderr")
class PostgresStderr(LogFormat):
    """PostgreSQL's stderr log, read with the server's ``log_line_prefix`` (see the module doc).

    ``notes`` counts "tz-assumed-utc" like the csvlog format does.
    """

    dialect = "postgres"
    Options = StderrOptions
    frame_when_idle = True  # a record ends only where the next begins: take the last one when idle

    def __init__(self, options: FormatOptions | None = None) -> None:
        super().__init__(options)
        assert isinstance(self.options, StderrOptions)
        self.prefix = compile_prefix(self.options.log_line_prefix)
        self.notes: Counter[str] = Counter()
        groups = self.prefix.groups
        self._text_keys = tuple(k for k in groups if k in RECORD_KEYS and k not in _INT_KEYS)
        self._int_keys = tuple(k for k in groups if k in _INT_KEYS)
        self._time_key = next(k for k in ("time_ms", "time_s", "time_epoch") if k in groups)
        self._last_time: str | None = None  # consecutive lines often share a timestamp
        self._last_stamp: datetime | None = None
        self._last_known = True

    # -- framing --

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        ends: list[int] = []
        find, endswith, head = data.find, data.endswith, self.prefix.head.match
        n = len(data)
        pos = 0
        start = -1                  # where the current record began (-1: none yet)
        key: Any = _LAZY            # its identity (pid/session); None: not a log line
        while pos < n:
            nl = find(b"\n", pos)
            complete = nl >= 0
            end = nl if complete else n
            first = data[pos]
            if first in _CONTINUATION or (first == 13 and data[pos + 1:pos + 2] == b"\n"):
                if start < 0:       # continuation or blank line: belongs to the record,
                    start, key = pos, None  # or, with none before it, is one of its own
                pos = end + 1
                continue
            sep = find(b":  ", pos, end)
            if complete and sep > 0 and endswith(_MAIN_B, pos, sep):
                new, line_key = True, _LAZY  # "LOG:  ": a new message (or a bad line, also one)
            else:
                m = head(data, pos, end)
                if m is None:
                    if not complete and not at_eof:
                        break       # maybe a prefix still being written
                    new, line_key = True, None
                else:
                    line_key = self._key(m)
                    if start >= 0 and m.group("severity") in _SECONDARY_B:
                        if key is _LAZY:
                            km = head(data, start, find(b"\n", start))
                            key = self._key(km) if km else None
                        new = key != line_key
                    else:
                        new = True
            if new:
                if start >= 0:
                    ends.append(pos)
                start, key = pos, line_key
            pos = end + 1
        if at_eof and start >= 0 and (not ends or ends[-1] < n):
            ends.append(n)
        return ends

    def _key(self, m: re.Match[bytes]) -> tuple[bytes | None, ...]:
        """What ties a DETAIL/STATEMENT line to its message: the prefix's %p and %c values."""
        return tuple(m.group(k) for k in self.prefix.keys)

    # -- parsing --

    def parse(self, raw: bytes) -> dict[str, Any]:
        text = raw.decode("utf-8", errors="replace")
        lines = text.split("\n")
        m = self.prefix.line.match(lines[0])
        if m is None:
            if not text.strip():
                raise BadRecord("stderr-empty", "blank line")
            raise BadRecord("stderr-no-prefix", repr(lines[0][:80]))
        severity = m.group("severity")
        if severity in SECONDARY:
            raise BadRecord("stderr-orphan", f"{severity} line without its message")
        fields: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
        self._prefix_fields(m.groupdict(), fields)
        fields["severity"] = severity
        message = lines[0][m.end():]
        if message[5:7] == ": " and _VERBOSE_STATE.match(message):
            # log_error_verbosity = verbose: "LOG:  00000: message"
            fields["sqlstate"] = fields["sqlstate"] or message[:5]
            message = message[7:]
        if len(lines) == 1 or (len(lines) == 2 and not lines[1]):  # the usual one-line record
            fields["message"] = message.rstrip("\r")
        else:
            self._more_lines(lines, message, fields)
        if severity != "LOG" and (fields["query"] or fields["internal_query"]):
            at = _AT_CHARACTER.search(fields["message"])
            if at:  # csvlog keeps the position in its own column; so do we
                fields["message"] = fields["message"][:at.start()]
                if not fields["internal_query"]:
                    fields["query_pos"] = int(at.group(1))
        return fields

    def _more_lines(self, lines: list[str], message: str, fields: dict[str, Any]) -> None:
        """The message's continuation lines and the DETAIL/STATEMENT/... lines after it."""
        target: str | None = "message"
        values: dict[str, list[str]] = {"message": [message]}
        line_re = self.prefix.line.match
        for line in lines[1:]:
            if line[:1] == "\t" or line[:1] == " ":
                if target is not None:  # PostgreSQL indents with a TAB; spaces: an edited copy
                    values[target].append(line[1:] if line[:1] == "\t" else line)
            elif line.strip():
                s = line_re(line)
                if s is None:
                    raise BadRecord("stderr-no-prefix", repr(line[:80]))
                target = SECONDARY.get(s.group("severity"))
                if target is not None:
                    values[target] = [line[s.end():]]
        for k, parts in values.items():
            value = "\n".join(parts).rstrip("\r") if len(parts) > 1 else parts[0].rstrip("\r")
            fields[k] = value if value or k == "message" else None

    def _prefix_fields(self, g: dict[str, str | None], fields: dict[str, Any]) -> None:
        """Prefix values -> record keys (empty and ``[unknown]`` -> None)."""
        for k in self._text_keys:
            value = g[k]
            if value:
                value = value.strip()
                if value and value != _UNKNOWN:
                    fields[k] = value
        try:
            for k in self._int_keys:
                value = g[k]
                if value and not value.isspace():
                    fields[k] = int(value)
            when = g[self._time_key] or ""
            if when != self._last_time:
                if self._time_key == "time_epoch":
                    self._last_stamp = datetime.fromtimestamp(float(when), tz=timezone.utc)
                else:
                    self._last_stamp, self._last_known = parse_log_time(when.strip())
                self._last_time = when
            fields["log_time"] = self._last_stamp
            if not self._last_known:
                self.notes["tz-assumed-utc"] += 1
        except ValueError as exc:
            raise BadRecord("stderr-field", str(exc)[:200]) from None
        if "client_port" in g:
            port = (g["client_port"] or "").strip()
            if port.endswith(")"):  # %r is "host(port)"; csvlog and jsonlog write "host:port"
                port = port[:-1].replace("(", ":", 1)
            fields["client"] = port or None
        elif "client_host" in g:
            fields["client"] = (g["client_host"] or "").strip() or None

    def assembler(self, source: str) -> PostgresAssembler:
        return PostgresAssembler(source, self.dialect)
