"""A writer simulator for following tests: PostgreSQL 15 csvlog records, each carrying a unique id,
appended in any chunk size, and the rotations log tools do (rename, copytruncate, truncate).

Each record is one complete execution (``log_min_duration_statement`` style: ``duration: ...
statement: SELECT ... WHERE id = N``) by the user ``writer``, so the test rule
``tests/data/rules/count-ids.yaml`` counts them: its finding's count and distinct values equal the
number of ids that reached the store, and differ if any id was lost or counted twice.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
RULES = Path(__file__).parents[1] / "data" / "rules" / "count-ids.yaml"


def record(n: int, *, sql: str | None = None, user: str = "writer", table: str = "orders") -> bytes:
    """The csvlog record of execution ``n`` (its id) on ``table``, timestamped n ms after T0."""
    ts = (T0 + timedelta(milliseconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    text = sql if sql is not None else f"SELECT * FROM {table} WHERE id = {n}"
    message = f"duration: 0.{n % 1000:03d} ms  statement: {text}".replace('"', '""')
    return (f'{ts},"{user}","dw",4242,"127.0.0.1:5000",6b07b447.1092,{n + 1},"SELECT",'
            f'2026-11-02 09:00:00 UTC,3/{n},0,LOG,00000,"{message}",,,,,,,,,"psql","client backend",,0\n'
            ).encode()


def records(first: int, last: int, table: str = "orders") -> bytes:
    return b"".join(record(n, table=table) for n in range(first, last))


class LogWriter:
    """Appends to ``path`` like a server would; ``chunk`` splits every write (records cut anywhere).
    ``table`` is the table its query reads: writers on different tables make different query shapes,
    so each gets its own count-ids finding (two sources counted apart in one store)."""

    def __init__(self, path: Path, chunk: int = 0, table: str = "orders"):
        self.path = path
        self.chunk = chunk
        self.table = table
        self.next_id = 0

    def write(self, data: bytes, path: Path | None = None) -> None:
        target = path or self.path
        with open(target, "ab") as f:
            step = self.chunk or len(data) or 1
            for i in range(0, len(data), step):
                f.write(data[i:i + step])
                f.flush()

    def emit(self, n: int, path: Path | None = None) -> range:
        """Write the next ``n`` records; returns their ids."""
        ids = range(self.next_id, self.next_id + n)
        self.write(records(ids.start, ids.stop, self.table), path)
        self.next_id = ids.stop
        return ids

    def rename_rotate(self, to: Path) -> None:
        """logrotate ``create``: rename the live file away and start a new, empty one."""
        os.rename(self.path, to)
        self.path.touch()

    def copytruncate(self, to: Path) -> None:
        """logrotate ``copytruncate``: copy the live file away, then truncate it in place."""
        shutil.copyfile(self.path, to)
        with open(self.path, "r+b") as f:
            f.truncate(0)
