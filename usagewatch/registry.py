"""Name -> class tables for the things admins name in YAML (log formats, rule kinds), with
"Did you mean ...?" on a miss. Built-ins register themselves with the same decorator a plugin would use."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A suffix for an error message: ' Did you mean "x"?' or the list of valid names."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if close:
        return f' Did you mean "{close[0]}"?'
    return " Valid names: " + ", ".join(sorted(choices)) + "."


class Registry(Generic[T]):
    """A table of named classes. ``what`` names the kind of thing in error messages ("log format")."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def unknown(self, name: str) -> str:
        """The error sentence for a name that is not registered, with "Did you mean ...?"."""
        return f'unknown {self.what} "{name}".' + did_you_mean(name, self.names())

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; KeyError with a did-you-mean message otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items
