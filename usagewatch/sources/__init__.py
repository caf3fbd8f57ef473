"""Sources: turn bytes of log files (or rows of history tables) into QueryEvents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    from usagewatch.model import FileCursor
    from usagewatch.sources.files import Chunk


class Source(Protocol):
    """What the pipeline needs of a source; ``FileSource`` and ``PolledSource`` implement it.

    ``paths()`` names the units a source reads (files; one pseudo-path for a polled table), each
    with its own cursor; ``read`` yields chunks of events with the cursor to commit with them.
    """

    name: str

    def paths(self) -> list[str]: ...

    def directories(self) -> set[str]: ...

    def load(self, cursors: dict[str, FileCursor]) -> None: ...

    def read(self, path: str, at_eof: bool = False) -> Iterator[Chunk]: ...

    def flush_idle(self, idle_seconds: float) -> Iterator[Chunk]: ...
