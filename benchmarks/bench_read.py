"""Throughput of the reading stage alone (framing, parsing, record assembly), run by hand.

Usage::

    taskset -c 1 python benchmarks/bench_read.py /tmp/gl/w.csv [--format postgres-csvlog]
        [--repeat 3] [--batch-bytes 4194304] [--digest]

Reads the whole log through ``FileSource.read(path, at_eof=True)`` with the real format class (the
same code path as ``usagewatch replay``: chunks of ``batch_bytes``, each framed, parsed and fed to
the format's assembler), with nothing after it (no normalization, rules or store). Prints records/s,
events/s and the CPU seconds of each run (``time.process_time``: compare these, not wall seconds,
on a busy machine), then the best run.

The format is guessed from the extension (.csv, .json/.jsonl, .slow, .log = mysql-general) unless
``--format`` names it. ``--digest`` adds an untimed pass that prints a SHA-256 of every event and of
the record/bad/skipped counters, to check that a change to the reader kept its output identical.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usagewatch.config import FollowConfig  # noqa: E402
from usagewatch.sources.files import FileSource  # noqa: E402
from usagewatch.sources.formats import formats  # noqa: E402

EXTENSIONS = {".csv": "postgres-csvlog", ".json": "postgres-jsonlog", ".jsonl": "postgres-jsonlog",
              ".slow": "mysql-slow", ".log": "mysql-general"}


def _source(path: str, fmt_name: str, batch_bytes: int, max_record_bytes: int) -> FileSource:
    cls = formats.get(fmt_name)
    return FileSource("bench", cls(cls.Options()), [path], [], batch_bytes, max_record_bytes)


def read_once(path: str, fmt_name: str, batch_bytes: int, max_record_bytes: int,
              digest: Any = None) -> tuple[int, int, float, float, Counter[str], Counter[str]]:
    """One full read: (records, events, cpu seconds, wall seconds, bad, skipped)."""
    src = _source(path, fmt_name, batch_bytes, max_record_bytes)
    records = events = 0
    bad: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    c0, w0 = time.process_time(), time.perf_counter()
    for chunk in src.read(path, at_eof=True):
        records += chunk.records
        events += len(chunk.events)
        bad.update(chunk.bad)
        skipped.update(chunk.skipped)
        if digest is not None:
            for e in chunk.events:
                digest.update(repr(e).encode())
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    src.close()
    return records, events, cpu, wall, bad, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("--format", dest="fmt", default=None, help="a format name (default: from the extension)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-bytes", type=int, default=FollowConfig().batch_bytes)
    ap.add_argument("--max-record-bytes", type=int, default=FollowConfig().max_record_bytes)
    ap.add_argument("--digest", action="store_true", help="also print a hash of the output (untimed pass)")
    args = ap.parse_args()
    fmt_name = args.fmt or EXTENSIONS.get(os.path.splitext(args.path)[1].lower())
    if fmt_name is None:
        sys.exit(f"{args.path}: cannot tell its format; pass --format ({', '.join(formats.names())})")
    path = os.path.abspath(args.path)
    size = os.path.getsize(path)
    print(f"{path}: {size / 1e6:.1f} MB, format {fmt_name}, batch {args.batch_bytes} bytes, "
          f"python {sys.version.split()[0]}, cpu affinity {sorted(os.sched_getaffinity(0))}")
    best = None
    for i in range(args.repeat):
        records, events, cpu, wall, bad, skipped = read_once(path, fmt_name, args.batch_bytes, args.max_record_bytes)
        print(f"run {i + 1}: {records:,} records, {events:,} events in {cpu:.2f} CPU s ({wall:.2f} wall s): "
              f"{records / cpu:,.0f} records/s, {events / cpu:,.0f} events/s (CPU)")
        if best is None or cpu < best[2]:
            best = (records, events, cpu)
    assert best is not None
    records, events, cpu = best
    print(f"best: {cpu:.2f} CPU s, {records / cpu:,.0f} records/s, {events / cpu:,.0f} events/s, "
          f"{size / 1e6 / cpu:.1f} MB/s")
    if args.digest:
        h = hashlib.sha256()
        records, events, _, _, bad, skipped = read_once(path, fmt_name, args.batch_bytes, args.max_record_bytes, h)
        h.update(repr((records, events, sorted(bad.items()), sorted(skipped.items()))).encode())
        print(f"digest: {h.hexdigest()}  ({records} records, {events} events, bad {dict(bad)}, "
              f"skipped {dict(skipped)})")


if __name__ == "__main__":
    main()
