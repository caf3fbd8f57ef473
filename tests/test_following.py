"""Following files through restarts and rotations: every id written reaches the store exactly once.

Cases from docs (shared tailing matrix): each test drives the real pipeline (csvlog format,
normalizer, rules, SQLite store) over files that ``LogWriter`` writes and rotates, stops and
restarts it (a new Pipeline over the same store = a new process), and checks with the count-ids
rule that the number of runs and of distinct ids both equal the ids written.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from tests.helpers.configs import write_config
from tests.helpers.logwriter import RULES, LogWriter, record, records
from usagewatch import config
from usagewatch.pipeline import Pipeline
from usagewatch.store import Store


class Harness:
    """One usagewatch 'process' at a time over a config and its store."""

    def __init__(self, tmp_path: Path, patterns: list[str], exclude: list[str] | None = None, **follow: str):
        src = {"name": "w", "format": "postgres-csvlog", "paths": patterns, "exclude": exclude or []}
        self.cfg = config.load(write_config(tmp_path, [src], rules=[str(RULES)], follow=follow))
        self.start()

    def start(self) -> None:
        self.store = Store(self.cfg.database)
        self.pipeline = Pipeline(self.cfg, self.store)

    def stop(self) -> None:
        for s in self.pipeline.sources:
            s.close()
        self.store.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def poll(self) -> None:
        self.pipeline.poll(at_eof=False)

    def counted(self) -> tuple[int, int]:
        found = [(f["count"], f["distinct_values"]) for f in self.store.findings(rule="count-ids")]
        assert len(found) <= 1
        return found[0] if found else (0, 0)


@pytest.fixture
def logs(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    return d


def test_stop_append_start_resumes_at_the_saved_offset(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(1000)
    h.poll()
    h.stop()
    w.emit(1000)
    h.start()
    h.poll()
    assert h.counted() == (2000, 2000)


def test_half_written_record_across_a_restart_is_taken_once_and_whole(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(10)
    half = record(10)
    w.write(half[:37])
    h.poll()
    h.restart()
    w.write(half[37:])
    w.next_id = 11
    w.emit(5)
    h.poll()
    assert h.counted() == (16, 16)


def test_rename_rotation_while_running_reads_the_old_tail_then_the_new_file(tmp_path, logs):
    w = LogWriter(logs / "pg.csv", chunk=333)
    h = Harness(tmp_path, [f"{logs}/*.csv"])  # pg.csv.1 is NOT matched: its tail comes from the held descriptor
    w.emit(300)
    h.poll()
    w.rename_rotate(logs / "pg.csv.1")
    w.emit(50, path=logs / "pg.csv.1")  # the server still writes to the old file for a while
    h.poll()
    w.emit(200)  # then switches to the new one
    h.poll()
    assert h.counted() == (550, 550)


def test_rename_while_stopped_resumes_the_old_file_by_identity(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/pg.csv*"], exclude=["*.gz"])
    w.emit(100)
    h.poll()
    h.stop()
    w.emit(40)
    w.rename_rotate(logs / "pg.csv.1")
    w.emit(60)
    h.start()
    h.poll()
    assert h.counted() == (200, 200)


def test_two_rotations_while_stopped_every_file_once(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/pg.csv*"])
    w.emit(100)
    h.poll()
    h.stop()
    w.emit(10)
    w.rename_rotate(logs / "pg.csv.1")
    w.emit(20)
    os.rename(logs / "pg.csv.1", logs / "pg.csv.2")
    os.rename(logs / "pg.csv", logs / "pg.csv.1")
    (logs / "pg.csv").touch()
    w.emit(30)
    h.start()
    h.poll()
    assert h.counted() == (160, 160)


def test_copytruncate_while_running_does_not_reread_the_copy(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/pg.csv*"])
    w.emit(200)
    h.poll()
    w.copytruncate(logs / "pg.csv.1")
    w.emit(100)
    h.poll()
    h.poll()
    assert h.counted() == (300, 300)


def test_copytruncate_while_stopped(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/pg.csv*"])
    w.emit(200)
    h.poll()
    h.stop()
    w.emit(20)  # written after our last read, before the copy: in the copy's unread tail
    w.copytruncate(logs / "pg.csv.1")
    w.emit(100)
    h.start()
    h.poll()
    assert h.counted() == (320, 320)


def test_truncated_and_regrown_past_the_old_offset_while_stopped_is_read_from_zero(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(100)
    h.poll()
    h.stop()
    with open(w.path, "r+b") as f:
        f.truncate(0)
    w.emit(300)  # other ids, and more bytes than before: only the content check can tell
    h.start()
    h.poll()
    assert h.counted() == (400, 400)


def test_log_truncate_on_rotation_same_name_reused(tmp_path, logs):
    w = LogWriter(logs / "postgresql-Mon.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(150)
    h.poll()
    with open(w.path, "wb") as f:  # a week later PostgreSQL truncates and reuses the name
        f.write(records(150, 400))
    w.next_id = 400
    h.poll()
    assert h.counted() == (400, 400)


def test_nul_run_from_copytruncate_without_o_append_is_skipped(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(50)
    h.poll()
    size = w.path.stat().st_size
    with open(w.path, "r+b") as f:
        f.truncate(0)
    with open(w.path, "r+b") as f:  # the writer continues at its old offset: a hole of NULs
        f.seek(size)
        f.write(records(50, 80))
    w.next_id = 80
    h.poll()
    assert h.counted() == (80, 80)
    assert sum(h.pipeline.stats.bad_records.values()) <= 1


def test_inode_reuse_is_a_new_file(tmp_path, logs):
    w = LogWriter(logs / "a.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(100)
    h.poll()
    h.stop()
    os.remove(w.path)
    other = LogWriter(logs / "b.csv")
    other.next_id = 100
    other.emit(120)  # most likely on the inode a.csv had
    h.start()
    h.poll()
    assert h.counted() == (220, 220)


def test_small_and_empty_and_lookalike_files_are_distinct(tmp_path, logs):
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    (logs / "empty.csv").touch()
    a, b = LogWriter(logs / "a.csv"), LogWriter(logs / "b.csv")
    a.emit(1)
    b.next_id = 1
    b.emit(1)
    h.poll()
    a.next_id = 2
    a.emit(3)
    b.next_id = 5
    b.emit(3)
    (logs / "empty.csv").write_bytes(records(8, 10))
    h.poll()
    assert h.counted() == (10, 10)


def test_compressed_and_excluded_files_are_never_read(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/pg.csv*"], exclude=[f"{logs}/*.old"])
    w.emit(100)
    h.poll()
    w.rename_rotate(logs / "pg.csv.1")
    h.poll()
    with gzip.open(logs / "pg.csv.2.gz", "wb") as f:  # delaycompress: an already-read copy, compressed
        f.write((logs / "pg.csv.1").read_bytes())
    (logs / "pg.csv.old").write_bytes(records(1000, 1100))
    w.emit(10)
    h.restart()
    h.poll()
    assert h.counted() == (110, 110)


def test_files_created_at_runtime_and_symlinks_count_once(tmp_path, logs):
    h = Harness(tmp_path, [f"{logs}/*.csv", f"{tmp_path}/links/*.csv"])
    h.poll()
    w = LogWriter(logs / "new.csv")
    w.emit(70)
    (tmp_path / "links").mkdir()
    os.symlink(logs / "new.csv", tmp_path / "links" / "alias.csv")
    h.poll()
    assert h.counted() == (70, 70)


def test_invalid_utf8_and_oversized_records_are_counted_and_skipped(tmp_path, logs, caplog):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(10)
    w.write(record(10).replace(b"orders", b"ord\xff\xfers"))
    w.write(record(11, sql="SELECT '" + "x" * (2 * 1024 * 1024) + "'"))
    w.next_id = 12
    w.emit(10)
    h.poll()
    assert h.counted() == (20, 20)
    assert h.pipeline.stats.bad_records == {"invalid-utf8": 1, "record-too-large": 1}
    assert any("pg.csv:" in r.message and "invalid UTF-8" in r.message for r in caplog.records)
    h.restart()
    h.poll()  # never re-read after a restart
    assert h.counted() == (20, 20)


def test_a_corrupt_store_is_refused_not_silently_replaced(tmp_path, logs):
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    LogWriter(logs / "pg.csv").emit(10)
    h.poll()
    h.stop()
    db = Path(h.cfg.database.removeprefix("sqlite:///"))
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    from usagewatch.errors import StoreError

    with pytest.raises(StoreError, match="cannot open the database"):
        Store(h.cfg.database)


def test_touch_without_new_bytes_reads_nothing(tmp_path, logs):
    w = LogWriter(logs / "pg.csv")
    h = Harness(tmp_path, [f"{logs}/*.csv"])
    w.emit(30)
    h.poll()
    os.utime(w.path, (1, 1))  # mtime changes, size does not
    h.restart()
    h.poll()
    assert h.counted() == (30, 30)
    assert h.pipeline.stats.records == 0


def test_many_files_keep_few_descriptors_open(tmp_path, logs):
    """Idle files are closed (and reopened by path when they grow): thousands of logs do not
    exhaust the descriptor limit."""
    h = Harness(tmp_path, [f"{logs}/*.csv"], close_idle="0s")
    writers = [LogWriter(logs / f"f{i:03d}.csv") for i in range(300)]
    next_id = 0
    for w in writers:
        w.next_id = next_id
        w.emit(2)
        next_id += 2
    before = len(os.listdir("/proc/self/fd"))
    h.poll()
    assert len(os.listdir("/proc/self/fd")) - before < 20
    for w in writers[::7]:
        w.next_id = next_id
        w.emit(1)
        next_id += 1
    h.poll()
    assert h.counted() == (next_id, next_id)
