"""FileSource: reading from a saved position, only complete records, bad records counted and
skipped, a replaced or truncated file read from its start."""

from __future__ import annotations

import os

from usagewatch.config import SAMPLE_LOG
from usagewatch.sources.files import FileSource
from usagewatch.sources.formats import formats

SAMPLE = SAMPLE_LOG.read_bytes()


def source(path) -> FileSource:
    return FileSource("t", formats.get("postgres-csvlog")(), [str(path)], batch_bytes=8192)


def read_all(src: FileSource, path, at_eof=False):
    chunks = list(src.read(str(path), at_eof=at_eof))
    return chunks, [e for c in chunks for e in c.events]


def test_whole_file_equals_the_same_bytes_fed_in_odd_pieces(tmp_path):
    log = tmp_path / "a.csv"
    log.write_bytes(SAMPLE)
    _, whole = read_all(source(log), log, at_eof=True)

    log2 = tmp_path / "b.csv"
    log2.write_bytes(b"")
    src = source(log2)
    pieces = []
    for i in range(0, len(SAMPLE), 777):
        with log2.open("ab") as f:
            f.write(SAMPLE[i:i + 777])
        chunks, events = read_all(src, log2)
        pieces += events
        for c in chunks:  # the position only ever lands on a record boundary
            assert c.cursor.offset <= log2.stat().st_size
            assert SAMPLE[c.cursor.offset - 1:c.cursor.offset] == b"\n"
    pieces += [e for c in src.read(str(log2), at_eof=True) for e in c.events]
    strip = lambda evs: [(e.ts, e.user, e.sql, e.params, e.duration_ms) for e in evs]  # noqa: E731
    assert strip(pieces) == strip(whole)


def test_a_bad_record_is_counted_and_skipped(tmp_path):
    log = tmp_path / "a.csv"
    lines = SAMPLE.split(b"\n")
    log.write_bytes(b"\n".join(lines[:40]) + b"\nthis is not a csvlog record\n" + b"\n".join(lines[40:]))
    chunks, events = read_all(source(log), log, at_eof=True)
    _, clean = read_all(source(tmp_path / "x.csv"), tmp_path / "x.csv")  # missing file: nothing
    assert clean == []
    bad = sum((c.bad for c in chunks), start=type(chunks[0].bad)())
    assert bad == {"csv-columns": 1}
    log.write_bytes(SAMPLE)
    _, reference = read_all(source(log), log, at_eof=True)
    assert len(events) == len(reference)


def test_a_truncated_or_replaced_file_is_read_from_the_start(tmp_path):
    log = tmp_path / "a.csv"
    log.write_bytes(SAMPLE)
    src = source(log)
    _, first = read_all(src, log, at_eof=True)
    assert read_all(src, log)[1] == []  # nothing new
    half = SAMPLE[: SAMPLE.index(b"\n", len(SAMPLE) // 3) + 1]
    log.write_bytes(half)  # truncated in place, shorter than the saved position
    _, again = read_all(src, log, at_eof=True)
    assert 0 < len(again) < len(first)
    os.remove(log)
    # a new file under the same name, most likely on the freed inode, larger than our position and
    # with other first bytes: the head check must notice it is not the file we were reading
    other = SAMPLE.replace(b"2026-", b"2027-", 1)
    log.write_bytes(other)
    _, third = read_all(src, log, at_eof=True)
    assert len(third) == len(first)


def test_a_restart_resumes_from_the_committed_cursor(tmp_path):
    log = tmp_path / "a.csv"
    cut = SAMPLE.index(b"\n", len(SAMPLE) // 2) + 1
    log.write_bytes(SAMPLE[:cut])
    src = source(log)
    chunks, before = read_all(src, log)
    cursor = chunks[-1].cursor
    with log.open("ab") as f:
        f.write(SAMPLE[cut:])
    restarted = source(log)
    restarted.load({str(log): cursor})
    _, after = read_all(restarted, log, at_eof=True)
    _, whole = read_all(source(log), log, at_eof=True)
    assert len(before) + len(after) == len(whole)


def test_a_last_record_that_only_the_next_would_end_is_taken_once_the_file_is_idle(tmp_path):
    """stderr (and slow-log) records end where the next begins: a quiet server's last statement
    must still arrive, once, and not again after a restart."""
    from tests.helpers.postgres import STDERR_PREFIX

    fmt_cls = formats.get("postgres-stderr")
    fmt = fmt_cls(fmt_cls.Options(log_line_prefix=STDERR_PREFIX))
    sample = SAMPLE_LOG.with_suffix(".log").read_bytes()
    log = tmp_path / "pg.log"
    log.write_bytes(sample)
    _, whole = read_all(FileSource("t", fmt, [str(log)]), log, at_eof=True)

    src = FileSource("t", fmt, [str(log)])
    chunks, following = read_all(src, log)  # the daemon's way: no end of file
    idle = list(src.flush_idle(0.0))
    got = following + [e for c in idle for e in c.events]
    strip = lambda evs: [(e.ts, e.user, e.sql, e.params) for e in evs]  # noqa: E731
    assert strip(got) == strip(whole)
    cursor = (idle or chunks)[-1].cursor
    assert cursor.offset == len(sample)
    again = FileSource("t", fmt, [str(log)])
    again.load({cursor.key: cursor})
    assert read_all(again, log)[1] == [] and list(again.flush_idle(0.0)) == []
