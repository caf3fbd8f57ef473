"""Log output: one line per event on stderr (journald keeps it), as logfmt, JSON or plain text.

``setup_logging(fmt, level)`` installs ONE handler on the root logger (calling it again replaces
it). Structured fields ride on the standard ``extra``::

    log.info("new finding %d: %s", fid, title, extra={"rule": rule, "source": "warehouse"})

logfmt::

    ts=2026-11-26T05:00:00.123Z level=info logger=usagewatch.daemon msg="following 1 sources" source=warehouse

JSON (one object per line)::

    {"ts": "2026-11-26T05:00:00.123Z", "level": "info", "logger": "usagewatch.daemon", "msg": "following 1 sources"}

An exception's traceback is one field (``exc_info``), its newlines escaped, so a record stays one
line. Passwords in URLs (``scheme://user:secret@host``) are masked in every format, whatever logs them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import IO, Any

FORMATS = ("logfmt", "json", "text")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: attributes every LogRecord has: anything else on a record came from ``extra``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@")
_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def redact(text: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def level_name(levelno: int) -> str:
    return {logging.WARNING: "warning", logging.CRITICAL: "critical"}.get(levelno, logging.getLevelName(levelno).lower())


def timestamp(created: float) -> str:
    """UTC, milliseconds, ``Z``: ``2026-11-26T05:00:00.123Z``."""
    t = datetime.fromtimestamp(created, timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields given with ``extra=`` (in the order given)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return redact("\n".join(parts)) if parts else None


# --- logfmt --------------------------------------------------------------------------------------------
def logfmt_value(value: Any) -> str:
    """A value as logfmt writes it: bare when it can be, else double-quoted with ``\\`` ``"``
    and control characters escaped (``\\n``, ``\\t``, ``\\u001b``), so one record is one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    out = []
    for ch in text:
        if ch == "\\" or ch == '"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def logfmt_key(key: str) -> str:
    return _KEY_BAD.sub("_", key) or "_"


def parse_logfmt(line: str) -> dict[str, str]:
    """Read one logfmt line back (for tests and scripts): values unescaped, ``null`` kept as text."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        j = line.find("=", i)
        if j < 0:
            break
        key = line[i:j]
        i = j + 1
        if i < n and line[i] == '"':
            i += 1
            buf = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    nxt = line[i + 1]
                    if nxt == "u":
                        buf.append(chr(int(line[i + 2:i + 6], 16)))
                        i += 6
                        continue
                    buf.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                    i += 2
                    continue
                buf.append(line[i])
                i += 1
            i += 1  # the closing quote
            out[key] = "".join(buf)
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            out[key] = line[i:j]
            i = j
    return out


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"ts": timestamp(record.created), "level": level_name(record.levelno),
                                  "logger": record.name, "msg": redact(record.getMessage())}
        for k, v in extras(record).items():
            fields.setdefault(logfmt_key(k), redact(v) if isinstance(v, str) else v)
        exc = _exception(self, record)
        if exc:
            fields["exc_info"] = exc
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in fields.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"ts": timestamp(record.created), "level": level_name(record.levelno),
                                  "logger": record.name, "msg": redact(record.getMessage())}
        for k, v in extras(record).items():
            fields.setdefault(k, redact(v) if isinstance(v, str) else v)
        exc = _exception(self, record)
        if exc:
            fields["exc_info"] = exc
        return json.dumps(fields, default=lambda v: redact(str(v)), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The human format the CLI always had; ``extra`` fields follow the message as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        more = extras(record)
        if more:
            tail = " ".join(f"{logfmt_key(k)}={logfmt_value(redact(v) if isinstance(v, str) else v)}"
                            for k, v in more.items())
            head, sep, rest = line.partition("\n")  # after the message, before a traceback
            line = f"{head} {tail}{sep}{rest}"
        return line


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "logfmt":
        return LogfmtFormatter()
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (not the one at setup time)."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def setup_logging(fmt: str = "text", level: str = "warning", stream: IO[str] | None = None) -> logging.Handler | None:
    """Log to stderr (or ``stream``) in ``fmt`` at ``level`` and above; replaces the handler an
    earlier call installed. When something else already configured the root logger (a program
    embedding usagewatch, pytest) and no ``stream`` is given, its handlers and level are left as
    they are, as ``logging.basicConfig`` does. Returns the handler installed, if any."""
    f = formatter(fmt)
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_usagewatch", False)]:
        root.removeHandler(h)
    if stream is None and root.handlers:
        return None
    handler = _StderrHandler(stream)
    handler._usagewatch = True  # type: ignore[attr-defined]
    handler.setFormatter(f)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler
