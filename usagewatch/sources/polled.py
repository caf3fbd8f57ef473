"""Reading a warehouse's query-history TABLE incrementally, for warehouses that write no log files.

Snowflake, BigQuery, Redshift and friends keep query history in a table or view. A ``PolledSource``
reads it through SQLAlchemy, past a *cursor column* that only grows (a timestamp or an id), and
hands the rows, as plain dicts, to the source's format exactly as a file reader hands it records.

Why it is built like this:

- **The cursor is a checkpoint like a file offset.** It travels in a ``FileCursor`` for the
  pseudo-path ``query:<name>`` (``offset`` = rows read so far, ``state["cursor"]`` = the last value
  read, JSON-able, with ``state["cursor_type"]`` to read it back), and the pipeline commits it in
  the same transaction as the findings its rows produced. A crash before the commit re-reads the
  batch; after it, nothing is re-read.
- **Ties at the boundary.** Many rows share one timestamp and a batch may end among them, so the
  next query uses ``>=`` and skips the rows at the boundary value that were already read: their
  identities (a key column: the format's ``key_column``, else ``query_id``; a hash of the row when
  the rows have no such column) are kept in ``state["seen"]`` as a multiset (two identical rows
  are two runs). The LIMIT is ``batch_rows`` plus the number of seen rows, so each query brings at
  least ``batch_rows`` new rows when there are that many: a big tie group cannot stall the reader.
  ``seen`` only holds rows at the one boundary value, so it stays small unless the cursor is
  coarse (a date): past ``MAX_SEEN`` the oldest are dropped with a warning (rows may then be
  read twice).
- **Polling follows an APScheduler ``IntervalTrigger``.** The daemon calls ``read`` on every rescan;
  a source queries only when the trigger's next fire time has come (on the monotonic clock, which
  tests inject), when the last query returned a full batch (a backlog), or when ``at_eof`` (replay
  reads until a batch comes back short). A late query (the daemon was busy) coalesces the missed
  fire times and returns to the trigger's grid, as an APScheduler job with ``coalesce=True`` would.
  No background thread: the daemon's loop is the only caller.
- **Errors never kill the daemon.** An unreachable database or a failing query raises
  ``SourceError`` naming the source (the URL only with its password hidden); a row the format
  rejects is counted in the chunk's ``bad`` counter and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from usagewatch.errors import BadRecord, SourceError
from usagewatch.model import FileCursor, QueryEvent
from usagewatch.sources.files import Chunk
from usagewatch.sources.formats import LogFormat

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30  # seconds, for libpq-based drivers (an unreachable host must not hang the daemon)
MAX_SEEN = 20_000  # identities of rows at the boundary value kept in the checkpoint, at most
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # monotonic seconds -> datetimes for the trigger


def dump_value(v: Any) -> tuple[str, Any]:
    """A cursor value as (type, JSON-able value) for the checkpoint."""
    if isinstance(v, datetime):
        return "datetime", v.isoformat()
    if isinstance(v, date):
        return "date", v.isoformat()
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, str)):
        raise SourceError(f"a cursor column of type {type(v).__name__} is not supported (use a timestamp, date, number or text)")
    if isinstance(v, Decimal):
        return "decimal", str(v)
    return type(v).__name__, v


def load_value(kind: str, v: Any) -> Any:
    """The inverse of ``dump_value``."""
    parse: dict[str, Callable[[Any], Any]] = {"datetime": datetime.fromisoformat, "date": date.fromisoformat,
                                              "decimal": Decimal, "int": int, "float": float, "str": str}
    return parse[kind](v)


def row_identity(row: dict[str, Any], key: str | None) -> str:
    """The key column's value when there is one, else a hash of the whole row."""
    if key is not None and row.get(key) is not None:
        return f"k:{row[key]}"
    blob = json.dumps(row, sort_keys=True, default=str).encode()
    return "h:" + hashlib.blake2b(blob, digest_size=12).hexdigest()


def _column(row: dict[str, Any], name: str | None) -> str | None:
    """The row's key for column ``name``: exact, else case-insensitive (Snowflake says START_TIME)."""
    if name is None or name in row:
        return name
    return next((k for k in row if k.lower() == name.lower()), None)


