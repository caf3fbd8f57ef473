"""``usagewatch rules``: tools for rule authors. ``test`` tries rules on logs without a store (or runs
the rules' YAML unit tests), ``schema`` prints the JSON Schema of rule files for editors."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import click

from usagewatch import config as config_mod
from usagewatch import dryrun
from usagewatch.cli import cli, config_option
from usagewatch.errors import UsagewatchError
from usagewatch.model import FindingUpdate
from usagewatch.rules import load_rules
from usagewatch.rules.jsonschema import rule_json_schema_text
from usagewatch.rules.testing import CaseResult, run_tests

EXPLAIN_TOP = 20  # keys shown per rule by --explain, unless --all
EVIDENCE_LINES = 4  # lines of the intervention shown per finding


@cli.group("rules")
def rules_group() -> None:
    """Try rules on logs, run the rules' unit tests, print the rule file JSON Schema."""


def _n(n: int, word: str) -> str:
    plural = "queries" if word == "query" else word + "s"
    return f"{n:,} {word if n == 1 else plural}"


def _stamp(u: FindingUpdate, attr: str) -> str:
    return getattr(u, attr).strftime("%Y-%m-%d %H:%M:%S")


def finding_json(u: FindingUpdate, episodes: int) -> dict[str, Any]:
    return {"rule": u.rule, "key": u.key, "user": u.user, "database": u.database, "severity": u.severity,
            "count": u.count, "distinct_values": u.distinct_values, "varying": u.varying,
            "sample_values": u.sample_values, "first_seen": u.first_seen.isoformat(),
            "last_seen": u.last_seen.isoformat(), "episodes": episodes, "fingerprint": u.fingerprint,
            "sample_sql": u.sample_sql, "title": u.title, "intervention": u.intervention, "howto": u.howto}


def finding_lines(u: FindingUpdate) -> list[str]:
    """A finding as it would be stored: who, how many, which values, when, and the evidence."""
    varying = ", ".join(u.varying) or "-"
    lines = [f"{u.rule}: {u.title}",
             f"  user {u.user}, count {u.count}, distinct values {u.distinct_values}, varying {varying}",
             f"  first seen {_stamp(u, 'first_seen')}, last seen {_stamp(u, 'last_seen')} UTC"]
    text = u.intervention.splitlines()
    lines += [f"  | {t}".rstrip() for t in text[:EVIDENCE_LINES]]
    if len(text) > EVIDENCE_LINES:
        lines.append(f"  | ... ({len(text) - EVIDENCE_LINES} more lines)")
    return lines


def closeness(entry: dict[str, Any]) -> float:
    """How near a key is to firing: its smallest ratio of a count to that count's threshold."""
    ratios = [v / entry[f"min_{k}"] for k, v in entry.items()
              if isinstance(v, (int, float)) and isinstance(entry.get(f"min_{k}"), (int, float)) and entry[f"min_{k}"]]
    return min(ratios, default=0.0)


