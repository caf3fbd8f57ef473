"""Replay throughput, run by hand (never in the test suite):

    python benchmarks/bench_replay.py [--copies 100]

Builds a log from the shipped sample (real PostgreSQL 15 csvlog of the 136-query story) repeated
``--copies`` times, each copy shifted by one day so the stock rules fire again in every copy, then
replays it through the full pipeline (stock rules, SQLite store) and prints queries/s, MB/s and
peak RSS. Also times the sample alone, as `usagewatch replay` on the embedded default would.
"""

from __future__ import annotations

import argparse
import re
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from usagewatch import config
from usagewatch.cli.replay import replay

DAY = re.compile(rb"(?m)^(\d{4}-\d{2}-\d{2}) ")


def amplified(sample: bytes, copies: int) -> bytes:
    first = date.fromisoformat(DAY.search(sample).group(1).decode())  # type: ignore[union-attr]
    out = []
    for k in range(copies):
        day = (first + timedelta(days=k)).isoformat().encode()
        out.append(sample.replace(first.isoformat().encode(), day))
    return b"".join(out)


def run(log: Path, workdir: Path) -> tuple[float, int, int]:
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(f"database: sqlite:///{workdir}/uw.db\nsources:\n"
                        f"  - {{name: bench, format: postgres-csvlog, paths: ['{log}']}}\n")
    cfg = config.load(cfg_path)
    t0 = time.perf_counter()
    stats = replay(cfg)
    elapsed = time.perf_counter() - t0
    return elapsed, stats.queries, stats.new_findings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100)
    args = ap.parse_args()
    sample = config.SAMPLE_LOG.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "one").mkdir()
        (d / "one" / "sample.csv").write_bytes(sample)
        t, q, f = run(d / "one" / "sample.csv", d / "one")
        print(f"sample ({len(sample) / 1e6:.2f} MB): {q} queries, {f} findings in {t:.3f} s "
              f"= {q / t:,.0f} queries/s (includes loading rules and creating the store)")
        big = amplified(sample, args.copies)
        (d / "big").mkdir()
        (d / "big" / "big.csv").write_bytes(big)
        t, q, f = run(d / "big" / "big.csv", d / "big")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{args.copies} copies ({len(big) / 1e6:.1f} MB): {q:,} queries, {f} findings in {t:.2f} s "
              f"= {q / t:,.0f} queries/s, {len(big) / 1e6 / t:.1f} MB/s; peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