class PolledSource:
    """One configured ``type: query`` source: a history table (or the admin's query) read by cursor."""

    def __init__(self, name: str, fmt: LogFormat, url: str, *, table: str | None = None, query: str | None = None,
                 cursor: str, interval: float = 30.0, batch_rows: int = 5000, key: str | None = None,
                 start: Any = None, clock: Callable[[], float] = time.monotonic):
        if (table is None) == (query is None):
            raise ValueError("give exactly one of table or query")
        self.name = name
        self.format = fmt
        self.path = f"query:{name}"
        self.table, self.query, self.cursor_column = table, query, cursor
        self.interval, self.batch_rows = interval, batch_rows
        # a row's identity at the boundary: this column (the format's ``key_column``, else a query_id
        # column when the rows have one), else a hash of the whole row
        self.key = key or getattr(fmt, "key_column", None) or "query_id"
        self.start = start  # cursor value to begin from when nothing is checkpointed (None: the beginning)
        self.clock = clock
        try:
            self._url = sa.engine.make_url(url)
        except (SQLAlchemyError, ValueError):
            raise SourceError(f'source "{name}": the database URL is not a valid SQLAlchemy URL') from None
        self.safe_url = self._url.render_as_string(hide_password=True)
        self._engine: sa.Engine | None = None
        self._trigger: IntervalTrigger | None = None
        self._next_due: datetime | None = None
        self._due_now = True
        self.load({})

    # --- the Source protocol ---------------------------------------------------------------------
    def paths(self) -> list[str]:
        return [self.path]

    def directories(self) -> set[str]:
        return set()

    def load(self, cursors: dict[str, FileCursor]) -> None:
        """The committed cursor (or none: start at ``start``); what was read past it is forgotten."""
        c = cursors.get(self.path)
        self._cursor = c if c is not None else FileCursor(self.name, self.path, 0, 0, 0, "", 0, {})
        st = self._cursor.state
        self._last: Any = load_value(st["cursor_type"], st["cursor"]) if "cursor" in st else None
        self._seen: list[str] = list(st.get("seen", []))
        self._assembler = self.format.assembler(self.name)
        if st.get("assembler"):
            self._assembler.restore(st["assembler"])
        self._due_now = True  # at start, and after a failed commit, read again at once

    def read(self, path: str, at_eof: bool = False) -> Iterator[Chunk]:
        """Chunks of at most ``batch_rows`` new rows each, when a query is due (see module docstring).

        ``at_eof`` (replay): query until a batch comes back short, whatever the interval, and flush
        the assembler's held-back events at the end.
        """
        if path != self.path:
            return
        now = self._now()
        if not (at_eof or self._due_now or self._next_due is None or now >= self._next_due):
            return
        while True:
            limit = self.batch_rows + len(self._seen)
            try:
                rows = self._fetch(limit)
            except SourceError:
                self._due_now = False  # retry at the next fire time, not on every rescan
                raise
            finally:
                self._schedule(self._now())
            before = self._cursor.state
            chunk = self._chunk(rows)
            full = len(rows) >= limit or chunk.records >= self.batch_rows
            self._due_now = full  # a backlog: keep reading, also if this generator is dropped here
            if chunk.records or chunk.skipped or chunk.cursor.state != before:
                yield chunk
            if not full:
                break
        if at_eof:
            flushed = self._assembler.flush()
            if flushed:
                self._cursor = self._with_state(self._cursor.offset)
                yield Chunk(self.name, self.path, flushed, self._cursor)

    def flush_idle(self, idle_seconds: float) -> Iterator[Chunk]:
        """Nothing: rows are complete records (``at_eof`` still flushes a format that holds back)."""
        return iter(())

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- scheduling --------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return _EPOCH + timedelta(seconds=self.clock())

    def _schedule(self, now: datetime) -> None:
        """After a query at ``now``: the trigger's next fire time, if this query served a due one."""
        if self._trigger is None or self._next_due is None:
            self._trigger = IntervalTrigger(seconds=self.interval, start_date=now, timezone=timezone.utc)
            self._next_due = now
        if self._next_due > now:
            return  # an extra query (backlog, replay): the schedule stays
        nxt = self._trigger.get_next_fire_time(self._next_due, now)
        if nxt <= now:  # misfired (the daemon was busy): coalesce, back onto the trigger's grid
            nxt = self._trigger.get_next_fire_time(None, now)
            if nxt <= now:
                nxt = self._trigger.get_next_fire_time(nxt, now)
        self._next_due = nxt

    # --- querying ----------------------------------------------------------------------------------
    def _statement(self, engine: sa.Engine, limit: int) -> tuple[sa.TextClause, dict[str, Any]]:
        q = engine.dialect.identifier_preparer.quote
        col = q(self.cursor_column)
        value = self._last if self._last is not None else self.start
        where = f"{col} >= :cursor" if value is not None else f"{col} IS NOT NULL"
        if self.table is not None:
            source = ".".join(q(part) for part in self.table.split("."))
        else:
            assert self.query is not None
            source = f"({self.query.strip().rstrip(';')}) AS usagewatch_history"
        sql = f"SELECT * FROM {source} WHERE {where} ORDER BY {col} LIMIT {int(limit)}"
        return sa.text(sql), {"cursor": value} if (value is not None or self.query is not None) else {}

    def _fetch(self, limit: int) -> list[dict[str, Any]]:
        try:
            if self._engine is None:
                connect_args: dict[str, Any] = {}
                if self._url.get_backend_name() in ("postgresql", "redshift") and "connect_timeout" not in self._url.query:
                    connect_args["connect_timeout"] = CONNECT_TIMEOUT  # libpq waits for ever by default
                self._engine = sa.create_engine(self._url, pool_pre_ping=True, connect_args=connect_args)
            stmt, params = self._statement(self._engine, limit)
            with self._engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(stmt, params)]
        except (SQLAlchemyError, ImportError) as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            if self._url.password:
                detail = detail.replace(str(self._url.password), "***")
            raise SourceError(f'source "{self.name}": cannot read the query history from {self.safe_url}: '
                              f"{exc.__class__.__name__}: {detail}") from None

    # --- rows -> events ------------------------------------------------------------------------------
    def _chunk(self, rows: list[dict[str, Any]]) -> Chunk:
        asm = self._assembler
        events: list[QueryEvent] = []
        bad: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        before = Counter(asm.skipped)
        boundary, already = self._last, Counter(self._seen)
        records = 0
        for row in rows:
            ccol = _column(row, self.cursor_column)
            v = row.get(ccol) if ccol is not None else None
            if v is None:
                skipped["null-cursor"] += 1
                continue
            ident = row_identity(row, _column(row, self.key))
            if self._last is not None and v < self._last:
                skipped["behind-cursor"] += 1  # only an admin query that ignores its order can do this
                continue
            if self._last is not None and v == self._last:
                if v == boundary and already[ident] > 0:
                    already[ident] -= 1
                    continue  # read before, at the boundary of an earlier batch
            if records >= self.batch_rows:
                break  # (ties came back in another order) the rest comes with the next batch
            if self._last is not None and v == self._last:
                self._seen.append(ident)
            else:
                self._last, self._seen = v, [ident]
            records += 1
            pos = f"{self.path}:{self._cursor.offset + records}"
            try:
                events.extend(asm.feed(row, pos))
            except BadRecord as exc:
                bad[exc.reason] += 1
                log.debug("%s: bad row: %s", pos, exc)
            except Exception:  # never let one row stop the daemon
                bad["internal-error"] += 1
                log.exception("%s: could not process a row; skipped", pos)
        if len(self._seen) > MAX_SEEN:
            log.warning('source "%s": more than %d rows share the cursor value %s; rows at that value may be '
                        "read twice after a restart (use a finer cursor column)", self.name, MAX_SEEN, self._last)
            self._seen = self._seen[-MAX_SEEN:]
        self._cursor = self._with_state(self._cursor.offset + records)
        skipped.update(asm.skipped)
        skipped.subtract(before)
        return Chunk(self.name, self.path, events, self._cursor, records, bad, +skipped, 0)

    def _with_state(self, offset: int) -> FileCursor:
        state: dict[str, Any] = {}
        if self._last is not None:
            state["cursor_type"], state["cursor"] = dump_value(self._last)
            state["seen"] = list(self._seen)
        asm_state = self._assembler.state()
        if asm_state:
            state["assembler"] = asm_state
        return FileCursor(self.name, self.path, 0, 0, 0, "", offset, state)
