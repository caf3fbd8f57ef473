"""``usagewatch report sla|rules``: service levels met, and what the rules' findings came to."""

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


@cli.group("report")
def report_group() -> None:
    """Reports on the findings: service levels, rule outcomes."""


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
