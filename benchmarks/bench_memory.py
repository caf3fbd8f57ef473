"""Memory with many live rule-window keys, and memory against log size (issue 7), run by hand:

    python benchmarks/bench_memory.py engine  [--keys 1000000] [--batch 15000] [--sizes]
    python benchmarks/bench_memory.py process [--keys 1000000] [--batch-bytes N]
    python benchmarks/bench_memory.py flat    [--copies 25 100 400]

``engine``: synthetic normalized events, each of a distinct (user, fingerprint) pair, all inside
one hour of event time so every key is live at once in the windows of the stock rules (loaded as
the config's defaults load them), fed through ``RuleEngine.feed``; prints RSS before and after,
bytes per live (user, fingerprint) key, the live keys of each rule and (``--sizes``) the bytes of
each rule's window objects (an object several rules share, such as a key str or an event's time,
counts once, under the first rule in the list that holds it), and the peak of taking the whole
dirty state the way a batch does.

``process``: writes a PostgreSQL csvlog with ``--keys`` distinct (user, fingerprint) pairs inside
one hour and measures the peak RSS (the child's ``ru_maxrss``) of ``usagewatch replay`` on it with
the stock rules and a SQLite store.

``flat``: the shipped sample repeated (each copy one day later, with its own user names, so old
keys must be swept for memory to stay flat) at several sizes; peak RSS of ``usagewatch replay``
on each. The peak must not grow with the size of the log.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from usagewatch import config
from usagewatch.model import Literal, NormalizedEvent, NormalizedQuery, QueryEvent
from usagewatch.rules import RuleEngine, load_rules

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
SPAN = 50 * 60.0  # seconds of event time the events spread over: inside every stock window
SHAPES_PER_USER = 1000


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM, "
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    load = ", load average %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {mem}Python {platform.python_version()}"
            f"{load}")


def status_kb(field: str) -> int:
    """A /proc/self/status field (VmRSS, VmHWM) in KiB; 0 where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


