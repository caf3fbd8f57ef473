"""``usagewatch report sla|rules|status|usage``: service levels met, what the rules' findings came to,
the status email, and who uses the warehouse how much."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.cli.output import aligned
from usagewatch.durations import format_duration, parse_duration
from usagewatch.errors import UsagewatchError
from usagewatch.notify.email import SmtpChannel, smtp_settings
from usagewatch.notify.status import status_email
from usagewatch.usage import fmt
from usagewatch.usage.html import render as render_html
from usagewatch.usage.report import UsageReport
from usagewatch.usage.report import build as build_usage


@cli.group("report")
def report_group() -> None:
    """Reports: service levels, rule outcomes, the status email, warehouse usage."""


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:g}h"


@report_group.command("sla")
@config_option
@click.option("--since", default="30d", show_default=True, help="Findings opened in this period (e.g. 7d).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def sla_cmd(config_path: str | None, since: str, fmt: str) -> None:
    """How many findings were acknowledged and resolved within the service levels, and what is overdue."""
    cfg = load_config(config_path)
    try:
        period = parse_duration(since)
    except ValueError as exc:
        raise UsagewatchError(f"--since: {exc}.") from None
    now = datetime.now(timezone.utc)
    store = open_store(cfg)
    r = store.sla_report(now - period, cfg.sla.acknowledge_within, cfg.sla.resolve_within, now)
    if fmt == "json":
        click.echo(json.dumps(r, indent=2))
        return
    ack, res = cfg.sla.acknowledge_within, cfg.sla.resolve_within
    lines = [
        f"Findings opened in the last {format_duration(period)}: {r['findings']}",
        f"Acknowledged within {format_duration(ack)}: {r['acknowledged_in_time']} of {r['findings']} "
        f"(median {_hours(r['acknowledge']['median_hours'])}, worst {_hours(r['acknowledge']['worst_hours'])})",
        f"Resolved within {format_duration(res)}: {r['resolved_in_time']} of {r['findings']} "
        f"(median {_hours(r['resolve']['median_hours'])}, worst {_hours(r['resolve']['worst_hours'])})",
    ]
    if r["overdue"]:
        lines.append(f"Overdue now: {len(r['overdue'])}")
        lines += [f"  finding {o['id']} ({o['rule']}, {o['user']}): not {o['late']}d after {o['age_hours']}h"
                  for o in r["overdue"]]
    else:
        lines.append("Overdue now: none")
    click.echo("\n".join(lines))


@report_group.command("rules")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules_cmd(config_path: str | None, fmt: str) -> None:
    """Per rule: findings, acknowledged, coached, recurred after coaching, false positives (flagged when high)."""
    cfg = load_config(config_path)
    rows = open_store(cfg).rule_outcomes()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No findings yet.")
        return
    head = ("RULE", "FINDINGS", "ACKED", "COACHED", "RECURRED", "NOT USEFUL", "")
    body = [(r["rule"], str(r["findings"]), str(r["acknowledged"]), str(r["coached"]), str(r["recurred"]),
             f"{r['false_positives']} ({r['false_positive_rate']:.0%})",
             "<- many false positives: tune or disable this rule" if r["flagged"] else "") for r in rows]
    click.echo(aligned(head, body))


@report_group.command("status")
@config_option
@click.option("--since", default="7d", show_default=True, help="The period it covers.")
@click.option("--send", is_flag=True, help="Email it to notify.email.to instead of printing it.")
def status_cmd(config_path: str | None, since: str, send: bool) -> None:
    """The support team's status report (what the daemon emails every notify.status_every)."""
    cfg = load_config(config_path)
    if cfg.notify.email is None:
        raise UsagewatchError("the status report is an email: configure notify.email first.")
    try:
        period = parse_duration(since)
    except ValueError as exc:
        raise UsagewatchError(f"--since: {exc}.") from None
    store = open_store(cfg)
    msg = status_email(store, cfg, datetime.now(timezone.utc), period)
    if not send:
        part = msg.get_body(("plain",))
        assert part is not None
        click.echo(f"Subject: {msg['Subject']}\n")
        click.echo(part.get_content().rstrip())
        return
    SmtpChannel(smtp_settings(cfg.notify.email)).send(msg)
    click.echo(f"Status report sent to {', '.join(cfg.notify.email.to)}.")


