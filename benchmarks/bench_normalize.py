"""Throughput of usagewatch.normalize, run by hand: ``python benchmarks/bench_normalize.py``.

Prints queries/s for a cache-hit-heavy mix (a few hundred shapes, varying literals: what a real
warehouse stream looks like) and an all-unique-shapes mix (every query parsed), plus the cost of one
cache hit for a typical ~200-character query. To compare with the compiled sqlglot build, run it once
with and once without ``sqlglotc`` installed in the venv (``pip install sqlglotc``); the header says
which one is in use. No assertions: numbers depend on the machine.

``--realistic N`` instead runs the (sql, bind params) of the first N queries of the ``genlog.py``
workload (``--seed``, default 1: the same queries as ``genlog.py --seed 1``; extended-protocol
executions as their ``$n`` text plus bind values, the rest as inline SQL) through one Normalizer,
``--repeat`` times, and prints the CPU seconds of each run and microseconds per query for cache hits
and for the rest (new shapes, uncacheable shapes, parse failures). Pin it to one core on a shared
machine: ``taskset -c 1 python benchmarks/bench_normalize.py --realistic 100000 --repeat 3``.

``--dump FILE`` (with ``--realistic``) pickles the list of NormalizedQuery results of one run, and
``--compare A B`` reports how two such dumps differ: run it with the code before and after a change
to check that the change keeps every observable output.
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usagewatch.normalize import Normalizer  # noqa: E402

TEMPLATES = [
    "SELECT o.id, o.total, o.created_at FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id "
    "WHERE o.company_id = {n} AND o.status = '{s}' AND o.created_at >= '2024-01-{d:02d}' ORDER BY o.created_at DESC LIMIT 100",
    "SELECT count(*) FROM events where company_id in ({lst}) and kind = '{s}'  -- dashboard {n}",
    "INSERT INTO audit_log (user_id, action, detail) VALUES ({n}, '{s}', 'x'), ({n}, '{s}', 'y')",
    "UPDATE accounts SET balance = {n}, updated_at = now() WHERE id = {n} AND version = {d}",
    "SELECT date_trunc('day', ts) AS day, sum(amount) FROM payments WHERE merchant_id = {n} GROUP BY 1 ORDER BY 1",
]


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        n=rng.randint(1, 10**6), s=rng.choice(["open", "paid", "void"]), d=rng.randint(1, 28),
        lst=", ".join(str(rng.randint(1, 9999)) for _ in range(rng.randint(1, 40))),
    )


def _shape(template: str, k: int) -> str:
    """Variant ``k`` of a template: one more column, so a different shape (fingerprint)."""
    if template.startswith("INSERT"):
        return template.replace("audit_log", f"audit_log_{k}")
    if template.startswith("UPDATE"):
        return template.replace("SET ", f"SET col_{k} = {{n}}, ", 1)
    return template.replace(" FROM ", f", col_{k} FROM ", 1)


def _workload(rng: random.Random, count: int, shapes: int) -> list[str]:
    """``count`` queries over ``shapes`` shapes with fresh literal values each time."""
    variants = [_shape(TEMPLATES[k % len(TEMPLATES)], k) for k in range(shapes)]
    return [_fill(rng, variants[rng.randrange(shapes)]) for _ in range(count)]


def _rate(n: Normalizer, queries: list[str]) -> float:
    t0 = time.perf_counter()
    for q in queries:
        n.normalize(q)
    return len(queries) / (time.perf_counter() - t0)


def realistic_queries(count: int, seed: int = 1) -> list[tuple[str, tuple[str, ...]]]:
    """(sql, params) of the first ``count`` executions of the ``genlog.py`` workload, as a PostgreSQL
    source hands them on: extended-protocol ones as their ``$n`` text and bind values."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import genlog

    out: list[tuple[str, tuple[str, ...]]] = []

    class Collect(genlog.Writer):
        def query(self, q: genlog.Query) -> None:
            out.append((q.sql, ()) if q.esql is None else (q.esql, q.params))

    genlog.Workload(seed, 500.0, 0.02, False).run(count, Collect())
    return out


def run_realistic(queries: Sequence[tuple[str, tuple[str, ...]]], keep: bool = False) -> tuple[list[object], dict[str, float]]:
    """One fresh Normalizer over ``queries``: (results if ``keep``, timings). Per-call times are this
    thread's CPU time (not wall time, which another process on the same core inflates); reading that
    clock costs ~0.6 us, paid twice per call and included in ``cpu`` but not in the per-query times.
    Results are only kept when asked: 100k live results make each full garbage collection (which
    the parse trees' reference cycles trigger) several times dearer than in a pipeline, which drops
    each result once the rules have seen it."""
    n = Normalizer("postgres")
    stats = n.stats
    normalize = n.normalize
    clock = time.thread_time
    results: list[object] = []
    append = results.append
    hit_t = other_t = 0.0
    hits = others = 0
    c0 = time.process_time()
    for sql, params in queries:
        before = stats.hits
        t0 = clock()
        q = normalize(sql, params)
        dt = clock() - t0
        if keep:
            append(q)
        if stats.hits != before:
            hit_t += dt
            hits += 1
        else:
            other_t += dt
            others += 1
    cpu = time.process_time() - c0
    s = n.stats
    return results, {"cpu": cpu, "hits": hits, "others": others, "hit_us": hit_t / max(hits, 1) * 1e6,
                     "other_us": other_t / max(others, 1) * 1e6, "misses": s.misses, "uncached": s.uncached,
                     "unparsed": s.unparsed}