# --- engine level ----------------------------------------------------------------------------------
def synthetic(keys: int, trait_share: float) -> Iterator[NormalizedEvent]:
    """``keys`` events, one per distinct (user, fingerprint): ``SHAPES_PER_USER`` shapes per user,
    every event with its own literal value (so ``same-query-repeated`` has a key per event too).
    A ``trait_share`` of the shapes are SELECT * on a large table (the query_pattern rules count
    those). User and fingerprint strings are shared between events as the normalizer's are."""
    users = [f"analyst{i:05d}" for i in range(max(1, -(-keys // SHAPES_PER_USER)))]
    shapes = []
    for j in range(min(keys, SHAPES_PER_USER)):
        starry = j < trait_share * SHAPES_PER_USER
        table = f"fact_sales_{j}" if starry else f"orders_{j}"
        shapes.append((f"{0x5EED0000 + j:016x}", f"SELECT * FROM {table} WHERE company_id = ?", (table,),
                       frozenset({"select_star"}) if starry else frozenset()))
    step = SPAN / keys
    for k in range(keys):
        user = users[k // SHAPES_PER_USER]
        fp, norm, tables, traits = shapes[k % SHAPES_PER_USER]
        value = str(100_000 + k)
        ts = T0 + timedelta(seconds=k * step)
        ev = QueryEvent(source="bench", ts=ts, sql=norm.replace("?", value), user=user, database="dw",
                        duration_ms=1.0)
        q = NormalizedQuery(fp, norm, "select", tables, (Literal(0, value, "company_id"),), True, traits,
                            frozenset({"select", "from", "where", "eq"}))
        yield NormalizedEvent(ev, q)


def deep_size(root: Any, seen: set[int]) -> int:
    """Bytes of the objects reachable from ``root`` not already in ``seen`` (classes, functions
    and modules are not followed: they are shared, not window state)."""
    skip = (type, type(sys), type(deep_size))
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
        if isinstance(obj, dict):  # a dict with only str keys does not report its keys as referents
            stack.extend(obj)
    return total


def bench_engine(keys: int, trait_share: float, sizes: bool, batch: int) -> None:
    rules = load_rules(config.Config().rules)
    engine = RuleEngine(rules)
    gc.collect()
    before = status_kb("VmRSS")
    print(f"engine: {len(rules)} stock rules loaded, RSS {mb(before)}")
    t0 = time.perf_counter()
    fired = saved = 0
    for i, ne in enumerate(synthetic(keys, trait_share), 1):
        fired += len(engine.feed(ne))
        if batch and i % batch == 0:
            taken = engine.take_state()  # as the pipeline does per chunk (the store writes them)
            saved += len(taken.states) + sum(len(entries) for _, _, _, entries in taken.log)
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = status_kb("VmRSS")
    print(f"fed {keys:,} events ({keys:,} distinct (user, fingerprint)) in {elapsed:.1f} s "
          f"= {keys / elapsed:,.0f} events/s; {fired} fired; "
          + (f"window rows and logged events taken every {batch:,} events: {saved:,}" if batch
             else "state not taken while feeding"))
    print(f"RSS after feed {mb(after)} (+{mb(after - before)}), "
          f"{(after - before) * 1024 / keys:,.0f} bytes per live (user, fingerprint) key; VmHWM {mb(status_kb('VmHWM'))}")
    seen: set[int] = {id(r.kind.spec) for r in rules} | {id(r.kind.params) for r in rules}
    print(f"{'rule':34} {'live keys':>10} " + (f"{'bytes':>12} {'bytes/key':>10}" if sizes else ""))
    total_keys = 0
    for r in rules:
        kind = r.kind
        live = len(kind.state_keys())
        total_keys += live
        line = f"{r.id:34} {live:>10,}"
        if sizes and live:
            state = [v for k, v in (vars(kind) if hasattr(kind, "__dict__") else {}).items()
                     if k not in ("spec", "params")]
            size = deep_size(state, seen)
            line += f" {size:>12,} {size / live:>10,.0f}"
        print(line)
    print(f"{'all rules':34} {total_keys:>10,} window keys; "
          f"{(after - before) * 1024 / max(1, total_keys):,.0f} bytes per window key")
    hwm0 = status_kb("VmHWM")
    t0 = time.perf_counter()
    state = engine.take_state()
    took = time.perf_counter() - t0
    print(f"take_state: {len(state.states):,} rows and {sum(len(e) for _, _, _, e in state.log):,} logged events "
          f"(the rest) in {took:.1f} s; RSS {mb(status_kb('VmRSS'))}, "
          f"VmHWM {mb(hwm0)} -> {mb(status_kb('VmHWM'))}")
    del state
    gc.collect()
    engine.sweep()
    t0 = time.perf_counter()
    engine._max_ts = (T0 + timedelta(days=8)).timestamp()  # a week later every window has drained
    engine.sweep()
    left = sum(len(r.kind.state_keys()) for r in rules)
    gone = sum(1 for s in engine.take_state().states.values() if s is None)
    print(f"sweep a week later: {left} keys left, {gone:,} row deletions handed to the store "
          f"({time.perf_counter() - t0:.1f} s)")


# --- process level ---------------------------------------------------------------------------------
def csvlog_line(ts: datetime, user: str, pid: int, line: int, sql: str) -> str:
    """One PostgreSQL csvlog record of ``log_min_duration_statement = 0`` (duration and statement)."""
    t = ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d} UTC"
    text = f"duration: 0.512 ms  statement: {sql}".replace('"', '""')
    return (f'{t},"{user}","dw",{pid},"10.0.0.1:5{pid % 10000:04d}",6b07b89b.{pid:x},{line},"SELECT",'
            f'{t},3/{line},0,LOG,00000,"{text}",,,,,,,,,"bench","client backend",,0\n')


def write_distinct_log(path: Path, keys: int) -> None:
    """``keys`` queries, each a distinct (user, fingerprint) pair, within ``SPAN`` seconds."""
    shapes = [f"SELECT c{j % 7}, amount FROM orders_{j} WHERE company_id = {{}}" for j in range(SHAPES_PER_USER)]
    step = SPAN / keys
    with open(path, "w", encoding="utf-8") as f:
        buf = []
        for k in range(keys):
            u = k // SHAPES_PER_USER
            buf.append(csvlog_line(T0 + timedelta(seconds=k * step), f"analyst{u:05d}", 1000 + u, k + 1,
                                   shapes[k % SHAPES_PER_USER].format(100_000 + k)))
            if len(buf) >= 10_000:
                f.writelines(buf)
                buf.clear()
        f.writelines(buf)


def replay_peak(log: Path, workdir: Path, batch_bytes: int = 0) -> tuple[float, float, str]:
    """Peak RSS (MB) and wall time of ``usagewatch replay`` on ``log`` in a child process."""
    cfg = workdir / "config.yaml"
    db = workdir / "uw.db"
    if db.exists():
        db.unlink()
    cfg.write_text(f"database: sqlite:///{db}\nsources:\n"
                   f"  - {{name: bench, format: postgres-csvlog, paths: ['{log}']}}\n"
                   + (f"follow: {{batch_bytes: {batch_bytes}}}\n" if batch_bytes else ""))
    cmd = [sys.executable, "-m", "usagewatch", "replay", "--config", str(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read().decode(errors="replace").strip()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return usage.ru_maxrss / 1024, elapsed, out.splitlines()[-1] if out else ""


def bench_process(keys: int, workdir: Path, batch_bytes: int) -> None:
    log = workdir / "distinct.csv"
    t0 = time.perf_counter()
    write_distinct_log(log, keys)
    print(f"wrote {log.stat().st_size / 1e6:.0f} MB csvlog, {keys:,} distinct (user, fingerprint) "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"$ {sys.executable} -m usagewatch replay --config {workdir / 'config.yaml'}")
    peak, elapsed, summary = replay_peak(log, workdir, batch_bytes)
    print(f"peak RSS {peak:.0f} MB, {elapsed:.1f} s = {keys / elapsed:,.0f} queries/s; {summary}")


# --- flat in log size ------------------------------------------------------------------------------
DAY = re.compile(rb"(?m)^(\d{4}-\d{2}-\d{2}) ")
USER = re.compile(rb'(?m)^([^,\n]* UTC,)"([^"\n]+)"')


def copies_of(sample: bytes, copies: int) -> Iterator[bytes]:
    """The sample once per copy, each a day later and with its own user names."""
    first = date.fromisoformat(DAY.search(sample).group(1).decode())  # type: ignore[union-attr]
    for k in range(copies):
        day = (first + timedelta(days=k)).isoformat().encode()
        text = sample.replace(first.isoformat().encode(), day)
        suffix = b"_%d" % k
        yield USER.sub(lambda m, s=suffix: m.group(1) + b'"' + m.group(2) + s + b'"', text)


def bench_flat(copies: list[int], workdir: Path) -> None:
    sample = config.SAMPLE_LOG.read_bytes()
    print(f"$ {sys.executable} -m usagewatch replay --config {workdir / 'config.yaml'}  (per size)")
    for n in copies:
        log = workdir / f"sample-x{n}.csv"
        with open(log, "wb") as f:
            for part in copies_of(sample, n):
                f.write(part)
        peak, elapsed, summary = replay_peak(log, workdir)
        print(f"x{n:<5} {log.stat().st_size / 1e6:7.1f} MB: peak RSS {peak:.0f} MB in {elapsed:.1f} s; {summary}")
        log.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["engine", "process", "flat"])
    ap.add_argument("--keys", type=int, default=1_000_000, help="distinct (user, fingerprint) pairs")
    ap.add_argument("--trait-share", type=float, default=0.1,
                    help="engine: share of shapes that are SELECT * on a large table")
    ap.add_argument("--batch", type=int, default=15_000,
                    help="engine: take the window state every this many events, as a pipeline step does "
                         "(a 4 MiB csvlog chunk holds about 15,000 queries); 0: never while feeding")
    ap.add_argument("--sizes", action="store_true", help="engine: bytes of each rule's window objects (slow)")
    ap.add_argument("--batch-bytes", type=int, default=0,
                    help="process: follow.batch_bytes of the replay (0: the config default)")
    ap.add_argument("--copies", type=int, nargs="+", default=[25, 100, 400])
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"$ {' '.join([Path(sys.executable).name] + sys.argv)}")
    if args.what == "engine":
        bench_engine(args.keys, args.trait_share, args.sizes, args.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "process":
            bench_process(args.keys, Path(tmp), args.batch_bytes)
        else:
            bench_flat(args.copies, Path(tmp))


if __name__ == "__main__":
    main()
