"""SIGKILL at random points while a writer appends and rotates: every id reaches the store exactly
once. The daemon is a real process (``usagewatch run``); the assertion is the count-ids finding
(count == distinct == ids written), read from the store."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers.configs import write_config
from tests.helpers.logwriter import RULES, LogWriter
from usagewatch import config
from usagewatch.store import Store

KILLS = int(os.environ.get("USAGEWATCH_CRASH_KILLS", "20"))  # raise it by hand for a longer soak


def counted(cfg) -> tuple[int, int]:
    store = Store(cfg.database)
    try:
        rows = [(f["count"], f["distinct_values"]) for f in store.findings(rule="count-ids")]
    finally:
        store.close()
    return rows[0] if rows else (0, 0)


def daemon(cfg_path: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "usagewatch", "run", "--config", str(cfg_path)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=cfg_path.parent)


def test_sigkill_during_writes_and_rotations_loses_and_doubles_nothing(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg_path = write_config(
        tmp_path, [{"name": "w", "format": "postgres-csvlog", "paths": [f"{logs}/pg.csv*"], "exclude": ["*.gz"]}],
        rules=[str(RULES)], follow={"rescan_interval": "200ms", "idle_flush": "200ms"})
    cfg = config.load(cfg_path)
    writer = LogWriter(logs / "pg.csv", chunk=997)  # records cut at arbitrary bytes
    done = threading.Event()

    def write() -> None:
        rng = random.Random(7)
        rotations = 0
        while not done.is_set() and writer.next_id < 8000:  # the rule keeps up to 10,000 distinct values
            writer.emit(rng.randint(5, 40))
            if writer.next_id // 1500 > rotations:
                rotations += 1
                writer.rename_rotate(logs / f"pg.csv.{rotations}")
            time.sleep(0.03)

    thread = threading.Thread(target=write)
    thread.start()
    rng = random.Random(11)
    out = tmp_path / "daemon.log"
    try:
        for _ in range(KILLS):
            proc = daemon(cfg_path, out)
            time.sleep(rng.uniform(0.2, 1.5))
            proc.kill()
            proc.wait()
    finally:
        done.set()
        thread.join()
    written = writer.next_id
    before = out.stat().st_size
    proc = daemon(cfg_path, out)
    try:
        deadline = time.monotonic() + 60
        while (counted(cfg)[0] < written or b"following" not in out.read_bytes()[before:]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # anything more would be a double count
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert counted(cfg) == (written, written), out.read_text()[-3000:]
