"""The YAML rule model: what every rule file says, whatever its kind.

Kind-specific parameters live under ``params:`` and are validated by the kind's own ``Params`` model,
so adding a kind never touches this file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleFilter(_Strict):
    """Which events a rule looks at. Globs (``svc_*``); exclude wins over include."""

    users: list[str] = Field(default_factory=list, description="Only these users (globs); empty = all.")
    exclude_users: list[str] = Field(default_factory=list, description="Never these users (service accounts).")
    databases: list[str] = Field(default_factory=list)
    exclude_databases: list[str] = Field(default_factory=list)
    statements: list[str] = Field(
        default_factory=list, description="Statement kinds: select, insert, update, delete, ...; empty = all."
    )


class RuleSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable kebab-case id, unique across files.")
    kind: str
    description: str = ""
    severity: Literal["info", "warning", "high"] = "warning"
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    filter: RuleFilter = Field(default_factory=RuleFilter)
    title: str = Field(description="One-line Jinja2 template: the email subject and list title.")
    intervention: str = Field(description="Jinja2 template: the suggestion for the support team.")
    howto: str = Field(description="Link to the how-to page, absolute or relative to notify.howto_base_url.")
