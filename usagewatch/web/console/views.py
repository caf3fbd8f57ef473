"""What each console page shows, gathered from the store, the rules and the usage report as plain
dicts for the templates. No HTTP here: the routes in ``console/__init__.py`` decide who may see what.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from usagewatch.config import Config
from usagewatch.durations import format_duration, parse_duration
from usagewatch.errors import UsagewatchError
from usagewatch.notify.render import display_title, howto_url
from usagewatch.rules.loader import Rule
from usagewatch.store import Store
from usagewatch.store.tables import ACTIVE_STATUSES
from usagewatch.store.transitions import ACTIONS

STATUSES = ("open", "acknowledged", "coached", "resolved", "dismissed")
SEVERITIES = ("high", "warning", "info")
FILTERS = ("status", "rule", "user", "severity")
#: action -> the button's label, in the order the buttons appear
ACTION_LABELS = {"acknowledged": "Acknowledge", "coached": "Mark as coached", "resolved": "Resolve",
                 "dismissed": "Dismiss (not useful)"}
DONE_WORDS = {"acknowledged": "acknowledged", "coached": "marked as coached", "resolved": "resolved",
              "dismissed": "dismissed as not useful"}
MAX_ROWS = 500  # a list longer than this is cut (newest first) with a sentence saying so
DEFAULT_SINCE = "30d"


def when(iso: str | None) -> str:
    """``2026-03-02T10:15:00+00:00`` -> ``2026-03-02 10:15`` (all times are UTC)."""
    return iso[:16].replace("T", " ") if iso else ""


def findings_page(store: Store, query: Mapping[str, str]) -> dict[str, Any]:
    """The findings list: filtered by status, rule, user and severity, newest first, with counts.

    Filtering happens here over one read of the findings: the store's own filter covers status and
    rule only, and the choices offered in the form come from the same read.
    """
    chosen = {k: (query.get(k) or "").strip() for k in FILTERS}
    everything = store.findings()

    def keep(f: dict[str, Any], skip: str = "") -> bool:
        return all(not v or k == skip or str(f.get(k) or "") == v for k, v in chosen.items())

    rows = [f for f in everything if keep(f)]
    rows.sort(key=lambda f: f["id"], reverse=True)
    by_status = Counter(f["status"] for f in everything if keep(f, skip="status"))
    return {
        "filters": chosen,
        "rows": [dict(f, last=when(f["last_seen"])) for f in rows[:MAX_ROWS]],
        "matching": len(rows),
        "total": len(everything),
        "cut": len(rows) > MAX_ROWS,
        "by_status": [(s, by_status.get(s, 0)) for s in STATUSES],
        "choices": {"status": list(STATUSES), "severity": list(SEVERITIES),
                    "rule": sorted({f["rule"] for f in everything}),
                    "user": sorted({f["user"] or "" for f in everything} - {""})},
    }


def finding_page(store: Store, finding_id: int, redact_values: bool) -> dict[str, Any] | None:
    """One finding with its evidence, samples, history, effectiveness and the actions it allows."""
    f = store.finding(finding_id)
    if f is None:
        return None
    history = [dict(h, when=when(h["at"])) for h in store.history(finding_id)]
    effectiveness = store.effectiveness(f)
    actions = [(a, label) for a, label in ACTION_LABELS.items() if f["status"] in ACTIONS[a][1]]
    samples = [] if redact_values else list(f["sample_values"])
    return {
        "f": f,
        "title": display_title(f, redact_values),
        "first": when(f["first_seen"]), "last": when(f["last_seen"]),
        # with redact_values the literal values (customer ids, perhaps) stay out of the page
        "sample_sql": f["normalized_sql"] if redact_values else f["sample_sql"],
        "samples": samples,
        "redacted": len(f["sample_values"]) if redact_values else 0,
        "suggested_sql": "" if redact_values else str(f["details"].get("suggested_sql") or ""),
        "tables": list(f["details"].get("tables") or []),
        "intervention": "" if redact_values else f["intervention"],
        "howto": howto_url(f["howto"], store.howto_base_url),
        "history": history,
        "effectiveness": effectiveness,
        "actions": actions,
    }


def rules_page(rules: list[Rule], store: Store) -> list[dict[str, Any]]:
    """The rules in force, each with its open (active) findings."""
    active = Counter(f["rule"] for f in store.findings() if f["status"] in ACTIVE_STATUSES)
    out = []
    for r in sorted(rules, key=lambda r: r.id):
        spec = r.spec
        filters = {k: v for k, v in spec.filter.model_dump(mode="json", exclude_defaults=True).items()}
        out.append({
            "id": r.id, "kind": spec.kind, "severity": spec.severity, "description": spec.description,
            "group_by": list(getattr(r.kind.params, "group_by", []) or []),
            "filters": filters, "howto": howto_url(spec.howto, store.howto_base_url),
            "enabled": spec.enabled, "active": active.get(r.id, 0), "source": r.source,
        })
    return out


def usage_page(store: Store, cfg: Config | None, since_text: str | None,
               now: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """The usage report of the last ``since`` (``?since=30d``), as the usage package renders it.

    The report is imported when asked for: a build without ``usagewatch.usage`` (or a console
    without a config) shows a sentence instead of failing.
    """
    text = (since_text or DEFAULT_SINCE).strip()
    try:
        since = parse_duration(text)
        if since <= timedelta(0):
            raise ValueError("must be positive")
    except ValueError:
        return {"since": text, "error": f"{text!r} is not a duration; write it like 7d, 30d or 12h.", "fragment": None}
    page: dict[str, Any] = {"since": format_duration(since), "error": "", "fragment": None}
    try:
        report_mod = importlib.import_module("usagewatch.usage.report")
        html_mod = importlib.import_module("usagewatch.usage.html")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("usagewatch.usage"):
            raise
        page["error"] = "The usage report is not available in this version of usagewatch."
        return page
    if cfg is None:
        page["error"] = "The usage report needs the configuration, which this console was started without."
        return page
    try:
        report = report_mod.build(store, cfg, since, now=now() if now else None)
    except UsagewatchError as exc:
        page["error"] = f"The usage report could not be made: {exc}"
        return page
    # the usage package renders its fragment with autoescaping; it is trusted markup here
    page["fragment"] = Markup(html_mod.render_fragment(report))
    return page
