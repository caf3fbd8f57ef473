"""Throughput of usagewatch.normalize, run by hand: ``python benchmarks/bench_normalize.py``.

Prints queries/s for a cache-hit-heavy mix (a few hundred shapes, varying literals: what a real
warehouse stream looks like) and an all-unique-shapes mix (every query parsed), plus the cost of one
cache hit for a typical ~200-character query. To compare with the compiled sqlglot build, run it once
with and once without ``sqlglotc`` installed in the venv (``pip install sqlglotc``); the header says
which one is in use. No assertions: numbers depend on the machine.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

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


def main() -> None:
    import sqlglot
    import sqlglot.parser

    # sqlglotc installs compiled modules into the sqlglot package itself (no module of its own).
    build = "sqlglotc (compiled)" if sqlglot.parser.__file__.endswith(".so") else "pure-Python sqlglot"

    print(f"sqlglot {sqlglot.__version__}, {build}, Python {sys.version.split()[0]}")
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
