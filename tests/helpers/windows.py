"""Rule windows saved and restored through a real store, the way a restart does it."""

from __future__ import annotations

from pathlib import Path

from usagewatch.rules import RuleEngine
from usagewatch.rules.loader import Rule
from usagewatch.store import Batch, Store


def window_store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path}/windows.db")


def save(engine: RuleEngine, store: Store, owner: str = "") -> None:
    """Commit what changed in the engine's windows since the last save, as the daemon ``owner``."""
    store.commit(Batch(windows=engine.take_state(), owner=owner))


def restored(store: Store, rules: list[Rule], owner: str = "") -> RuleEngine:
    """A fresh engine with ``rules`` and the windows the store holds for the daemon ``owner``."""
    engine = RuleEngine(rules)
    engine.restore(store.windows(), store.window_log(owner))
    return engine
