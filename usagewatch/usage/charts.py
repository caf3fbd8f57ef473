"""Inline SVG charts for the usage report: usage over time, the Pareto curve, segment sizes.

Drawn in Python as plain SVG text (no script, no fonts, no external file), so the HTML report is one
self-contained file that opens anywhere, mail clients and air-gapped laptops included. Every text
value is escaped; every bar carries a ``<title>``, which browsers show as a tooltip without script.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from usagewatch.usage.report import Pareto, Point, Segment

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
BLUE = "#2f6fb3"
RED = "#c8413b"
ORANGE = "#e08a1e"
SEGMENT_COLORS = {"heavy": "#2f6fb3", "regular": "#4f9a7a", "occasional": "#9aa5b1", "new": "#7e57c2",
                  "gone_quiet": "#e08a1e", "struggling": "#c8413b"}
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'


def _num(x: float) -> str:
    """A short axis label: 1.2k, 3.4M, 0.25."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}" if x else "0"


def _nice_max(x: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``x`` (a round top for the axis)."""
    if x <= 0:
        return 1.0
    power = 10 ** len(str(int(x))) / 10 if x >= 1 else 1.0
    while power > x:
        power /= 10
    for m in (1, 2, 5, 10):
        if m * power >= x:
            return m * power
    return 10 * power


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="{escape(label)}" {FONT} font-size="12" style="max-width:{width}px">'
            f'<title>{escape(label)}</title>{"".join(body)}</svg>')


def usage_over_time(series: Sequence[Point], measure: str, granularity: str, currency: str = "") -> str:
    """Bars of the measure per hour or day; failed queries as a red tick on each bar's base."""
    width, height, left, right, top, bottom = 940, 240, 56, 12, 16, 36
    values = [p.cost if measure == "cost" else p.time_s if measure == "time" else float(p.queries) for p in series]
    top_value = _nice_max(max(values, default=0.0))
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(series), 1)
    slot = plot_w / n
    bar = max(1.0, slot * 0.8)
    unit = {"cost": currency, "time": "s", "queries": "queries"}[measure]
    body = []
    for i in range(5):  # grid lines and y labels
        v = top_value * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{_num(v)}</text>')
    body.append(f'<text x="4" y="{top - 4}" fill="{MUTED}">{escape(unit)}</text>')
    label_every = max(1, round(n / 8))
    for i, (p, v) in enumerate(zip(series, values, strict=True)):
        x = left + i * slot + (slot - bar) / 2
        h = plot_h * v / top_value if top_value else 0
        when = p.start.strftime("%Y-%m-%d %H:00" if granularity == "hour" else "%Y-%m-%d")
        tip = (f"{when}: {p.queries} queries, {p.errors} failed, {p.time_s:,.1f} s"
               + (f", {p.cost:,.2f} {currency}" if measure == "cost" else ""))
        body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{max(h, 0):.1f}" '
                    f'fill="{BLUE}"><title>{escape(tip)}</title></rect>')
        if p.errors:
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h + 1:.1f}" width="{bar:.1f}" height="3" fill="{RED}">'
                        f'<title>{escape(tip)}</title></rect>')
        if i % label_every == 0:
            short = p.start.strftime("%H:00" if granularity == "hour" else "%b %d")
            body.append(f'<text x="{x + bar / 2:.1f}" y="{height - 16}" text-anchor="middle" fill="{MUTED}">'
                        f'{escape(short)}</text>')
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    body.append(f'<text x="{width - right}" y="{height - 2}" text-anchor="end" fill="{MUTED}">'
                f'per {granularity}; red: failed queries</text>')
    what = {"cost": "estimated cost", "time": "warehouse time", "queries": "queries"}[measure]
    return _svg(width, height, f"Usage over time: {what} per {granularity}", body)


def pareto_curve(pareto: Pareto) -> str:
    """Cumulative share of the measure against the share of users (heaviest first), with the
    diagonal of perfectly even use and the point the report's sentence is about."""
    size, pad = 300, 40
    plot = size - 2 * pad

    def xy(ux: float, uy: float) -> tuple[float, float]:
        return pad + ux * plot, size - pad - uy * plot

    body = [f'<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" stroke="{GRID}"/>']
    for i in range(1, 4):
        gx, gy = xy(i / 4, i / 4)
        body.append(f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="{pad}" y2="{size - pad}" stroke="{GRID}"/>')
        body.append(f'<line x1="{pad}" x2="{size - pad}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="{GRID}"/>')
    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    body.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{MUTED}" stroke-dasharray="4 4"/>')
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(a, b) for a, b in pareto.curve))
    body.append(f'<polyline points="{points}" fill="none" stroke="{BLUE}" stroke-width="2.5"/>')
    if pareto.head:
        hx, hy = xy(pareto.user_share, pareto.value_share)
        body.append(f'<line x1="{hx:.1f}" x2="{hx:.1f}" y1="{hy:.1f}" y2="{size - pad}" stroke="{ORANGE}" '
                    'stroke-dasharray="3 3"/>')
        body.append(f'<line x1="{pad}" x2="{hx:.1f}" y1="{hy:.1f}" y2="{hy:.1f}" stroke="{ORANGE}" '
                    'stroke-dasharray="3 3"/>')
        body.append(f'<circle cx="{hx:.1f}" cy="{hy:.1f}" r="5" fill="{ORANGE}"><title>'
                    f'{escape(pareto.sentence)}</title></circle>')
        label = f"{round(100 * pareto.user_share)}% of users: {round(100 * pareto.value_share)}%"
        body.append(f'<text x="{min(hx + 8, size - pad - 4):.1f}" y="{hy + 16:.1f}" '
                    f'text-anchor="{"start" if hx < size / 2 else "end"}" fill="{INK}">{escape(label)}</text>')
    for i in range(0, 5):
        tx, ty = xy(i / 4, i / 4)
        body.append(f'<text x="{tx:.1f}" y="{size - pad + 14}" text-anchor="middle" fill="{MUTED}">{25 * i}%</text>')
        body.append(f'<text x="{pad - 4}" y="{ty + 4:.1f}" text-anchor="end" fill="{MUTED}">{25 * i}%</text>')
    body.append(f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle" fill="{INK}">users, heaviest first</text>')
    what = {"cost": "of the cost", "time": "of warehouse time", "queries": "of the queries"}[pareto.measure]
    body.append(f'<text x="{pad}" y="{pad - 10}" fill="{INK}">share {what}</text>')
    return _svg(size, size, f"Pareto curve: {pareto.sentence}", body)


def segment_bars(segments: Sequence[Segment], users: int) -> str:
    """One horizontal bar per segment: how many users it holds, out of the period's users."""
    width, row, left = 460, 30, 130
    height = row * len(segments) + 10
    top_value = max([users, *(len(s.members) for s in segments)], default=1) or 1
    body = []
    for i, s in enumerate(segments):
        y = 6 + i * row
        w = (width - left - 50) * len(s.members) / top_value
        color = SEGMENT_COLORS.get(s.key, BLUE)
        names = ", ".join(s.members[:12]) + (f" and {len(s.members) - 12} more" if len(s.members) > 12 else "")
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="{INK}">{escape(s.title)}</text>')
        body.append(f'<rect x="{left}" y="{y}" width="{max(w, 1.5):.1f}" height="20" rx="3" fill="{color}">'
                    f'<title>{escape(s.title)}: {escape(names or "nobody")} ({escape(s.definition)})</title></rect>')
        body.append(f'<text x="{left + max(w, 1.5) + 6:.1f}" y="{y + 15}" fill="{INK}">{len(s.members)}</text>')
    return _svg(width, height, "Users per segment", body)
