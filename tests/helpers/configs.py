"""Writing a usagewatch config file for a test: one place, so tests only say what differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from usagewatch import config


def write_config(tmp_path: Path, sources: list[dict[str, Any]], **extra: Any) -> Path:
    """A config in ``tmp_path`` with a SQLite store there, the stock rules and ``sources``."""
    data: dict[str, Any] = {
        "database": f"sqlite:///{tmp_path}/usagewatch.db",
        "rules": [str(config.stock_rules_dir())],
        "sources": sources,
    }
    data.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
