"""Numbers of the usage report as people read them, shared by the table, the HTML and the email."""

from __future__ import annotations


def seconds(s: float) -> str:
    """Warehouse time: 12 ms, 0.3 s, 42 s, 12 min, 3.5 h."""
    if s == 0:
        return "0 s"
    if s < 0.1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:,.3g} h"


def ms(value: float | None) -> str:
    """A duration in milliseconds (a p95), "-" when unknown."""
    if value is None:
        return "-"
    if value < 1:  # the histogram's first bucket holds everything under 1 ms
        return "<1 ms"
    return f"{value:.3g} ms" if value < 1000 else seconds(value / 1000)


def size(n: float) -> str:
    for unit_size, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= unit_size:
            return f"{n / unit_size:.3g} {unit}"
    return f"{int(n)} B"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def money(x: float, currency: str) -> str:
    return f"{x:,.2f} {currency}" if x >= 0.01 or x == 0 else f"{x:.2g} {currency}"
