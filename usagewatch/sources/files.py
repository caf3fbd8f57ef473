"""Reading log files from a saved position: discovery by glob, identity, offsets, complete records.

The same code serves ``replay`` (read every file to its end) and ``run`` (read what is new each time
the daemon wakes). A file's position only moves past COMPLETE records (the format frames them), so a
writer's half-flushed record is read again, whole, next time. Identity is device+inode plus a hash
of the file's first bytes: a replaced, reused-inode or truncated file is read from the start.
The position in memory is only the reader's; what survives a crash is the cursor the pipeline
commits together with the findings (``FileCursor``).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Iterator

from usagewatch.errors import BadRecord, SourceError
from usagewatch.model import FileCursor, QueryEvent
from usagewatch.sources.formats import Assembler, LogFormat

log = logging.getLogger(__name__)

HEAD_BYTES = 1024
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a "record" larger than this is cut off and counted


@dataclass
class Chunk:
    """What one read of one file produced, and the cursor to commit with it."""

    source: str
    path: str
    events: list[QueryEvent]
    cursor: FileCursor
    records: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0


def _head_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class _Tracked:
    """A file the reader is following: its committed-or-pending cursor and live assembler."""

    def __init__(self, cursor: FileCursor, assembler: Assembler):
        self.cursor = cursor
        self.assembler = assembler
        self.last_growth = time.monotonic()
        self.verified = False


class FileSource:
    """One configured source: files matched by glob patterns, all in one format."""

    def __init__(self, name: str, fmt: LogFormat, patterns: list[str], exclude: list[str] | None = None,
                 batch_bytes: int = 4 * 1024 * 1024):
        self.name = name
        self.format = fmt
        self.patterns = patterns
        self.exclude = exclude or []
        self.batch_bytes = batch_bytes
        self._saved: dict[str, FileCursor] = {}
        self._files: dict[str, _Tracked] = {}

    # --- discovery -------------------------------------------------------------------------------
    def paths(self) -> list[str]:
        """Matching files, oldest first (so rotated files are read before their successors)."""
        found: set[str] = set()
        for pattern in self.patterns:
            for p in glob.glob(pattern):
                if os.path.isfile(p) and not any(fnmatch.fnmatch(p, ex) for ex in self.exclude):
                    found.add(os.path.abspath(p))
        def age(p: str) -> tuple[float, str]:
            try:
                return (os.stat(p).st_mtime, p)
            except OSError:
                return (0.0, p)
        return sorted(found, key=age)

    def directories(self) -> set[str]:
        """Directories to watch for changes (the non-glob part of each pattern)."""
        out = set()
        for pattern in self.patterns:
            d = pattern
            while glob.has_magic(d):
                d = os.path.dirname(d)
            out.add(d if os.path.isdir(d) else os.path.dirname(d) or ".")
        return out

    def load(self, cursors: dict[str, FileCursor]) -> None:
        """Cursors committed earlier, keyed by path; each is checked against the file when first read."""
        self._saved = dict(cursors)
        self._files.clear()

    # --- reading ---------------------------------------------------------------------------------
    def _track(self, path: str, st: os.stat_result, f: BinaryIO) -> _Tracked:
        """The tracked state for ``path``, starting over when the file is not the one we knew
        (another inode, shorter than our position, or other bytes at its head: inode reuse)."""
        t = self._files.get(path)
        known = t.cursor if t is not None else self._saved.pop(path, None)
        if known is not None and self._same_file(known, st, f):
            if t is not None:
                return t
            cursor = known
        else:
            if known is not None:
                log.info("%s: a different file than the one read before (rotated, replaced or truncated); "
                         "reading it from the start", path)
            cursor = FileCursor(self.name, path, st.st_dev, st.st_ino, 0, _head_hash(b""), 0, {})
        assembler = self.format.assembler(self.name)
        if cursor.state:
            assembler.restore(cursor.state)
        t = _Tracked(cursor, assembler)
        self._files[path] = t
        return t

    @staticmethod
    def _same_file(c: FileCursor, st: os.stat_result, f: BinaryIO) -> bool:
        if (c.dev, c.inode) != (st.st_dev, st.st_ino) or st.st_size < c.offset:
            return False
        f.seek(0)
        return _head_hash(f.read(c.head_len)) == c.head_hash

    def read(self, path: str, at_eof: bool = False) -> Iterator[Chunk]:
        """Chunks of complete records from the file's position to its current end.

        ``at_eof`` (replay): the file is finished, so a last unterminated record is taken too and
        held-back events are flushed at the end.
        """
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
        with f:
            st = os.fstat(f.fileno())
            t = self._files.get(path)
            if t is not None and (t.cursor.dev, t.cursor.inode, t.cursor.offset) == (st.st_dev, st.st_ino, st.st_size):
                return  # nothing new: the usual case on a rescan, answered without reading
            t = self._track(path, st, f)
            size = st.st_size
            while True:
                start = t.cursor.offset
                if start >= size:
                    break
                want = min(self.batch_bytes, size - start)
                f.seek(start)
                data = f.read(want)
                while True:
                    reached_end = start + len(data) >= size
                    ends = self.format.frame(data, at_eof and reached_end)
                    if ends or reached_end or len(data) >= MAX_RECORD_BYTES:
                        break
                    data += f.read(len(data))  # one record bigger than a batch: read on
                if not ends:
                    if len(data) >= MAX_RECORD_BYTES:
                        ends = [len(data)]  # runaway record: skip past it, counted as bad below
                    else:
                        break
                chunk = self._chunk(t, path, data, ends, start, st)
                t.last_growth = time.monotonic()
                yield chunk
            if at_eof:
                flushed = t.assembler.flush()
                if flushed:
                    yield self._flush_chunk(t, path, flushed)

    def flush_idle(self, idle_seconds: float) -> Iterator[Chunk]:
        """Emit events held back in files that have not grown for ``idle_seconds`` (wall clock):
        a statement whose duration record never came must not wait forever."""
        now = time.monotonic()
        for path, t in self._files.items():
            if now - t.last_growth >= idle_seconds and t.cursor.state:
                flushed = t.assembler.flush()
                if flushed or t.assembler.state() != t.cursor.state:
                    yield self._flush_chunk(t, path, flushed)

    def _flush_chunk(self, t: _Tracked, path: str, events: list[QueryEvent]) -> Chunk:
        t.cursor = replace(t.cursor, state=t.assembler.state())
        return Chunk(self.name, path, events, t.cursor)

    def _chunk(self, t: _Tracked, path: str, data: bytes, ends: list[int], start: int, st: os.stat_result) -> Chunk:
        fmt, asm = self.format, t.assembler
        events: list[QueryEvent] = []
        bad: Counter[str] = Counter()
        before = Counter(asm.skipped)
        prev = 0
        for end in ends:
            raw = data[prev:end]
            pos = start + prev
            prev = end
            if len(raw) >= MAX_RECORD_BYTES:
                bad["record-too-large"] += 1
                continue
            try:
                fields = fmt.parse(raw)
                events.extend(asm.feed(fields, f"{path}:{pos}"))
            except BadRecord as exc:
                bad[exc.reason] += 1
                log.debug("%s:%d: bad record: %s", path, pos, exc)
            except Exception:  # never let one record stop the daemon
                bad["internal-error"] += 1
                log.exception("%s:%d: could not process a record; skipped", path, pos)
        offset = start + ends[-1]
        c = t.cursor
        head_len, head_hash = c.head_len, c.head_hash
        if head_len < HEAD_BYTES and offset > head_len:
            # grow the identity hash with the file, up to HEAD_BYTES, from the data in hand
            if start == 0:
                head_len = min(HEAD_BYTES, offset)
                head_hash = _head_hash(data[:head_len])
        t.cursor = FileCursor(self.name, path, st.st_dev, st.st_ino, head_len, head_hash, offset, asm.state())
        skipped = Counter(asm.skipped)
        skipped.subtract(before)
        return Chunk(self.name, path, events, t.cursor, len(ends), bad, +skipped, offset - start)