def compare_dumps(a: str, b: str) -> int:
    """Print how two ``--dump`` files differ; the number of differing results."""
    with open(a, "rb") as f:
        left = pickle.load(f)
    with open(b, "rb") as f:
        right = pickle.load(f)
    diffs = 0 if len(left) == len(right) else abs(len(left) - len(right))
    for i, (x, y) in enumerate(zip(left, right, strict=False)):
        if x != y:
            diffs += 1
            if diffs <= 5:
                fields = [f for f in x.__dataclass_fields__ if getattr(x, f) != getattr(y, f)]
                print(f"query {i}: {', '.join(fields)} differ")
                for f in fields:
                    print(f"  {f}: {getattr(x, f)!r}\n  {' ' * len(f)}  {getattr(y, f)!r}")
    print(f"compared {min(len(left), len(right))} results ({len(left)} vs {len(right)}): {diffs} differences")
    return diffs


def main() -> None:
    import sqlglot
    import sqlglot.parser

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realistic", type=int, metavar="N", help="run the first N genlog.py queries instead")
    ap.add_argument("--seed", type=int, default=1, help="genlog.py seed for --realistic (default 1)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of --realistic (a fresh Normalizer each)")
    ap.add_argument("--dump", metavar="FILE", help="pickle the results of the (first) --realistic run")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two --dump files and exit")
    args = ap.parse_args()
    if args.compare:
        sys.exit(1 if compare_dumps(*args.compare) else 0)

    # sqlglotc installs compiled modules into the sqlglot package itself (no module of its own).
    build = "sqlglotc (compiled)" if sqlglot.parser.__file__.endswith(".so") else "pure-Python sqlglot"

    print(f"sqlglot {sqlglot.__version__}, {build}, Python {sys.version.split()[0]}")
    if args.realistic is not None:
        queries = realistic_queries(args.realistic, args.seed)
        print(f"genlog workload, seed {args.seed}: {len(queries)} queries, "
              f"{sum(1 for _, p in queries if p)} with bind params")
        runs = []
        for k in range(args.repeat):
            results, t = run_realistic(queries, keep=k == 0 and bool(args.dump))
            runs.append(t)
            print(f"run {k + 1}: CPU {t['cpu']:6.2f} s  hits {t['hits']:6d} x {t['hit_us']:6.1f} us   "
                  f"others {t['others']:5d} x {t['other_us']:7.1f} us  (misses {t['misses']}, "
                  f"uncached {t['uncached']}, unparsed {t['unparsed']})")
            if k == 0 and args.dump:
                with open(args.dump, "wb") as f:
                    pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
            del results
        if len(runs) > 1:
            print(f"best:  CPU {min(t['cpu'] for t in runs):6.2f} s  hits {min(t['hit_us'] for t in runs):6.1f} us  "
                  f"others {min(t['other_us'] for t in runs):7.1f} us")
        return
    rng = random.Random(136)

    n = Normalizer("postgres")
    hit_mix = _workload(rng, 30000, shapes=300)
    _rate(n, _workload(rng, 3000, shapes=300))  # warm up: each shape parsed once
    rate = _rate(n, hit_mix)
    s = n.stats
    print(f"hit-heavy mix (300 shapes): {rate:10.0f} queries/s   (hits {s.hits}, misses {s.misses}, uncached {s.uncached})")

    n = Normalizer("postgres")
    unique = [_fill(rng, _shape(TEMPLATES[k % len(TEMPLATES)], k)) for k in range(1500)]
    rate = _rate(n, unique)
    print(f"all-unique shapes:          {rate:10.0f} queries/s   (misses {n.stats.misses}, unparsed {n.stats.unparsed})")

    n = Normalizer("postgres")
    q = TEMPLATES[0].format(n=42, s="open", d=3, lst="")
    n.normalize(q)
    variants = [TEMPLATES[0].format(n=i, s="open", d=1 + i % 28, lst="") for i in range(20000)]
    t0 = time.perf_counter()
    for v in variants:
        n.normalize(v)
    per = (time.perf_counter() - t0) / len(variants) * 1e6
    print(f"one cache hit, {len(q)}-char query: {per:6.1f} us  (hits {n.stats.hits}/{len(variants)})")


if __name__ == "__main__":
    main()
