"""The ``usage:`` section of the config (docs/usage.md): teams, the cost model, how long hourly and
daily usage rows are kept, and the segments' thresholds. Part of ``usagewatch.config.Config``; kept
in its own module so the config module stays about the pipeline's keys.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from usagewatch.durations import Duration
from usagewatch.errors import Problem
from usagewatch.usage import teams as teams_mod


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CostConfig(_Strict):
    """The estimated cost of queries: runtime and/or data scanned, each at a price; both add up."""

    per_second: float = Field(default=0.0, ge=0, description="Price of one second of query runtime (0: not priced).")
    per_tb_scanned: float = Field(default=0.0, ge=0,
                                  description="Price of one TB (10^12 bytes) scanned, for logs that report bytes (0: not priced).")
    currency: str = Field(default="USD", description="Label printed with costs.")

    @property
    def priced(self) -> bool:
        return self.per_second > 0 or self.per_tb_scanned > 0

    def of(self, duration_ms: float, bytes_scanned: float) -> float:
        return duration_ms / 1000.0 * self.per_second + bytes_scanned / 1e12 * self.per_tb_scanned


class SegmentsConfig(_Strict):
    """Thresholds of the user segments in `usagewatch report usage` (docs/usage.md defines them)."""

    heavy_share: float = Field(default=0.8, gt=0, le=1, description="Heavy users: the fewest users making up this "
                               "share of the period's cost (or time), each above the average user.")
    regular_days: float = Field(default=0.25, gt=0, le=1,
                                description="Regular users: active on at least this share of the period's days.")
    recent: Duration = Field(default=timedelta(days=7), description="Gone quiet: the recent window compared ...")
    baseline: Duration = Field(default=timedelta(days=28), description="... with this long before it.")
    quiet_drop: float = Field(default=0.2, ge=0, lt=1, description="Gone quiet: the recent weekly rate is at most "
                              "this share of the baseline's.")
    quiet_min_queries: int = Field(default=10, ge=1,
                                   description="Gone quiet: only users with at least this many queries a week before.")
    struggling_error_rate: float = Field(default=0.2, gt=0, le=1,
                                         description="Struggling: at least this share of the user's queries failed.")
    struggling_min_queries: int = Field(default=10, ge=1, description="Struggling: only users with this many queries.")


class UsageConfig(_Strict):
    """Usage statistics (docs/usage.md): aggregates kept with every batch, `usagewatch report usage`."""

    enabled: bool = Field(default=True, description="Keep usage aggregates (off: nothing is counted).")
    teams: dict[str, list[str]] = Field(default_factory=dict, description="Team name -> its users.")
    teams_file: str | None = Field(default=None, description="CSV of user,team lines (relative to this file).")
    cost: CostConfig = Field(default_factory=CostConfig)
    hourly_for: Duration = Field(default=timedelta(days=14),
                                 description="Hourly rows older than this are rolled up into days by retention.")
    keep: Duration = Field(default=timedelta(days=400), description="Daily rows older than this are deleted.")
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)

    _team_of: dict[str, str] = PrivateAttr(default_factory=dict)

    def team_of(self, user: str) -> str | None:
        """The user's team (config map, then the CSV file), None when it has none."""
        return self._team_of.get(user)

    def load_teams(self, where: str) -> list[Problem]:
        """Build the user -> team table; the problems of the map and the CSV (file:line)."""
        mapping, problems = teams_mod.from_map(self.teams, where)
        if self.teams_file:
            more, csv_problems = teams_mod.from_csv(Path(self.teams_file), mapping)
            problems += csv_problems
            mapping = {**more, **mapping}
        self._team_of = mapping
        return problems
