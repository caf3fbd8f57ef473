"""The usage report as HTML: ``render`` a whole self-contained document (``report usage --format
html``), ``render_fragment`` the same body for a page that has its own ``<html>`` (the web console).

Jinja2 with autoescaping (user names and SQL come from the warehouse's users), charts as inline SVG
from ``charts.py``, styles inline in the document: no script, no font, no external reference.
"""

from __future__ import annotations

from typing import Any

import jinja2

from usagewatch.usage import charts, fmt
from usagewatch.usage.report import UsageReport

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("usagewatch.usage", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _context(report: UsageReport) -> dict[str, Any]:
    return {
        "r": report,
        "chart_time": charts.usage_over_time(report.series, report.measure, report.granularity, report.currency),
        "chart_pareto": charts.pareto_curve(report.pareto),
        "chart_segments": charts.segment_bars(report.segments, report.totals["users"]),
        "seconds": fmt.seconds, "ms": fmt.ms, "size": fmt.size, "pct": fmt.pct,
        "money": lambda x: fmt.money(x, report.currency),
    }


def render_fragment(report: UsageReport) -> str:
    """The report's body (a ``<section>`` with its own scoped styles) for embedding in a page."""
    return _ENV.get_template("usage.html.j2").render(**_context(report))


def render(report: UsageReport) -> str:
    """A complete, self-contained HTML document."""
    return _ENV.get_template("page.html.j2").render(body=render_fragment(report), r=report)