def ranked(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fired keys first, then the closest to firing."""
    return sorted(entries, key=lambda e: (not e.get("fired"), -closeness(e), str(e.get("key"))))


def progress_text(entry: dict[str, Any]) -> str:
    """``runs 25/20, distinct 1/20``: each count against its threshold, then any other figures."""
    parts = []
    for k, v in entry.items():
        if k in ("key", "fired") or (k.startswith("min_") and k[4:] in entry):
            continue
        parts.append(f"{k} {v}/{entry[f'min_{k}']}" if f"min_{k}" in entry else f"{k} {v}")
    return ", ".join(parts)


def explain_lines(rule_id: str, entries: list[dict[str, Any]], limit: int | None) -> list[str]:
    shown = ranked(entries)[:limit] if limit is not None else ranked(entries)
    lines = [f"{rule_id}: {_n(len(entries), 'key')}"]
    lines += [f"  {'fired' if e.get('fired') else 'no   '}  {e['key']}  {progress_text(e)}" for e in shown]
    if len(shown) < len(entries):
        lines.append(f"  ... {len(entries) - len(shown)} more (--all shows every key)")
    return lines


def try_rules(rule_paths: list[str], logs: tuple[str, ...], fmt: str | None, cfg: config_mod.Config | None,
              explain: bool = False, show_all: bool = False, as_json: bool = False) -> str:
    """The text (or JSON) ``rules test`` prints for a dry run of the rules over the logs."""
    rules = load_rules(rule_paths, cfg.rule_overrides if cfg else None)  # the rules as that config deploys them
    read: Counter[str] = Counter()
    result = dryrun.evaluate(rules, dryrun.read_logs(logs, fmt, cfg, read))
    limit = None if show_all else EXPLAIN_TOP
    episodes = result.episodes
    if as_json:
        out: dict[str, Any] = {
            "records": read["records"], "bad_records": read["bad"], "queries": result.events,
            "unparsed": result.unparsed, "rules": [r.id for r in rules],
            "findings": [finding_json(u, episodes.get((u.rule, u.key), 1)) for u in result.findings]}
        if explain:
            out["explain"] = {}
            for r in result.engine.rules:
                entries = ranked(r.kind.explain())
                out["explain"][r.id] = {"keys": entries[:limit] if limit else entries,
                                        "more": max(0, len(entries) - limit) if limit else 0}
        return json.dumps(out, indent=2, default=str)
    lines: list[str] = []
    for u in result.findings:
        lines += finding_lines(u) + [""]
    if explain:
        for r in result.engine.rules:
            lines += explain_lines(r.id, r.kind.explain(), limit) + [""]
    n = len(result.findings)
    lines.append(f"{_n(n, 'finding')} would fire from {_n(len(rules), 'rule')} over {_n(result.events, 'query')} "
                 f"({read['records']:,} records, {read['bad']:,} bad, {result.unparsed:,} queries not parsed); "
                 "nothing was stored or sent.")
    return "\n".join(lines)


def case_lines(results: list[CaseResult]) -> list[str]:
    lines = []
    for r in results:
        lines.append(r.line())
        lines += r.diff()
    return lines


@rules_group.command("test")
@config_option
@click.option("--rules", "rule_paths", multiple=True, metavar="PATH",
              help="Rule files or directories (default: the config's rules). Without LOGs: test files, "
                   "or directories whose tests/ hold them.")
@click.option("--format", "fmt", metavar="NAME", help="Log format of the LOGs (options come from a configured source of it).")
@click.option("--explain", is_flag=True, help="Per rule and key: the counts against the thresholds, closest to firing first.")
@click.option("--all", "show_all", is_flag=True, help=f"With --explain: every key, not the top {EXPLAIN_TOP}.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("logs", nargs=-1, type=click.Path())
def test_cmd(config_path: str | None, rule_paths: tuple[str, ...], fmt: str | None, explain: bool, show_all: bool,
             output: str, logs: tuple[str, ...]) -> None:
    """Run rules over LOGs and print what would fire (nothing is stored or sent); without LOGs, run
    the rules' YAML unit tests and exit 1 if a case fails."""
    cfg = config_mod.load(config_path) if config_path else None
    paths = list(rule_paths) or (cfg.rules if cfg else [str(config_mod.stock_rules_dir())])
    if logs:
        click.echo(try_rules(paths, logs, fmt, cfg, explain, show_all, output == "json"))
        return
    if explain or show_all or fmt:
        raise click.UsageError("--explain, --all and --format need LOG files; without them the unit tests run.")
    results = run_tests(paths, cfg)
    if not results:
        raise UsagewatchError(f"no rule tests found in {', '.join(paths)}. Put test files in a tests/ directory "
                              "next to the rules (see docs/rule-testing.md).")
    if output == "json":
        click.echo(json.dumps([{"file": r.case.file, "line": r.case.line, "name": r.case.spec.name, "ok": r.ok,
                                "missing": r.missing, "unexpected": r.unexpected} for r in results], indent=2))
    else:
        click.echo("\n".join(case_lines(results)))
    failed = sum(not r.ok for r in results)
    if failed:
        raise UsagewatchError(f"{failed} of {len(results)} rule test cases failed.")
    if output == "text":
        click.echo(f"{len(results)} rule test cases passed.")


@rules_group.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of rule files (for editors: # yaml-language-server: $schema=...)."""
    click.echo(rule_json_schema_text(), nl=False)
