"""Writing a usagewatch config file for a test: one place, so tests only say what differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from usagewatch import config

#: the two rules of the 136-query story; tests that assert an exact set of findings load only these,
#: so adding a stock rule does not change what they expect
STORY_RULES = [str(config.stock_rules_dir() / "same-query-different-ids.yaml"),
               str(config.stock_rules_dir() / "same-query-repeated.yaml")]


def write_config(tmp_path: Path, sources: list[dict[str, Any]], **extra: Any) -> Path:
    """A config in ``tmp_path`` with a SQLite store there, the story's two rules (pass ``rules=``
    for others) and ``sources``."""
    data: dict[str, Any] = {
        "database": f"sqlite:///{tmp_path}/usagewatch.db",
        "rules": STORY_RULES,
        "sources": sources,
    }
    data.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
