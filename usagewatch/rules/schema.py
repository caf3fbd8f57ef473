"""The YAML rule model: what every rule file says, whatever its kind.

Kind-specific parameters live under ``params:`` and are validated by the kind's own ``Params`` model,
so adding a kind never touches this file.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from usagewatch.durations import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleFilter(_Strict):
    """Which events a rule looks at. Globs (``svc_*``); exclude wins over include."""

    users: list[str] = Field(default_factory=list, description="Only these users (globs); empty = all.")
    exclude_users: list[str] = Field(default_factory=list, description="Never these users (globs).")
    allow: list[str] = Field(
        default_factory=list, description="Users allowed to do this (service accounts that legitimately loop).")
    databases: list[str] = Field(default_factory=list)
    exclude_databases: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list, description="Only queries reading one of these tables (globs).")
    exclude_tables: list[str] = Field(default_factory=list, description="Never queries reading these tables.")
    statements: list[str] = Field(
        default_factory=list, description="Statement kinds: select, insert, update, delete, ...; empty = all."
    )
    sources: list[str] = Field(default_factory=list, description="Only events of these sources (names).")
    hours: str | None = Field(default=None, description='Only queries in this time of day, e.g. "08:00-18:00".')
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list, description="Only queries on these days.")
    timezone: str = Field(default="UTC", description="Time zone of hours and weekdays.")

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None:
            parse_hours(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use a name like Europe/Oslo or UTC)") from None
        return v


def parse_hours(text: str) -> tuple[int, int]:
    """``"08:00-18:00"`` -> minutes of the day (480, 1080); an end before the start wraps midnight."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m[1]) > 24 or int(m[3]) > 24 or int(m[2]) > 59 or int(m[4]) > 59:
        raise ValueError(f"hours {text!r} must look like 08:00-18:00")
    return int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])


class RuleSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable kebab-case id, unique across files.")
    kind: str
    description: str = ""
    severity: Literal["info", "warning", "high"] = "warning"
    cooldown: Duration = Field(default=timedelta(hours=24),
                               description="After a finding is resolved, no new alert for the same key before this.")
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    filter: RuleFilter = Field(default_factory=RuleFilter)
    title: str = Field(description="One-line Jinja2 template: the email subject and list title.")
    intervention: str = Field(description="Jinja2 template: the suggestion for the support team.")
    howto: str = Field(description="Link to the how-to page, absolute or relative to notify.howto_base_url.")
