"""Doc guards: config.example.yaml documents every config key and is itself valid; the README
names every command."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from usagewatch import config
from usagewatch.cli import cli
from usagewatch.validation import _unwrap
from usagewatch.yamlload import load_file

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "config.example.yaml"


def key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = prefix + (field.alias or name,)
        out.append(key)
        inner = _unwrap(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out.extend(key_paths(inner, key))
    return out


def documented(data, prefix=()) -> set[tuple[str, ...]]:
    found = set()
    if isinstance(data, dict):
        for k, v in data.items():
            found.add(prefix + (k,))
            found |= documented(v, prefix + (k,))
    elif isinstance(data, list):
        for item in data:
            found |= documented(item, prefix)
    return found


def commented_keys(text: str) -> set[str]:
    """Keys shown in commented-out examples (alternatives that cannot all be live at once)."""
    return set(re.findall(r"^\s*#\s*(?:- )?(\w+):", text, flags=re.M))


def test_example_config_documents_every_key():
    text = EXAMPLE.read_text()
    have = documented(load_file(EXAMPLE).data)
    in_comments = commented_keys(text)
    missing = [".".join(k) for k in key_paths(config.Config) if k not in have and k[-1] not in in_comments]
    assert missing == []


def test_example_config_is_valid():
    cfg = config.load(EXAMPLE)
    assert cfg.sources[0].format == "postgres-csvlog"


def test_readme_names_every_command():
    readme = (ROOT / "README.md").read_text()
    for name, cmd in cli.commands.items():
        assert f"usagewatch {name}" in readme
        for sub in getattr(cmd, "commands", {}):
            assert f"usagewatch {name} {sub}" in readme
