"""The one exception tree of usagewatch, and ``Problem``: one located complaint about an input.

::

    UsagewatchError                 base: every error the CLI prints as "Error: <sentence>"
    +-- ConfigError                 the config or a rule file is invalid (carries every Problem)
    +-- SourceError                 a log source cannot be read (missing file, permission)
    +-- BadRecord                   one log record is malformed; counted and skipped, never fatal
    +-- StoreError                  the database refused or is unreachable
    +-- DeliveryError               a notification could not be delivered (``transient`` says retry)

Foreign errors (yaml, pydantic, SQLAlchemy, smtplib, OSError) are mapped to these where they enter,
so callers never catch a library's exception type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One complaint about an input file, located as precisely as we can (line/col are 1-based)."""

    path: str
    line: int | None
    col: int | None
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.message}"


class UsagewatchError(Exception):
    """Base of every error usagewatch raises on purpose."""


class ConfigError(UsagewatchError):
    """Config or rules are invalid. ``problems`` holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("<config>", None, None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(UsagewatchError):
    """A log source cannot be read at all (as opposed to one bad record in it)."""


class BadRecord(UsagewatchError):
    """One malformed log record. ``reason`` is a short stable label used in counters."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class StoreError(UsagewatchError):
    """The store (database) failed."""


class DeliveryError(UsagewatchError):
    """A notification was not delivered. ``transient`` is True when retrying later may succeed."""

    def __init__(self, message: str, transient: bool):
        self.transient = transient
        super().__init__(message)
