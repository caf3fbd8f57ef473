"""Throughput of the rules stage alone (the stock rules' ``RuleEngine``), run by hand.

Usage::

    taskset -c 0 python benchmarks/bench_rules.py /tmp/gl/w.csv [--format postgres-csvlog]
        [--queries 100000] [--group 20000] [--repeat 3]

Reads and normalizes the first ``--queries`` queries of the log once (untimed), then feeds them to a
fresh engine with the stock rules ``--repeat`` times, the way ``Evaluator.evaluate`` does per replay
group of ``--group`` queries: ``feed`` per event, then ``updates`` and ``take_state`` per group.
Prints µs per event and CPU seconds (``time.process_time``) of feeding, updates and taking the
window changes, per run; compare CPU seconds on a busy machine. Also prints a digest of the finding
updates (rule, key, episode, count, distinct values), to check that a change kept the results.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usagewatch.config import FollowConfig, stock_rules_dir  # noqa: E402
from usagewatch.model import NormalizedEvent  # noqa: E402
from usagewatch.normalize import Normalizer  # noqa: E402
from usagewatch.rules import RuleEngine, load_rules  # noqa: E402
from usagewatch.sources.files import FileSource  # noqa: E402
from usagewatch.sources.formats import formats  # noqa: E402


def events_of(path: str, fmt_name: str, limit: int) -> list[NormalizedEvent]:
    cls = formats.get(fmt_name)
    follow = FollowConfig()
    src = FileSource("bench", cls(cls.Options()), [path], [], follow.batch_bytes, follow.max_record_bytes)
    normalizers: dict[str, Normalizer] = {}
    out: list[NormalizedEvent] = []
    for chunk in src.read(path, at_eof=True):
        for ev in chunk.events:
            n = normalizers.get(ev.dialect) or normalizers.setdefault(ev.dialect, Normalizer(dialect=ev.dialect))
            out.append(NormalizedEvent(ev, n.normalize(ev.sql, ev.params)))
            if len(out) >= limit:
                return out
    return out


def run_once(events: list[NormalizedEvent], group: int) -> tuple[float, float, float, str]:
    engine = RuleEngine(load_rules([str(stock_rules_dir())]))
    digest = hashlib.sha256()
    feed = take = upd = 0.0
    for a in range(0, len(events), group):
        c0 = time.process_time()
        touched: list[tuple[str, str]] = []
        for ne in events[a:a + group]:
            touched.extend(engine.feed(ne))
        c1 = time.process_time()
        updates = engine.updates(touched)
        c2 = time.process_time()
        engine.take_state()
        c3 = time.process_time()
        feed, upd, take = feed + c1 - c0, upd + c2 - c1, take + c3 - c2
        for u in updates:
            digest.update(repr((u.rule, u.key, u.episode, u.count, u.distinct_values)).encode())
    return feed, upd, take, digest.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("--format", default="postgres-csvlog")
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--group", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    events = events_of(args.log, args.format, args.queries)
    print(f"{len(events):,} normalized events from {args.log}")
    for i in range(args.repeat):
        feed, upd, take, digest = run_once(events, args.group)
        total = feed + upd + take
        print(f"run {i + 1}: {total * 1e6 / len(events):.2f} us/event (feed {feed:.2f} s, updates {upd:.2f} s, "
              f"take_state {take:.2f} s CPU); updates digest {digest}")


if __name__ == "__main__":
    main()
