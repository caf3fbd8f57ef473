"""What the MySQL/MariaDB slow and general log formats share: options, timestamps, banners, framing.

Both logs are line-oriented text whose records span several lines and end only where the next record
begins, so both frame the same way: find where records START (with a regex or ``bytes.find``, C
loops, never a Python loop per byte) and cut before each start. The last record of the data is
complete only when a next one has begun or when no more data will come (``at_eof``).

Both logs print the same three-line banner whenever the server starts or the log is reopened
(``FLUSH LOGS``), also in the middle of a file::

    /usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:
    Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock
    Time                 Id Command    Argument

Timestamps come in two shapes: ISO-8601 with a zone (MySQL 5.7+: ``2016-06-07T19:07:02.558338Z``
or ``+08:00`` with ``log_timestamps=SYSTEM``) and the old ``YYMMDD H:MM:SS`` (MySQL up to 5.6 and
every MariaDB), which is the server's local time without a zone: ``options.timezone`` names it.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from usagewatch.sources.formats.base import FormatOptions, LogFormat

UTC = timezone.utc

# The first line of a start-up banner is "<path>, Version: <version> started with:".
_BANNER_PROBE, _BANNER_END = b", Version: ", b"started with:"


class MysqlOptions(FormatOptions):
    """Options of ``mysql-slow`` and ``mysql-general``.

    ``timezone``: the zone of timestamps written without one (``YYMMDD H:MM:SS``: MariaDB, MySQL up
    to 5.6; the server writes its local time). An IANA name such as ``Europe/Oslo``; default UTC.
    ISO-8601 timestamps carry their zone and ignore it; the slow log's ``SET timestamp=N`` is epoch
    seconds and needs no zone either.
    """

    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone_of(value)
        return value


def zone_of(name: str) -> tzinfo:
    """tzinfo for an IANA zone name ("UTC" without a lookup); ValueError when unknown."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'unknown time zone "{name}" (use an IANA name such as "Europe/Oslo")') from None


class TimeParser:
    """Parses the two timestamp shapes, remembering the last text (consecutive records share it)."""

    def __init__(self, tz: tzinfo):
        self.tz = tz
        self._last: tuple[str, datetime] | None = None

    def __call__(self, text: str) -> datetime:
        """``2016-06-07T19:07:02.558338Z`` / ``+08:00`` / ``261126  4:15:07[.frac]`` -> aware
        datetime. Raises ValueError when it is neither."""
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        s = text.strip()
        if "T" in s:
            dt = datetime.fromisoformat(s)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=self.tz)
        else:
            date, clock = s.split(None, 1)
            clock = clock.strip()
            if len(date) != 6 or not date.isdigit():
                raise ValueError(f"not a timestamp: {text!r}")
            frac = 0
            if "." in clock:  # some servers print odd fractions (19:56:06.0000001967)
                clock, digits = clock.split(".", 1)
                frac = int((digits + "000000")[:6])
            h, m, sec = (int(p) for p in clock.split(":"))
            yy = int(date[:2])
            dt = datetime(2000 + yy if yy < 70 else 1900 + yy, int(date[2:4]), int(date[4:6]),
                          h, m, sec, frac, tzinfo=self.tz)
        self._last = (text, dt)
        return dt


def banner_starts(data: bytes) -> list[int]:
    """Offsets of the banner first lines in ``data``: each "started with:" found by ``find``
    (rare), checked to end a line that has ", Version: "."""
    out: list[int] = []
    pos = data.find(_BANNER_END)
    while pos >= 0:
        line_start = data.rfind(b"\n", 0, pos) + 1
        line_end = data.find(b"\n", pos)
        if data.find(_BANNER_PROBE, line_start, pos) >= 0 and not data[pos + len(_BANNER_END):line_end if line_end >= 0 else len(data)].strip():
            out.append(line_start)
        pos = data.find(_BANNER_END, pos + 1)
    return out


def is_banner(text: str) -> bool:
    """Is this record a start-up banner (its first line ends in "started with:")?"""
    nl = text.find("\n")
    first = text if nl < 0 else text[:nl]  # not text.split("\n", 1)[0], which copies the rest too
    return ", Version: " in first and first.rstrip().endswith("started with:")


def ends_before(starts: list[int], size: int, at_eof: bool) -> list[int]:
    """Record ends from record starts: each start > 0 ends the record before it; the data's end
    ends the last record only when ``at_eof``."""
    ends = [s for s in starts if s > 0]
    last = ends[-1] if ends else 0
    if at_eof and last < size:
        ends.append(size)
    return ends


class MysqlFormat(LogFormat):
    """What both MySQL logs share: the dialect, the options, the time parser in the server's zone,
    and taking the last entry when the file goes idle (an entry ends only where the next begins)."""

    dialect = "mysql"
    Options = MysqlOptions
    frame_when_idle = True

    def __init__(self, options: FormatOptions | None = None) -> None:
        super().__init__(options)
        tz = self.options.timezone if isinstance(self.options, MysqlOptions) else "UTC"
        self._time = TimeParser(zone_of(tz))
