"""Following log files: discovery by glob, identity across rotations, offsets at record boundaries.

The same code serves ``replay`` (read every file to its end) and ``run`` (read what is new each time
the daemon wakes). What the reader guarantees:

- A position only moves past COMPLETE records (the format frames them): a writer's half-flushed
  record is read again, whole, next time. Formats whose records end only where the next one starts
  (stderr, slow logs) get their last record framed once the file has been idle for a while.
- Files are tracked by identity (``identity.py``), not by name: a file renamed by rotation keeps
  its cursor; a file renamed out of the glob, or deleted, is still read to its end through the
  descriptor we hold. A new file whose first bytes equal what a known cursor already read
  (copytruncate's copy, a move across file systems) resumes at that cursor's offset instead of
  being read twice. A truncated, replaced or reused-inode file is read from its start.
- Compressed rotated copies (``.gz`` ...) are never opened; leading NUL runs (copytruncate with a
  writer lacking O_APPEND) are skipped; oversized records and invalid UTF-8 are counted, skipped
  and logged with file and offset; no record can stop the reader.

The position in memory is only the reader's; what survives a crash is the cursor the pipeline
commits together with the findings (``FileCursor``, keyed by device:inode).
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterator

from usagewatch.errors import BadRecord
from usagewatch.model import FileCursor, QueryEvent
from usagewatch.sources.formats import Assembler, LogFormat
from usagewatch.sources.identity import HEAD_BYTES, MARK_BYTES, digest, mark_of, same_content, same_file

log = logging.getLogger(__name__)

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".z")
HELD = "fd:"  # prefix of the pseudo-path of a file we still hold open but no glob matches any more
MAX_ORPHANS = 32


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


class _Tracked:
    """A file being followed: its cursor (committed, or about to be), assembler and descriptor."""

    __slots__ = ("cursor", "assembler", "fd", "path", "last_growth")

    def __init__(self, cursor: FileCursor, assembler: Assembler, fd: int | None, path: str):
        self.cursor = cursor
        self.assembler = assembler
        self.fd = fd
        self.path = path
        self.last_growth = time.monotonic()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _new_cursor(source: str, path: str, st: os.stat_result) -> FileCursor:
    return FileCursor(source, path, st.st_dev, st.st_ino, 0, digest(b""), 0, {})


class FileSource:
    """One configured source: files matched by glob patterns, all in one format."""

    def __init__(self, name: str, fmt: LogFormat, patterns: list[str], exclude: list[str] | None = None,
                 batch_bytes: int = 4 * 1024 * 1024, max_record_bytes: int = 1024 * 1024,
                 close_idle: float = 300.0):
        self.name = name
        self.format = fmt
        self.patterns = patterns
        self.exclude = exclude or []
        self.batch_bytes = batch_bytes
        self.max_record_bytes = max_record_bytes
        self.close_idle = close_idle  # seconds before an idle descriptor is closed
        self._saved: dict[str, FileCursor] = {}  # committed cursors not (yet) matched to a file
        self._orphans: list[FileCursor] = []  # cursors of files truncated under us: a copy may claim one
        self._files: dict[str, _Tracked] = {}  # by FileCursor.key
        self._warned: set[str] = set()

    # --- discovery -------------------------------------------------------------------------------
    def _matching(self) -> list[str]:
        found: set[str] = set()
        for pattern in self.patterns:
            for p in glob.glob(pattern):
                p = os.path.abspath(p)
                if any(fnmatch.fnmatch(p, ex) for ex in self.exclude) or not os.path.isfile(p):
                    continue
                if p.lower().endswith(COMPRESSED):
                    self._warn_once(p, "%s: compressed files are never read (add it to exclude to silence this)")
                    continue
                found.add(p)

        def age(p: str) -> tuple[float, str]:
            try:
                return (os.stat(p).st_mtime, p)
            except OSError:
                return (0.0, p)

        return sorted(found, key=age)

    def paths(self) -> list[str]:
        """What to read now, oldest first: files we hold open that no pattern reaches any more
        (renamed away by rotation, or deleted) so their tails come before their successors, then
        every matching file."""
        matched = self._matching()
        live = set()
        for p in matched:
            try:
                st = os.stat(p)
            except OSError:
                continue
            live.add(f"{st.st_dev}:{st.st_ino}")
        held = [HELD + key for key, t in self._files.items() if key not in live and t.fd is not None]
        return held + matched

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
        """Cursors committed earlier (keyed by ``FileCursor.key``); each is checked against the
        file when first read. Forgets everything in memory (used after a failed commit too)."""
        for t in self._files.values():
            t.close()
        self._files.clear()
        self._orphans.clear()
        self._saved = dict(cursors)

    def close(self) -> None:
        for t in self._files.values():
            t.close()

    # --- reading ---------------------------------------------------------------------------------
    def read(self, path: str, at_eof: bool = False) -> Iterator[Chunk]:
        """Chunks of complete records from the file's position to its current end.

        ``at_eof`` (replay): the file is finished, so a last unterminated record is taken too and
        held-back events are flushed at the end.
        """
        if path.startswith(HELD):
            yield from self._drain(path[len(HELD):], at_eof)
            return
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return
        except OSError as exc:
            self._warn_once(path, f"%s: cannot be read ({exc.strerror}); skipped until it can")
            return
        st = os.fstat(fd)
        key = f"{st.st_dev}:{st.st_ino}"
        t = self._files.get(key)
        if t is None:
            t = self._adopt(path, fd, st)
        else:
            if t.fd is None:
                t.fd = fd
            else:
                os.close(fd)
            t.path = path
            if st.st_size == t.cursor.offset and not at_eof:
                return  # nothing new: the usual case on a rescan
            assert t.fd is not None
            if not same_content(t.cursor, t.fd, st.st_size):
                yield self._restart(t, st, "truncated or rewritten in place")
        yield from self._read(t, at_eof)
        if at_eof:
            flushed = t.assembler.flush()
            if flushed:
                yield self._state_chunk(t, flushed)
        elif self._idle(t) and t.cursor.offset == os.fstat(t.fd).st_size:  # type: ignore[arg-type]
            t.close()  # reopened by path when it grows; keeps descriptors bounded with many files

    def _drain(self, key: str, at_eof: bool) -> Iterator[Chunk]:
        """Read a file no pattern reaches any more through the descriptor we hold, then let go."""
        t = self._files.get(key)
        if t is None or t.fd is None:
            return
        yield from self._read(t, at_eof)
        assert t.fd is not None
        if at_eof or (self._idle(t) and os.fstat(t.fd).st_size == t.cursor.offset):
            flushed = t.assembler.flush()
            if flushed:
                yield self._state_chunk(t, flushed)
            t.close()
            del self._files[key]
            self._saved[key] = t.cursor  # a later copy or move of it can still claim its position

    def _idle(self, t: _Tracked) -> bool:
        return time.monotonic() - t.last_growth >= self.close_idle

    def _adopt(self, path: str, fd: int, st: os.stat_result) -> _Tracked:
        """Start following a file not followed yet: resume its own cursor, claim the cursor of the
        file it is a copy of, or start at 0."""
        key = f"{st.st_dev}:{st.st_ino}"
        own = self._saved.pop(key, None)
        if own is not None and same_file(own, st, fd):
            cursor = replace(own, path=path)
        else:
            if own is not None:
                log.info("%s: not the file read before under this inode (reused or rewritten); reading it from the start",
                         path)
            cursor = self._claim(path, fd, st) or _new_cursor(self.name, path, st)
            if cursor.offset == 0 and st.st_size:
                log.info("%s: new file, reading from its start", path)
        assembler = self.format.assembler(self.name)
        if cursor.state:
            assembler.restore(cursor.state)
        t = _Tracked(cursor, assembler, fd, path)
        self._files[key] = t
        return t

    def _claim(self, path: str, fd: int, st: os.stat_result) -> FileCursor | None:
        """The position of a known file whose content this one repeats up to that position."""
        followed = [t.cursor for t in self._files.values()]  # copytruncate's copy appears before the truncation is seen
        for c in [*self._orphans, *followed, *self._saved.values()]:
            if c.offset and c.head_len and same_content(c, fd, st.st_size):
                log.info("%s: holds what was already read from %s up to offset %d (a rotated copy); "
                         "continuing from there", path, c.path, c.offset)
                return replace(c, path=path, dev=st.st_dev, inode=st.st_ino)
        return None

    def _restart(self, t: _Tracked, st: os.stat_result, why: str) -> Chunk:
        """The followed file no longer holds what we read: keep the old position for a copy to
        claim, emit what the assembler held back, and read the file from its start."""
        log.info("%s: %s; reading it from the start", t.path, why)
        self._orphans = [t.cursor, *self._orphans][:MAX_ORPHANS]
        flushed = t.assembler.flush()
        t.assembler = self.format.assembler(self.name)
        old = t.cursor
        t.cursor = replace(_new_cursor(self.name, t.path, st), records=old.records, bad=dict(old.bad),
                           last_ts=old.last_ts)
        return Chunk(self.name, t.path, flushed, t.cursor)

    def _read(self, t: _Tracked, at_eof: bool) -> Iterator[Chunk]:
        assert t.fd is not None
        fd = t.fd
        while True:
            size = os.fstat(fd).st_size
            start = t.cursor.offset
            if start >= size:
                return
            data = os.pread(fd, min(self.batch_bytes, size - start), start)
            skipped_nul = len(data) - len(data.lstrip(b"\0"))
            if skipped_nul:  # a NUL run (copytruncate + a writer without O_APPEND): not records
                self._warn(t.path, start, f"skipped {skipped_nul} NUL bytes")
                yield self._advance(t, start, data[:skipped_nul], [], Counter({"nul-bytes": 1}))
                continue
            while True:
                reached_end = start + len(data) >= size
                ends = self.format.frame(data, at_eof and reached_end)
                if ends or reached_end or len(data) > self.max_record_bytes:
                    break
                data += os.pread(fd, min(len(data), size - start - len(data)), start + len(data))
            if not ends:
                if len(data) <= self.max_record_bytes:
                    return  # an incomplete record: wait for the rest
                # a runaway record: skip past it to the next line start, counted, never re-read
                nl = data.find(b"\n", self.max_record_bytes)
                cut = nl + 1 if nl >= 0 else len(data)
                self._warn(t.path, start, f"record larger than {self.max_record_bytes} bytes skipped")
                yield self._advance(t, start, data[:cut], [], Counter({"record-too-large": 1}))
                continue
            yield self._chunk(t, data, ends, start)

    def _chunk(self, t: _Tracked, data: bytes, ends: list[int], start: int) -> Chunk:
        asm = t.assembler
        parse_into, path, max_bytes = self.format.parse_into, t.path, self.max_record_bytes
        events: list[QueryEvent] = []
        add = events.extend
        bad: Counter[str] = Counter()
        before = Counter(asm.skipped)
        prev = 0
        for end in ends:
            raw = data[prev:end]
            pos = start + prev
            prev = end
            if len(raw) > max_bytes:
                bad["record-too-large"] += 1
                self._warn(path, pos, f"record of {len(raw)} bytes skipped (max_record_bytes)")
                continue
            if not raw.isascii():
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad["invalid-utf8"] += 1
                    self._warn(path, pos, "record with invalid UTF-8 skipped")
                    continue
            try:
                found = parse_into(raw, asm, f"{path}:{pos}")
                if found:
                    add(found)
            except BadRecord as exc:
                bad[exc.reason] += 1
                log.debug("%s:%d: bad record: %s", path, pos, exc)
            except Exception:  # never let one record stop the daemon
                bad["internal-error"] += 1
                log.exception("%s:%d: could not process a record; skipped", path, pos)
        skipped = Counter(asm.skipped)
        skipped.subtract(before)
        chunk = self._advance(t, start, data[:ends[-1]], events, bad, len(ends))
        chunk.skipped = +skipped
        return chunk

    def _advance(self, t: _Tracked, start: int, consumed: bytes, events: list[QueryEvent],
                 bad: Counter[str], records: int = 0) -> Chunk:
        """Move ``t`` past ``consumed`` (read at ``start``) and make the chunk that commits it."""
        assert t.fd is not None
        c = t.cursor
        offset = start + len(consumed)
        head_len, head_hash = c.head_len, c.head_hash
        if head_len < HEAD_BYTES and offset > head_len:
            head_len = min(HEAD_BYTES, offset)
            head_hash = digest(os.pread(t.fd, head_len, 0))
        mark = digest(consumed[-MARK_BYTES:]) if len(consumed) >= MARK_BYTES else mark_of(t.fd, offset)
        merged_bad = Counter(c.bad)
        merged_bad.update(bad)
        last_ts = max((e.ts for e in events), default=None)
        t.cursor = replace(c, path=t.path, head_len=head_len, head_hash=head_hash, offset=offset,
                           state=t.assembler.state(), mark_hash=mark, records=c.records + records,
                           bad=dict(merged_bad),
                           last_ts=max(filter(None, [c.last_ts, last_ts.isoformat() if last_ts else None]),
                                       default=None))
        t.last_growth = time.monotonic()
        return Chunk(self.name, t.path, events, t.cursor, records, bad, Counter(), len(consumed))

    def flush_idle(self, idle_seconds: float) -> Iterator[Chunk]:
        """For files that have not grown for ``idle_seconds`` (wall clock): frame a last record
        that only the next record's start would end (stderr, slow logs), and emit events held back
        waiting for a record that never came (a statement's duration)."""
        now = time.monotonic()
        for t in list(self._files.values()):
            if now - t.last_growth < idle_seconds or t.fd is None:
                continue
            size = os.fstat(t.fd).st_size
            if self.format.frame_when_idle and t.cursor.offset < size:
                data = os.pread(t.fd, min(size - t.cursor.offset, self.max_record_bytes), t.cursor.offset)
                complete = data[:data.rfind(b"\n") + 1]  # never a half-written line
                ends = self.format.frame(complete, True) if complete else []
                if ends:
                    yield self._chunk(t, complete, ends, t.cursor.offset)
            if t.cursor.state:
                flushed = t.assembler.flush()
                if flushed or t.assembler.state() != t.cursor.state:
                    yield self._state_chunk(t, flushed)

    def _state_chunk(self, t: _Tracked, events: list[QueryEvent]) -> Chunk:
        t.cursor = replace(t.cursor, state=t.assembler.state())
        return Chunk(self.name, t.path, events, t.cursor)

    def _warn(self, path: str, offset: int, what: str) -> None:
        log.warning("%s:%d: %s", path, offset, what)

    def _warn_once(self, path: str, message: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            log.warning(message, path)
