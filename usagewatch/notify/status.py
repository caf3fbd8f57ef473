"""The weekly status email for the support team: service levels met, what is overdue, open work per
rule, what coaching achieved, rules that mostly produce noise, and the usage highlights (the Pareto
line, new heavy users, users gone quiet or struggling). Built from the same store queries as
``usagewatch report sla|rules`` and the same ``usage.report.build`` as ``report usage`` and the
web console, so the email and the commands never disagree."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from usagewatch.config import Config
from usagewatch.durations import format_duration
from usagewatch.notify.render import SUBJECT_PREFIX, compose
from usagewatch.store import Store
from usagewatch.usage import fmt
from usagewatch.usage.report import build as build_usage


def status_data(store: Store, cfg: Config, now: datetime, period: timedelta) -> dict[str, Any]:
    sla = store.sla_report(now - period, cfg.sla.acknowledge_within, cfg.sla.resolve_within, now)
    findings = store.findings()
    active = [f for f in findings if f["status"] in ("open", "acknowledged", "coached")]
    by_rule: dict[str, int] = {}
    for f in active:
        by_rule[f["rule"]] = by_rule.get(f["rule"], 0) + 1
    coached = []
    for f in findings:
        eff = store.effectiveness(f) if f["coached_at"] else None
        if eff is not None and datetime.fromisoformat(f["coached_at"]) >= now - period - timedelta(days=7):
            coached.append({"id": f["id"], "user": f["user"], "rule": f["rule"], **eff})
    return {
        "period": format_duration(period), "sla": sla, "ack_within": format_duration(cfg.sla.acknowledge_within),
        "resolve_within": format_duration(cfg.sla.resolve_within), "open_total": len(active),
        "open_by_rule": sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0])),
        "coached": coached, "noisy_rules": [r for r in store.rule_outcomes() if r["flagged"]],
        "usage": usage_highlights(store, cfg, now, period) if cfg.usage.enabled else None,
    }


def usage_highlights(store: Store, cfg: Config, now: datetime, period: timedelta) -> dict[str, Any]:
    """What the support team should notice about usage this period: the Pareto line, totals, the
    heaviest users, and the users to reach out to (new heavy, gone quiet, struggling)."""
    r = build_usage(store, cfg, period, now)
    by_name = {u.user: u for u in r.users}

    def line(name: str) -> str:
        u = by_name.get(name)
        if u is None:  # gone quiet in this whole period
            return f"{name}: no queries in the last {r.period}"
        cost = f", {fmt.money(u.cost, r.currency)}" if r.priced else ""
        return (f"{name}{f' ({u.team})' if u.team else ''}: {u.queries:,} queries, {fmt.seconds(u.time_s)}{cost}, "
                f"{fmt.pct(u.share)} of the total, {u.errors} failed ({fmt.pct(u.error_rate)})")

    t = r.totals
    return {
        "sentence": r.pareto.sentence,
        "totals": (f"{t['users']:,} users ran {t['queries']:,} queries for {fmt.seconds(t['time_s'])} of warehouse time"
                   + (f" ({fmt.money(t['cost'], r.currency)})" if r.priced else "") + f", {t['errors']:,} failed"),
        "top": [line(u.user) for u in r.users[:3]],
        "new_heavy": [line(u) for u in r.new_heavy],
        "gone_quiet": [line(u) for u in r.segment("gone_quiet").members],
        "struggling": [line(u) for u in r.segment("struggling").members],
        "quiet_definition": r.segment("gone_quiet").definition,
        "struggling_definition": r.segment("struggling").definition,
    }


def status_email(store: Store, cfg: Config, now: datetime, period: timedelta = timedelta(days=7)) -> EmailMessage:
    """The status email to ``notify.email.to`` (the caller sends it through the SMTP channel)."""
    assert cfg.notify.email is not None
    data = status_data(store, cfg, now, period)
    sla = data["sla"]
    email = cfg.notify.email
    return compose(template="status", context=data, sender=email.from_, recipients=email.to, now=now,
                   subject=f"{SUBJECT_PREFIX} Status for the last {data['period']}: {sla['findings']} new findings, "
                           f"{data['open_total']} open, {len(sla['overdue'])} overdue",
                   message_id=make_msgid("usagewatch.status", domain=email.from_.rpartition("@")[2] or None))