# --- report usage ---------------------------------------------------------------------------------
def usage_text(r: UsageReport) -> str:
    """The usage report as aligned plain-text tables (``--format table``)."""
    what = {"cost": "ESTIMATED COST", "time": "WAREHOUSE TIME", "queries": "QUERIES"}[r.measure]
    t = r.totals
    money = (lambda x: fmt.money(x, r.currency)) if r.priced else None
    out = [f"Warehouse usage, last {r.period} ({r.start:%Y-%m-%d %H:%M} to {r.end:%Y-%m-%d %H:%M} UTC)",
           f"{t['users']:,} users, {t['queries']:,} queries, {fmt.seconds(t['time_s'])} of warehouse time, "
           f"p95 {fmt.ms(t['p95_ms'])}, {t['errors']:,} failed" + (f", {money(t['cost'])}" if money else ""),
           "", r.pareto.sentence, "", "SEGMENTS"]
    for s in r.segments:
        members = ", ".join(s.members[:10]) + (f" and {len(s.members) - 10} more" if len(s.members) > 10 else "")
        out.append(f"  {s.title} ({len(s.members)}): {members or '-'}    [{s.definition}]")
    if r.new_heavy:
        out.append(f"  New heavy users (not heavy in the {r.period} before): {', '.join(r.new_heavy)}")
    if r.fingerprints:
        out += ["", f"TOP QUERY SHAPES BY {what}"]
        head = ("QUERIES", "TIME", "P95", *(("COST",) if money else ()), "RUN BY", "SHAPE")
        body = [(f"{f.queries:,}", fmt.seconds(f.time_s), fmt.ms(f.p95_ms), *((money(f.cost),) if money else ()),
                 ", ".join(f"{u} ({n})" for u, n in f.users[:3]) + (" ..." if f.user_count > 3 else ""),
                 _short(f.sql, 70)) for f in r.fingerprints]
        out.append(aligned(head, body))
    if r.tables:
        out += ["", "MOST-USED TABLES"]
        out.append(aligned(("TABLE", "QUERIES", "TIME", "USERS"),
                           [(x.table, f"{x.queries:,}", fmt.seconds(x.time_s), str(x.user_count)) for x in r.tables]))
    if r.hot_spots:
        out += ["", "ERROR HOT SPOTS"]
        out.append(aligned(("USER", "FAILED", "SHAPE"),
                           [(h.user, f"{h.errors} of {h.queries}", _short(h.sql, 70)) for h in r.hot_spots]))
    if any(x.team != "(no team)" for x in r.teams):
        out += ["", "TEAMS"]
        out.append(aligned(("TEAM", "USERS", "QUERIES", "TIME", "P95", *(("COST",) if money else ()), "FAILED"),
                           [(x.team, str(x.users), f"{x.queries:,}", fmt.seconds(x.time_s), fmt.ms(x.p95_ms),
                             *((money(x.cost),) if money else ()), str(x.errors)) for x in r.teams]))
    out += ["", "USERS"]
    if r.users:
        head = ("USER", "TEAM", "QUERIES", "TIME", "SHARE", "P95", *(("COST",) if money else ()), "FAILED",
                "OPEN FINDINGS", "SEGMENTS")
        body = [(u.user, u.team or "-", f"{u.queries:,}", fmt.seconds(u.time_s), fmt.pct(u.share), fmt.ms(u.p95_ms),
                 *((money(u.cost),) if money else ()), f"{u.errors} ({fmt.pct(u.error_rate)})" if u.errors else "0",
                 str(u.open_findings), ", ".join(s.replace("_", " ") for s in u.segments)) for u in r.users]
        out.append(aligned(head, body))
    else:
        out.append("  No queries in this period.")
    return "\n".join(out)


def _short(sql: str, n: int) -> str:
    one = " ".join(sql.split())
    return one if len(one) <= n else one[:n - 3] + "..."


@report_group.command("usage")
@config_option
@click.option("--since", default="30d", show_default=True, help="The period it covers (e.g. 7d, 90d).")
@click.option("--format", "fmt_", type=click.Choice(["table", "json", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
def usage_cmd(config_path: str | None, since: str, fmt_: str, output: str | None) -> None:
    """Who uses the warehouse how much: the Pareto line, segments, top query shapes, tables, errors, users."""
    cfg = load_config(config_path)
    try:
        period = parse_duration(since)
    except ValueError as exc:
        raise UsagewatchError(f"--since: {exc}.") from None
    if period.total_seconds() <= 0:
        raise UsagewatchError("--since: the period must be longer than 0s.")
    store = open_store(cfg)
    try:
        r = build_usage(store, cfg, period)
    finally:
        store.close()
    if fmt_ == "json":
        text = json.dumps(r.to_json(), indent=2)
    elif fmt_ == "html":
        text = render_html(r)
    else:
        text = usage_text(r)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise UsagewatchError(f"cannot write {output}: {exc.strerror or exc}.") from None
        click.echo(f"Wrote the usage report ({fmt_}) to {output}.", err=True)
        return
    click.echo(text.rstrip("\n"))
