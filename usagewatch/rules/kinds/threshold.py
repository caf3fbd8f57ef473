"""``threshold``: at least N matching events per group in a window: many failed queries (someone is
stuck), many long-running queries, many huge scans. The match looks at the event's outcome
(duration, rows, bytes scanned, success, error code), which sources fill where they know it."""

from __future__ import annotations

from datetime import timedelta
from typing import Callable

from pydantic import Field

from usagewatch.durations import Duration
from usagewatch.model import FindingUpdate, NormalizedEvent, QueryEvent
from usagewatch.rules.kinds.base import KeyWindow, KindParams, WindowedKind, WindowParams, kinds


class Match(KindParams):
    """Which events count. All given conditions must hold; an event that does not know a measure
    (no duration in a general log) does not match a condition on it."""

    min_duration: Duration | None = None
    min_rows: int | None = Field(default=None, ge=0)
    min_bytes_scanned: int | None = Field(default=None, ge=0)
    status: str | None = Field(default=None, pattern="^(failed|succeeded)$")
    error_codes: list[str] = Field(default_factory=list, description="SQLSTATE / vendor codes (globs not needed).")


class ThresholdParams(WindowParams):
    group_by: list[str] = Field(default_factory=lambda: ["user"])
    window: Duration = timedelta(minutes=10)
    min_runs: int = Field(default=5, ge=1)
    match: Match = Field(default_factory=Match)


@kinds.register("threshold")
class Threshold(WindowedKind):
    Params = ThresholdParams
    params: ThresholdParams

    def event_check(self) -> Callable[[QueryEvent], bool]:
        return self.matches_event

    def matches_event(self, ev: QueryEvent) -> bool:
        """Whether the query's outcome is what ``match`` asks for (the engine asks before
        ``observe``, see ``RuleKind.event_check``)."""
        m = self.params.match
        if m.min_duration is not None and (ev.duration_ms is None
                                           or ev.duration_ms < m.min_duration.total_seconds() * 1000):
            return False
        if m.min_rows is not None and (ev.rows is None or ev.rows < m.min_rows):
            return False
        if m.min_bytes_scanned is not None and (ev.bytes_scanned is None or ev.bytes_scanned < m.min_bytes_scanned):
            return False
        failed = ev.error_code is not None or ev.error_message is not None
        if m.status == "failed" and not failed or m.status == "succeeded" and failed:
            return False
        return not m.error_codes or ev.error_code in m.error_codes

    def holds(self, w: KeyWindow) -> bool:
        return len(w) >= self.params.min_runs

    def describe(self, w: KeyWindow, update: FindingUpdate) -> None:
        assert w.episode is not None
        update.distinct_values = w.episode.distinct("fingerprint")  # how many different queries
        update.details["suggested_sql"] = update.normalized_sql or ""

    def values(self, ne: NormalizedEvent) -> dict[str, str | None]:
        return {"fingerprint": ne.query.fingerprint}
