"""usagewatch vs pgBadger vs pt-query-digest: one workload, one machine, one run after another.

    python benchmarks/compare.py --queries 1000000 --seed 1 [--workdir DIR] [--keep]
        [--formats postgres-csvlog,postgres-jsonlog,postgres-stderr,mysql-slow] [--jobs 2]
        [--unique-queries 20000] [--repeat 1] [--cpu 0] [--exact-counts] [--json OUT]

What it does, and why that way:

* Generates the workload with ``genlog.py`` once per format (the same seed gives the same queries
  in every format), or reuses a log in ``--workdir`` whose ``.meta.json`` says it was made with the
  same arguments: a 1M-query log takes a minute to write and is worth keeping between runs.
* Runs, each as a child process pinned to one core (``os.sched_setaffinity`` in the child), so a
  tool cannot win by using a second core and the numbers compare per core:
  ``usagewatch replay`` with the stock rules and a fresh SQLite store (config written here) on each
  log; ``pgbadger -j 1`` on the PostgreSQL logs (HTML report to a temp file);
  ``pt-query-digest`` on the MySQL slow log (report to a temp file: it is the query count check);
  with ``--jobs N``, ``usagewatch replay -j N`` on the csvlog, pinned to N cores; and usagewatch
  on a small all-unique csvlog (``--unique-queries``), the worst case for its shape cache.
* Measures wall seconds around the child, and the child's own CPU time and peak RSS from
  ``os.wait4`` (``ru_maxrss`` is KiB on Linux; it covers the child and the children it waited
  for, e.g. pgBadger's), never the runner's. ``--repeat R`` keeps each run's fastest of R.
* q/s is the workload's query count over wall seconds for every tool (same input, so the same
  numerator); the count each tool itself reported is shown next to it and checked against what
  the generator says it should be (pgBadger counts failed statements as errors, not queries).

Tools that are not installed are skipped with a note. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlog  # noqa: E402  (a sibling script, not a package)

EXT = {"postgres-csvlog": "csv", "postgres-jsonlog": "json", "postgres-stderr": "log", "mysql-slow": "slow.log"}
PGBADGER_FORMAT = {"postgres-csvlog": ["-f", "csv"], "postgres-jsonlog": ["-f", "jsonlog"],
                   "postgres-stderr": ["-f", "stderr", "--prefix", genlog.STDERR_PREFIX]}


@dataclass
class Run:
    """One measured run of one tool on one log."""

    tool: str
    log: str  # format name
    path: str
    queries: int  # the workload's executions (the q/s numerator)
    mb: float
    seconds: float
    cpu_seconds: float
    rss_mb: float
    counted: int | None = None  # what the tool itself reported
    expected: int | None = None  # what it should report
    approx: bool = False  # counted is rounded (pt-query-digest's report)
    extra: dict[str, object] = field(default_factory=dict)
    command: str = ""
    exit_code: int = 0

    @property
    def qps(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.mb / self.seconds if self.seconds else 0.0


def measure(cmd: list[str], cpus: set[int], out_path: Path, err_path: Path) -> tuple[float, float, float, int]:
    """Run ``cmd`` pinned to ``cpus``; (wall s, child CPU s, child peak RSS MB, exit code).

    ``os.wait4`` reaps the child itself, so the rusage is the child's (and its reaped children's),
    not the runner's, and wall time stops when the child exits, not when Python notices.
    """
    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=pin)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped already: keep Popen from waiting
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, p.returncode


# --------------------------------------------------------------------------------------------
# the logs
# --------------------------------------------------------------------------------------------


def ensure_log(workdir: Path, fmt: str, queries: int, seed: int, unique_fraction: float, all_unique: bool,
               rate: float) -> tuple[Path, dict[str, object]]:
    """The log for these arguments: reused when its meta matches, generated otherwise."""
    tag = "allunique" if all_unique else f"u{unique_fraction:g}"
    path = workdir / f"workload-q{queries}-s{seed}-{tag}-r{rate:g}.{EXT[fmt]}"
    ns = argparse.Namespace(queries=queries, format=fmt, seed=seed, unique_fraction=unique_fraction,
                            all_unique=all_unique, rate=rate, out=str(path))
    meta_file = genlog.meta_path(path)
    if path.exists() and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if meta.get("params") == genlog.params_of(ns) and meta.get("bytes") == path.stat().st_size:
            print(f"reusing {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
            return path, meta
    cmd = [sys.executable, str(Path(genlog.__file__).resolve()), "--queries", str(queries), "--format", fmt,
           "--seed", str(seed), "--out", str(path), "--unique-fraction", str(unique_fraction), "--rate", str(rate)]
    if all_unique:
        cmd.append("--all-unique")
    print("$ " + shlex.join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return path, json.loads(meta_file.read_text())


# --------------------------------------------------------------------------------------------
# the tools
# --------------------------------------------------------------------------------------------

_REPLAYED = re.compile(r"([\d,]+) queries, (\d+) new findings .*?([\d,]+) bad records, ([\d,]+) queries not parsed")


def usagewatch_run(exe: str, log: Path, fmt: str, meta: dict[str, object], rundir: Path, cpus: set[int],
                   jobs: int | None = None) -> Run:
    """``usagewatch replay`` with the stock rules (the config names none) and a fresh SQLite store."""
    if rundir.exists():
        shutil.rmtree(rundir)
    rundir.mkdir(parents=True)
    options = f"{{log_line_prefix: {json.dumps(genlog.STDERR_PREFIX)}}}" if fmt == "postgres-stderr" else "{}"
    cfg = rundir / "config.yaml"
    cfg.write_text(f"database: sqlite:///{rundir}/usagewatch.db\n"
                   f"sources:\n  - {{name: bench, format: {fmt}, paths: [{json.dumps(str(log))}], options: {options}}}\n")
    cmd = [exe, "replay", "--config", str(cfg)]
    if jobs is not None:
        cmd += ["-j", str(jobs)]
    wall, cpu, rss, code = measure(cmd, cpus, rundir / "stdout.txt", rundir / "stderr.txt")
    text = (rundir / "stdout.txt").read_text(errors="replace")
    m = _REPLAYED.search(text)
    counts = meta["counts"]
    expected = meta["expected"]
    assert isinstance(counts, dict) and isinstance(expected, dict)
    run = Run("usagewatch" if jobs is None else f"usagewatch -j {jobs}", fmt, str(log), int(counts["queries"]),
              int(meta["bytes"]) / 1e6, wall, cpu, rss, expected=int(expected["usagewatch_queries"]),  # type: ignore[call-overload]
              command=shlex.join(cmd), exit_code=code)
    if m:
        run.counted = int(m.group(1).replace(",", ""))
        run.extra = {"new_findings": int(m.group(2)), "bad_records": int(m.group(3).replace(",", "")),
                     "not_parsed": int(m.group(4).replace(",", ""))}
    else:
        run.extra = {"output": (text + (rundir / "stderr.txt").read_text(errors="replace"))[-2000:]}
    return run


_PGB_FIGURE = re.compile(r'([\d,]+)</span> <span class="figure-label">(Number of queries|Number of events|'
                         r'Number of unique normalized queries)<')


def pgbadger_run(exe: str, log: Path, fmt: str, meta: dict[str, object], rundir: Path, cpus: set[int]) -> Run:
    """``pgbadger -j 1`` to an HTML report; its "Number of queries" is the count check."""
    rundir.mkdir(parents=True, exist_ok=True)
    html = rundir / "pgbadger.html"
    cmd = [exe, "-j", "1", *PGBADGER_FORMAT[fmt], "--quiet", "-o", str(html), str(log)]
    wall, cpu, rss, code = measure(cmd, cpus, rundir / "stdout.txt", rundir / "stderr.txt")
    counts, expected = meta["counts"], meta["expected"]
    assert isinstance(counts, dict) and isinstance(expected, dict)
    run = Run("pgBadger", fmt, str(log), int(counts["queries"]), int(meta["bytes"]) / 1e6, wall, cpu, rss,  # type: ignore[call-overload]
              expected=int(expected["pgbadger_queries"]), command=shlex.join(cmd), exit_code=code)
    if html.exists():
        figures = {label: int(n.replace(",", "")) for n, label in _PGB_FIGURE.findall(html.read_text(errors="replace"))}
        run.counted = figures.get("Number of queries")
        run.extra = {"errors": figures.get("Number of events"), "expected_errors": expected["pgbadger_errors"],
                     "unique_normalized": figures.get("Number of unique normalized queries")}
    return run


_PT_OVERALL = re.compile(r"# Overall: ([\d.]+)([kMG]?) total, ([\d.]+)([kMG]?) unique")
_SUFFIX = {"": 1, "k": 1_000, "M": 1_000_000, "G": 1_000_000_000}


def ptqd_run(exe: str, log: Path, meta: dict[str, object], rundir: Path, cpus: set[int]) -> Run:
    """``pt-query-digest`` with its default report; the report's "Overall: N total" is rounded
    (``exact_count`` gets the exact one)."""
    rundir.mkdir(parents=True, exist_ok=True)
    report = rundir / "pt-query-digest.txt"
    cmd = [exe, str(log)]
    wall, cpu, rss, code = measure(cmd, cpus, report, rundir / "stderr.txt")
    counts, expected = meta["counts"], meta["expected"]
    assert isinstance(counts, dict) and isinstance(expected, dict)
    run = Run("pt-query-digest", "mysql-slow", str(log), int(counts["queries"]), int(meta["bytes"]) / 1e6, wall,  # type: ignore[call-overload]
              cpu, rss, expected=int(expected["pt_query_digest_queries"]), command=shlex.join(cmd) + " > report",
              exit_code=code)
    m = _PT_OVERALL.search(report.read_text(errors="replace"))
    if m:
        run.counted = round(float(m.group(1)) * _SUFFIX[m.group(2)])
        run.approx = m.group(2) != ""
        run.extra = {"unique_classes": round(float(m.group(3)) * _SUFFIX[m.group(4)])}
    return run


def exact_count(exe: str, run: Run) -> None:
    """Re-run pt-query-digest, untimed, with ``--output json`` for its exact query count."""
    out = subprocess.run([exe, "--output", "json", run.path], capture_output=True, text=True)
    try:
        g = json.loads(out.stdout)["global"]
        run.counted, run.approx = int(g["query_count"]), False
        run.extra["unique_classes"] = int(g["unique_query_count"])
    except (ValueError, KeyError):
        pass


# --------------------------------------------------------------------------------------------
# the machine and the report
# --------------------------------------------------------------------------------------------


def machine(uw_python: str) -> dict[str, object]:
    """What the numbers were measured on: CPU, cores, load, and usagewatch's Python and sqlglot."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # sqlglotc installs compiled modules into the sqlglot package (there is no module "sqlglotc"):
    # what tells is whether sqlglot's parser is an extension module
    probe = ("import json, sys, sqlglot, sqlglot.parser as p; print(json.dumps({'python': sys.version.split()[0], "
             "'sqlglot': sqlglot.__version__, 'sqlglotc': not p.__file__.endswith('.py')}))")
    try:
        env = json.loads(subprocess.run([uw_python, "-c", probe], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        env = {"python": "?", "sqlglot": "?", "sqlglotc": False}
    tools = {}
    for name, args in (("pgbadger", ["--version"]), ("pt-query-digest", ["--version"])):
        exe = shutil.which(name)
        if exe:
            out = subprocess.run([exe, *args], capture_output=True, text=True)
            text = (out.stdout or out.stderr).strip()
            tools[name] = text.splitlines()[0].split()[-1] if text else "?"  # "pgBadger version 12.0" -> 12.0
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "loadavg_start": os.getloadavg(),
            **env, "tools": tools}


def table(runs: list[Run]) -> str:
    lines = ["| tool | log | queries | MB | seconds | q/s | MB/s | peak RSS MB | CPU s | counted (expected) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        if r.counted is None:
            check = f"? ({r.expected:,})" if r.expected is not None else "?"
        else:
            ok = r.counted == r.expected or (r.approx and r.expected and abs(r.counted - r.expected) <= r.expected * 5e-4)
            check = f"{'~' if r.approx else ''}{r.counted:,} ({r.expected:,}) {'ok' if ok else 'MISMATCH'}"
        if r.exit_code:
            check += f" exit {r.exit_code}"
        lines.append(f"| {r.tool} | {r.log} | {r.queries:,} | {r.mb:.1f} | {r.seconds:.2f} | {r.qps:,.0f} | "
                     f"{r.mbps:.2f} | {r.rss_mb:.0f} | {r.cpu_seconds:.2f} | {check} |")
    return "\n".join(lines)


def ratios(runs: list[Run]) -> list[str]:
    out = []
    uw = {r.log: r for r in runs if r.tool == "usagewatch" and r.extra.get("unique") is None}
    for r in runs:
        base = uw.get(r.log)
        if base is None or r.tool not in ("pgBadger", "pt-query-digest"):
            continue
        cpu = f"{r.cpu_seconds / base.cpu_seconds:.2f}x" if base.cpu_seconds else "?"
        out.append(f"- usagewatch / {r.tool} on {r.log}: {base.qps / r.qps:.2f}x the throughput "
                   f"({base.seconds:.1f} s vs {r.seconds:.1f} s wall), {cpu} by CPU time "
                   f"({base.cpu_seconds:.1f} s vs {r.cpu_seconds:.1f} s), {base.rss_mb / r.rss_mb:.2f}x the peak RSS")
    return out


def best_of(repeat: int, make: Callable[[], Run]) -> Run:
    """The fastest of ``repeat`` runs (noise only ever makes a run slower)."""
    runs = [make() for _ in range(max(1, repeat))]
    return min(runs, key=lambda r: r.seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--unique-fraction", type=float, default=0.02)
    ap.add_argument("--rate", type=float, default=500.0, help="log-time queries/s of the workload (genlog --rate)")
    ap.add_argument("--workdir", help="where logs are generated/reused (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (stores, reports, outputs)")
    ap.add_argument("--formats", default=",".join(genlog.FORMATS), help="comma-separated subset of " + ", ".join(genlog.FORMATS))
    ap.add_argument("--jobs", type=int, help="also run `usagewatch replay -j N` on the csvlog (pinned to N cores)")
    ap.add_argument("--unique-queries", type=int, default=20_000,
                    help="size of the all-unique csvlog usagewatch also replays (0: skip)")
    ap.add_argument("--repeat", type=int, default=1, help="run each measurement R times, keep the fastest")
    ap.add_argument("--cpu", type=int, default=0, help="the core single-process runs are pinned to")
    ap.add_argument("--exact-counts", action="store_true",
                    help="re-run pt-query-digest untimed with --output json for its exact query count")
    ap.add_argument("--no-others", action="store_true", help="usagewatch only (skip pgBadger, pt-query-digest)")
    ap.add_argument("--usagewatch", help="the usagewatch executable (default: next to this Python, else on PATH)")
    ap.add_argument("--json", help="also write the runs and the machine to this JSON file")
    args = ap.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    for f in formats:
        if f not in genlog.FORMATS:
            ap.error(f"unknown format {f!r}; one of {', '.join(genlog.FORMATS)}")

    uw = args.usagewatch or str(Path(sys.executable).with_name("usagewatch"))
    if not Path(uw).exists():
        uw = shutil.which("usagewatch") or ""
    if not uw:
        ap.error("usagewatch not found: pass --usagewatch PATH")
    uw_python = str(Path(uw).with_name("python")) if Path(uw).with_name("python").exists() else sys.executable
    pgbadger = None if args.no_others else shutil.which("pgbadger")
    ptqd = None if args.no_others else shutil.which("pt-query-digest")
    notes: list[str] = []
    if not pgbadger and not args.no_others:
        notes.append("pgbadger is not installed: its runs are skipped.")
    if not ptqd and not args.no_others:
        notes.append("pt-query-digest is not installed: its run is skipped.")
    jobs_ok = False
    if args.jobs:
        help_text = subprocess.run([uw, "replay", "--help"], capture_output=True, text=True).stdout
        jobs_ok = "--jobs" in help_text
        if not jobs_ok:
            notes.append(f"`usagewatch replay` has no -j/--jobs option yet: the -j {args.jobs} run is skipped.")
        all_cpus = sorted(os.sched_getaffinity(0))
        if args.jobs > len(all_cpus):
            notes.append(f"-j {args.jobs} on {len(all_cpus)} usable cores: the workers share cores.")

    own_tmp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="uw-compare-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runsdir = workdir / f"runs-{os.getpid()}"
    one = {args.cpu}
    info = machine(uw_python)
    runs: list[Run] = []
    try:
        logs = {f: ensure_log(workdir, f, args.queries, args.seed, args.unique_fraction, False, args.rate) for f in formats}
        for f, (path, meta) in logs.items():
            runs.append(best_of(args.repeat, lambda p=path, m=meta, f=f: usagewatch_run(uw, p, f, m, runsdir / f"uw-{f}", one)))
            print(table(runs[-1:]).splitlines()[-1], file=sys.stderr)
            if f in PGBADGER_FORMAT and pgbadger:
                runs.append(best_of(args.repeat, lambda p=path, m=meta, f=f: pgbadger_run(pgbadger, p, f, m, runsdir / f"pgb-{f}", one)))
                print(table(runs[-1:]).splitlines()[-1], file=sys.stderr)
            if f == "mysql-slow" and ptqd:
                runs.append(best_of(args.repeat, lambda p=path, m=meta: ptqd_run(ptqd, p, m, runsdir / "ptqd", one)))
                if args.exact_counts:
                    exact_count(ptqd, runs[-1])
                print(table(runs[-1:]).splitlines()[-1], file=sys.stderr)
        if args.jobs and jobs_ok:
            f = "postgres-csvlog" if "postgres-csvlog" in logs else formats[0]
            path, meta = logs[f]
            cpus = set(sorted(os.sched_getaffinity(0))[:args.jobs])
            runs.append(best_of(args.repeat, lambda: usagewatch_run(uw, path, f, meta, runsdir / "uw-jobs", cpus, args.jobs)))
            print(table(runs[-1:]).splitlines()[-1], file=sys.stderr)
        if args.unique_queries:
            path, meta = ensure_log(workdir, "postgres-csvlog", args.unique_queries, args.seed, args.unique_fraction,
                                    True, args.rate)
            r = best_of(args.repeat, lambda: usagewatch_run(uw, path, "postgres-csvlog", meta, runsdir / "uw-unique", one))
            r.log = "postgres-csvlog, all unique"
            r.extra["unique"] = True
            runs.append(r)
            print(table(runs[-1:]).splitlines()[-1], file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(runsdir, ignore_errors=True)
            if own_tmp:
                shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()

    print(f"# usagewatch vs pgBadger vs pt-query-digest: {args.queries:,} queries, seed {args.seed}, "
          f"unique fraction {args.unique_fraction:g}\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, "
          f"sqlglot {info['sqlglot']} ({'with' if info['sqlglotc'] else 'without'} sqlglotc); "
          + ", ".join(f"{k} {v}" for k, v in dict(info["tools"]).items())  # type: ignore[call-overload]
          + f". Load average at start {info['loadavg_start'][0]:.2f}, at end {info['loadavg_end'][0]:.2f}.\n")  # type: ignore[index]
    print(f"Single-process runs pinned to CPU {args.cpu}; best of {args.repeat}. q/s = workload queries / wall "
          "seconds; peak RSS and CPU s are the child's own (os.wait4; with -j N, the largest single process's "
          "RSS, not the sum over the workers).\n")
    busiest = max(info["loadavg_start"][0], info["loadavg_end"][0])  # type: ignore[index]
    if busiest > (os.cpu_count() or 1) * 0.5:
        print(f"**The machine was busy (load average up to {busiest:.1f} on {os.cpu_count()} cores): wall seconds "
              "include waiting for the core; compare the CPU s column.**\n")
    print(table(runs))
    print()
    for line in ratios(runs):
        print(line)
    uw_runs = [r for r in runs if r.tool.startswith("usagewatch") and r.extra.get("new_findings") is not None]
    for r in uw_runs:
        print(f"- {r.tool} on {r.log}: {r.extra['new_findings']} findings, {r.extra['bad_records']} bad records, "
              f"{r.extra['not_parsed']} queries not parsed")
    for r in runs:
        if r.tool == "pgBadger" and r.extra.get("errors") is not None:
            print(f"- pgBadger on {r.log}: {r.extra['errors']:,} error events (expected {r.extra['expected_errors']:,}), "
                  f"{r.extra['unique_normalized']:,} normalized queries")
        if r.tool == "pt-query-digest" and r.extra.get("unique_classes") is not None:
            print(f"- pt-query-digest: {r.extra['unique_classes']:,} query classes")
        if r.exit_code or ("output" in r.extra):
            print(f"- {r.tool} on {r.log} FAILED (exit {r.exit_code}): {str(r.extra.get('output', ''))[-500:]}")
    for n in notes:
        print(f"- note: {n}")
    print("\nCommands:\n")
    for r in runs:
        print(f"    {r.command}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": info, "notes": notes,
                                               "runs": [dict(asdict(r), qps=r.qps, mbps=r.mbps) for r in runs]},
                                              indent=2) + "\n")
    return 1 if any(r.exit_code for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
