"""The usage report as HTML: ``render`` a whole self-contained document (``report usage --format
html``), ``render_fragment`` the same body for a page that has its own ``<html>`` (the web console).

Jinja2 with autoescaping (user names and SQL come from the warehouse's users), charts as inline SVG
from ``charts.py``, styles inline in the document: no script, no font, no external reference.
"""

from __future__ import annotations

from typing import Any

import jinja2

from usagewatch.usage import charts
from usagewatch.usage.report import UsageReport

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("usagewatch.usage", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _seconds(s: float) -> str:
    """Warehouse time for people: 0.3 s, 42 s, 12 min, 3.5 h."""
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:,.3g} h"


def _ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.3g} ms" if ms < 1000 else _seconds(ms / 1000)


def _bytes(n: float) -> str:
    for size, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def _context(report: UsageReport) -> dict[str, Any]:
    return {
        "r": report,
        "chart_time": charts.usage_over_time(report.series, report.measure, report.granularity, report.currency),
        "chart_pareto": charts.pareto_curve(report.pareto),
        "chart_segments": charts.segment_bars(report.segments, report.totals["users"]),
        "seconds": _seconds, "ms": _ms, "size": _bytes,
        "money": lambda x: f"{x:,.2f} {report.currency}",
        "pct": lambda x: f"{100 * x:.0f}%",
    }


def render_fragment(report: UsageReport) -> str:
    """The report's body (a ``<section>`` with its own scoped styles) for embedding in a page."""
    return _ENV.get_template("usage.html.j2").render(**_context(report))


def render(report: UsageReport) -> str:
    """A complete, self-contained HTML document."""
    return _ENV.get_template("page.html.j2").render(body=render_fragment(report), r=report)
