"""The user segments and the Pareto line of the usage report (definitions: docs/usage.md).

Kept apart from ``report.py`` (which reads the store and assembles the report) because this is the
part people argue about: what "heavy" or "gone quiet" means, in one place, on plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from usagewatch.config import Config
from usagewatch.durations import format_duration

if TYPE_CHECKING:
    from usagewatch.usage.report import UserUsage

NO_USER = "(unknown)"

SEGMENTS = {
    "heavy": "Heavy",
    "regular": "Regular",
    "occasional": "Occasional",
    "new": "New this period",
    "gone_quiet": "Gone quiet",
    "struggling": "Struggling",
}


@dataclass
class Segment:
    key: str
    title: str
    definition: str
    members: list[str]


@dataclass
class Pareto:
    """The fewest users making up ``target`` of the measure, and the whole curve for the chart."""

    measure: str
    head: int
    users: int
    user_share: float
    value_share: float
    curve: list[tuple[float, float]]  # (share of users, share of the measure), users by measure, descending
    sentence: str


MEASURE_WORDS = {"cost": "the estimated cost", "time": "warehouse time", "queries": "the queries"}


def pareto_of(users: list[UserUsage], target: float, measure: str) -> Pareto:
    """The Pareto line of ``users`` (sorted by share, heaviest first): the fewest of them whose
    shares add up to ``target``, and the cumulative curve the HTML report draws."""
    n = len(users)
    curve = [(0.0, 0.0)]
    cum, head, head_share = 0.0, 0, 0.0
    for i, u in enumerate(users, 1):  # sorted by share, descending
        cum = 1.0 if i == n and any(x.share for x in users) else cum + u.share  # no rounding left over at the end
        curve.append((i / n, min(cum, 1.0)))
        if not head and cum >= target - 1e-9:
            head, head_share = i, min(cum, 1.0)
    if not n or not any(u.share for u in users):
        return Pareto(measure, 0, n, 0.0, 0.0, curve, "No usage in this period.")
    pct_users = round(100 * head / n)
    sentence = (f"{pct_users}% of users ({head} of {n}) account for {round(100 * head_share)}% of "
                f"{MEASURE_WORDS[measure]}.")
    return Pareto(measure, head, n, head / n, head_share, curve, sentence)


def heavy_of(values: dict[str, float], target: float) -> set[str]:
    """Heavy users by a value per user: the Pareto head, each above the mean."""
    total = sum(values.values())
    if not total:
        return set()
    mean = total / len(values)
    out, cum = set(), 0.0
    for user, v in sorted(values.items(), key=lambda kv: (-kv[1], kv[0])):
        if cum >= target * total - 1e-9 * total:
            break
        cum += v
        if v > mean:
            out.add(user)
    return out


def segments_of(users: list[UserUsage], pareto: Pareto, cfg: Config, start: datetime,
                recent_n: dict[str, int], base_n: dict[str, int], since: timedelta) -> list[Segment]:
    """The six segments of the period starting at ``start`` (docs/usage.md); sets each user's
    ``segments``. ``recent_n`` and ``base_n`` are queries per user in the recent window and in the
    baseline before it (``usage.segments.recent`` and ``baseline``), for "gone quiet"."""
    seg = cfg.usage.segments
    period_days = max(1, math.ceil(since.total_seconds() / 86400))
    regular_min = max(1, math.ceil(seg.regular_days * period_days))
    mean = 1.0 / len(users) if users else 0.0
    heavy = [u.user for i, u in enumerate(users) if i < pareto.head and u.share > mean]
    heavy_set = set(heavy)
    regular = [u.user for u in users if u.user not in heavy_set and u.active_days >= regular_min]
    occasional = [u.user for u in users if u.user not in heavy_set and u.active_days < regular_min]
    new = [u.user for u in users if u.first_seen is not None and u.first_seen >= start]
    weeks_base = seg.baseline.total_seconds() / 604800
    weeks_recent = seg.recent.total_seconds() / 604800
    quiet = []
    for user, n in sorted(base_n.items(), key=lambda kv: (-kv[1], kv[0])):
        rate = n / weeks_base
        if rate >= seg.quiet_min_queries and recent_n.get(user, 0) / weeks_recent <= seg.quiet_drop * rate:
            quiet.append(user or NO_USER)
    struggling = [u.user for u in users if u.queries >= seg.struggling_min_queries
                  and u.error_rate >= seg.struggling_error_rate]
    member_sets = [(k, set(m)) for k, m in (("heavy", heavy), ("regular", regular), ("occasional", occasional),
                                             ("new", new), ("gone_quiet", quiet), ("struggling", struggling))]
    for u in users:
        u.segments = [k for k, members in member_sets if u.user in members]
    share = round(100 * seg.heavy_share)
    return [
        Segment("heavy", SEGMENTS["heavy"], f"among the fewest users making up {share}% of "
                f"{MEASURE_WORDS[pareto.measure]}, each above the average user", heavy),
        Segment("regular", SEGMENTS["regular"], f"active on {regular_min} or more of the period's {period_days} days",
                regular),
        Segment("occasional", SEGMENTS["occasional"], f"active on fewer than {regular_min} days", occasional),
        Segment("new", SEGMENTS["new"], "first seen in this period", new),
        Segment("gone_quiet", SEGMENTS["gone_quiet"],
                f"ran {seg.quiet_min_queries}+ queries a week in the {format_duration(seg.baseline)} before the last "
                f"{format_duration(seg.recent)}, and at most {round(100 * seg.quiet_drop)}% of that rate since", quiet),
        Segment("struggling", SEGMENTS["struggling"],
                f"{round(100 * seg.struggling_error_rate)}% or more of {seg.struggling_min_queries}+ queries failed",
                struggling),
    ]
