"""``usagewatch replay -j N`` against ``-j 1`` on the same log, in alternating runs, run by hand.

Usage::

    python benchmarks/bench_jobs.py /tmp/gl1m/w.csv [--format postgres-csvlog] [--jobs 2] [--repeat 3]

Each run replays the whole log into a fresh SQLite store with the stock rules, in a child process
that calls ``usagewatch.cli.replay.replay`` and then reports its own CPU (``RUSAGE_SELF``: the
parent, which reads, splits and saves) and that of its reaped workers (``RUSAGE_CHILDREN``). Runs
alternate ``-j 1`` and ``-j N`` so that a machine whose speed drifts (single runs vary by 10-15% on
the project's VMs) slows both alike; the speed-up is taken on the medians. Prints one line per run,
then the medians and the speed-up. The log is whatever ``genlog.py`` wrote (or any log).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_read import EXTENSIONS  # the format a log's extension names (this directory is on sys.path)

CHILD = """
import json, resource, sys, time
from usagewatch import config
from usagewatch.cli.replay import replay
t = time.perf_counter()
stats = replay(config.load(sys.argv[1]), jobs=int(sys.argv[2]))
wall = time.perf_counter() - t
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "parent_cpu": me.ru_utime + me.ru_stime, "workers_cpu": kids.ru_utime + kids.ru_stime,
                  "parent_rss_mb": me.ru_maxrss / 1024, "worker_rss_mb": kids.ru_maxrss / 1024,
                  "queries": stats.queries, "findings": stats.new_findings}))
"""


def run(log: Path, fmt: str, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as d:
        cfg = Path(d) / "config.yaml"
        cfg.write_text(f"database: sqlite:///{d}/usagewatch.db\n"
                       f"sources:\n  - {{name: bench, format: {fmt}, paths: [{json.dumps(str(log))}]}}\n")
        out = subprocess.run([sys.executable, "-c", CHILD, str(cfg), str(jobs)], check=True, cwd=d,
                             capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--format", help="the log's format (default: from its extension)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    fmt = args.format or EXTENSIONS.get(args.log.suffix, "postgres-csvlog")
    print(f"{args.log} ({args.log.stat().st_size / 1e6:.1f} MB, {fmt}), -j 1 against -j {args.jobs}, "
          f"{args.repeat} alternating runs each; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    walls: dict[int, list[float]] = {1: [], args.jobs: []}
    findings = set()
    for i in range(args.repeat):
        for jobs in (1, args.jobs):
            r = run(args.log, fmt, jobs)
            walls[jobs].append(r["wall"])
            findings.add((r["queries"], r["findings"]))
            print(f"run {i + 1} -j {jobs}: wall {r['wall']:.2f} s, parent CPU {r['parent_cpu']:.2f} s, workers' CPU "
                  f"{r['workers_cpu']:.2f} s, peak RSS {r['parent_rss_mb']:.0f} / {r['worker_rss_mb']:.0f} MB "
                  f"(parent / largest worker), {r['queries']:,} queries, {r['findings']:,} new findings", flush=True)
    one, many = statistics.median(walls[1]), statistics.median(walls[args.jobs])
    print(f"median wall: -j 1 {one:.2f} s, -j {args.jobs} {many:.2f} s: {one / many:.2f}x"
          + ("" if len(findings) == 1 else f"; DIFFERENT query/finding counts between runs: {sorted(findings)}"))


if __name__ == "__main__":
    main()
