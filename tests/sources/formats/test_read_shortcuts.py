"""The reader's shortcuts give what the long way gives: the PostgreSQL timestamp cache (last text,
then per second and zone) across second boundaries, DST changes, zone switches and odd shapes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from usagewatch.sources.files import FileSource
from usagewatch.sources.formats import formats
from usagewatch.sources.formats import postgres_events as pe

ODD_TIMES = [
    "2026-11-26 04:15:07.123 UTC", "2026-11-26 04:15:07.123 UTC", "2026-11-26 04:15:07.124 UTC",
    "2026-11-26 04:15:07.999 UTC", "2026-11-26 04:15:08.000 UTC", "2026-11-26 04:15:07.123 CEST",
    "2026-11-26 04:15:07.123 CET", "2026-11-26 04:15:07.123 XYZT", "2026-11-26 04:15:07.123 +0530",
    "2026-11-26 04:15:07.123 ", "2026-11-26 04:15:07.123", "2026-11-26 04:15:07 UTC",
    "2026-11-26 04:15:07.123456 UTC", "2026-11-26 04:15:07.12 UTC", "2026-11-26T04:15:07.123 UTC",
    "2026-11-26 04:15:07.1a3 UTC", "2026-11-26 04:15:07.-12 UTC", "2026-11-26 04:15:07.1_2 UTC",
    "2026-11-26 04:15:07.\uff11\uff12\uff13 UTC", "2026-11-26 04:15:07.123 A B", "2026-11-26 04:15:07.123 UTC ",
    "2026-11-26 24:15:07.123 UTC", "2026-13-26 04:15:07.123 UTC", "2026-11-26 04:15:60.123 UTC",
    "20261126T041507.123 UTC", "2026-W48-4T04:15:07.123 UTC", "2026-11-26 04:15+02.123 UTC",
    "2026-11-26 04:15:07+02:00", "2026-11-26 04:15:07.123+02:00 UTC", "9999-12-31 23:59:59.999 UTC",
    "not a time at all, really", "", "2026-11-26 04:15:07.123 UTC",
]


def _outcome(parse, text: str):
    try:
        dt, known = parse(text)
    except ValueError:
        return "ValueError"
    return dt, dt.tzinfo, dt.utcoffset(), known


@pytest.mark.parametrize("order", ["forward", "backward", "twice"])
def test_cached_timestamps_equal_the_uncached_parse(order: str) -> None:
    texts = {"forward": ODD_TIMES, "backward": ODD_TIMES[::-1], "twice": ODD_TIMES + ODD_TIMES}[order]
    pe._SECONDS.clear()
    for text in texts:
        assert _outcome(pe.parse_log_time, text) == _outcome(pe._parse_log_time, text), text


def test_the_second_cache_is_bounded() -> None:
    pe._SECONDS.clear()
    start = datetime(2026, 11, 26)
    for s in range(pe._SECONDS_MAX + 10):
        t = start + timedelta(seconds=s)
        assert pe.parse_log_time(f"{t:%Y-%m-%d %H:%M:%S}.500 UTC")[0] == (t + timedelta(milliseconds=500)).replace(
            tzinfo=pe.UTC)
    assert len(pe._SECONDS) <= pe._SECONDS_MAX


def _record(ts: str, line: int, sql: str) -> bytes:
    return (f'{ts},"kim","wh",7136,"127.0.0.1:41290",6b07b39d.1be0,{line},"SELECT",2026-10-25 01:00:00 CEST,'
            f'2/12,0,LOG,00000,"duration: 1.000 ms  statement: {sql}",,,,,,,,,"psql","client backend",,0\n').encode()


def test_event_times_across_a_dst_change_and_a_second_boundary(tmp_path) -> None:
    """What a Europe/Oslo server writes around the end of summer time: the clock goes from 02:59:59
    CEST back to 02:00:00 CET, so the same wall-clock text comes twice, an hour apart, told apart
    only by the zone; and milliseconds that cross a second."""
    times = [
        "2026-10-25 02:30:00.250 CEST", "2026-10-25 02:30:00.250 CEST", "2026-10-25 02:30:00.999 CEST",
        "2026-10-25 02:30:01.000 CEST", "2026-10-25 02:59:59.999 CEST", "2026-10-25 02:00:00.000 CET",
        "2026-10-25 02:30:00.250 CET", "2026-10-25 02:30:00.250 CEST", "2026-10-25 02:30:00.250 UTC",
        "2026-10-25 02:30:00.250 XYZT",
    ]
    log = tmp_path / "dst.csv"
    log.write_bytes(b"".join(_record(t, i + 1, f"SELECT {i}") for i, t in enumerate(times)))
    fmt = formats.get("postgres-csvlog")()
    src = FileSource("t", fmt, [str(log)], batch_bytes=100)
    events = [e for c in src.read(str(log), at_eof=True) for e in c.events]
    got = [e.ts.isoformat() for e in sorted(events, key=lambda e: int(e.sql.split()[1]))]
    assert got == [
        "2026-10-25T02:30:00.250000+02:00", "2026-10-25T02:30:00.250000+02:00", "2026-10-25T02:30:00.999000+02:00",
        "2026-10-25T02:30:01+02:00", "2026-10-25T02:59:59.999000+02:00", "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00.250000+01:00", "2026-10-25T02:30:00.250000+02:00", "2026-10-25T02:30:00.250000+00:00",
        "2026-10-25T02:30:00.250000+00:00",
    ]
    assert events[5].ts - events[4].ts == timedelta(milliseconds=1)  # 02:59:59.999 CEST -> 02:00:00 CET
    assert fmt.notes["tz-assumed-utc"] == 1
