"""``replay -j N`` (``usagewatch.parallel``): N worker processes, and a store exactly as ``-j 1``
leaves it: findings, rule windows, cursors and usage aggregates; a replay cut in two (any ``-j``
on either side) equals one; a worker that dies or fails is an error with nothing half-saved; a
file that grows during the replay is still read exactly once; rules that count across users
are refused by name."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from tests.helpers.configs import write_config
from usagewatch import config
from usagewatch.cli import cli
from usagewatch.cli.replay import replay
from usagewatch.config import SAMPLE_LOG
from usagewatch.errors import UsagewatchError
from usagewatch.parallel import Partitioner, jobs_of, partition_fields
from usagewatch.pipeline import EvaluationRun
from usagewatch.rules import RuleEngine, load_rules
from usagewatch.rules import engine as engine_module
from usagewatch.rules.kinds.base import WindowedKind
from usagewatch.sources.files import FileSource
from usagewatch.store import Store

STOCK = [str(config.stock_rules_dir())]
RECORD_START = re.compile(rb'(?m)^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ UTC),"([^"]*)",')
CHUNK = 16 * 1024  # follow.batch_bytes: dozens of chunks (commits) per replay


def renamer(suffix: bytes) -> Callable[[re.Match[bytes]], bytes]:
    """A record start with the user renamed (records without a user, the server's own, kept)."""
    def rename(m: re.Match[bytes]) -> bytes:
        return m.group(1) + b',"' + m.group(2) + (suffix if m.group(2) else b"") + b'",'
    return rename


def multi_user_log(copies: int = 6) -> bytes:
    """The shipped sample (7 users, the 136-query story) ``copies`` times, two days apart, with
    the users renamed per copy (kim0, kim1, kim2, kim0, ...): 21 users, each coming back after
    its windows drained, so findings, new episodes and window deletions all happen."""
    sample = SAMPLE_LOG.read_bytes()
    first = RECORD_START.search(sample).group(1)[:10]  # type: ignore[union-attr]
    out = []
    for c in range(copies):
        day = (date.fromisoformat(first.decode()) + timedelta(days=2 * c)).isoformat().encode()
        out.append(RECORD_START.sub(renamer(str(c % 3).encode()), sample.replace(first, day)))
    return b"".join(out)


def setup(tmp_path: Path, data: bytes, rules: list[str] | None = None, chunk: int = CHUNK) -> config.Config:
    log = tmp_path / "pg.csv"
    log.write_bytes(data)
    path = write_config(tmp_path, [{"name": "pg", "format": "postgres-csvlog", "paths": [str(log)]}],
                        rules=rules or STOCK, follow={"batch_bytes": chunk})
    return config.load(path)


def restored_windows(cfg: config.Config) -> dict[tuple[str, str], Any]:
    """Every live window a restart restores from the store (rows + replayed log), whole."""
    store = Store(cfg.database)
    try:
        engine = RuleEngine(load_rules(cfg.rules, cfg.rule_overrides))
        engine.restore(store.windows(), store.window_log())
    finally:
        store.close()
    engine.sweep()
    return {(r.id, k): r.kind.window_of(k).to_state() for r in engine.rules  # type: ignore[attr-defined]
            if isinstance(r.kind, WindowedKind) for k in r.kind.state_keys()}


def store_state(cfg: config.Config) -> dict[str, Any]:
    """Everything a replay leaves in the store, without ids and wall-clock times."""
    engine = sa.create_engine(cfg.database)
    try:
        with engine.connect() as conn:
            def rows(sql: str) -> list[tuple[Any, ...]]:
                return sorted(tuple(r) for r in conn.execute(sa.text(sql)))

            return {
                "findings": rows("SELECT rule, user, fingerprint, count, distinct_values, first_seen, last_seen, "
                                 "severity, status FROM findings"),
                "windows": rows("SELECT rule, key, state FROM rule_windows"),
                "restored": restored_windows(cfg),
                "cursors": rows('SELECT source, "offset", state, mark_hash, head_hash, records, bad, last_ts '
                                "FROM checkpoints"),  # key and path: another file in each test
                "usage": rows("SELECT * FROM usage_queries"),
                "outbox": rows("SELECT count(*) FROM outbox"),
            }
    finally:
        engine.dispose()


def one_job(tmp_path_factory: pytest.TempPathFactory, data: bytes, rules: list[str] | None = None,
            chunk: int = CHUNK) -> tuple[dict, str]:
    cfg = setup(tmp_path_factory.mktemp("j1"), data, rules, chunk)
    summary = replay(cfg).summary()
    return store_state(cfg), summary


FREQUENT = 37  # SWEEP_EVERY for most tests here


@pytest.fixture
def frequent_sweeps(monkeypatch):
    """Sweep drained windows every 37 events (not 10,000), so the small logs here exercise the
    one clock the workers must share with ``-j 1``."""
    monkeypatch.setattr(engine_module, "SWEEP_EVERY", FREQUENT)


GROUP = 300  # REPLAY_GROUP_EVENTS here: commits of ~12 chunks, and several of them per replay


@pytest.fixture(scope="module", autouse=True)
def groups():
    """Replay commits per group of chunks (``REPLAY_GROUP_EVENTS``); make the groups small enough
    that every replay here has several, each of several chunks, as a big log has."""
    from usagewatch.cli import replay as replay_module

    default = replay_module.REPLAY_GROUP_EVENTS
    replay_module.REPLAY_GROUP_EVENTS = GROUP
    yield
    replay_module.REPLAY_GROUP_EVENTS = default


@pytest.fixture(scope="module")
def data() -> bytes:
    return multi_user_log()


@pytest.fixture(scope="module")
def references(tmp_path_factory, data, groups) -> dict[int, tuple[dict, str]]:
    """What ``-j 1`` leaves, with frequent sweeps and with the default (none in these logs)."""
    out = {}
    default = engine_module.SWEEP_EVERY
    for every in (FREQUENT, default):
        engine_module.SWEEP_EVERY = every
        try:
            out[every] = one_job(tmp_path_factory, data)
        finally:
            engine_module.SWEEP_EVERY = default
    return out


@pytest.fixture
def reference(references, frequent_sweeps):
    return references[FREQUENT]


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_leave_the_store_of_one_job(tmp_path, data, reference, jobs):
    expected, summary = reference
    cfg = setup(tmp_path, data)
    stats = replay(cfg, jobs=jobs)
    got = store_state(cfg)
    assert stats.summary() == summary
    assert len({f[1] for f in expected["findings"]}) >= 5 and "updated" in summary
    assert expected["windows"] and expected["usage"]
    for part in expected:
        assert got[part] == expected[part], part


def test_the_progress_bar_path_too(tmp_path, data, reference):
    expected, summary = reference
    cfg = setup(tmp_path, data)
    assert replay(cfg, progress=True, jobs=2).summary() == summary
    assert store_state(cfg) == expected


@pytest.mark.parametrize("first, second", [(2, 1), (1, 2), (2, 3)])
def test_a_replay_in_two_parts_equals_one(tmp_path, data, references, first, second):
    """Cursors and windows are saved as ``-j 1`` saves them, so appending the rest and replaying
    again, with any -j, continues exactly. (A replay ends with the file and so flushes statements
    still waiting for their duration: the cut is where the server restarted, as -j 1 needs; and
    a second process starts a new sweep clock, which even -j 1 is not immune to: default sweeps.)"""
    cut = len(data) // 2  # between two copies of the sample: the server restarted there
    assert data[cut - 1:cut + 5] == b"\n2026-"
    cfg = setup(tmp_path, data[:cut])
    one = replay(cfg, jobs=first)
    with open(tmp_path / "pg.csv", "ab") as f:
        f.write(data[cut:])
    two = replay(cfg, jobs=second)
    expected, summary = references[engine_module.SWEEP_EVERY]
    got = store_state(cfg)
    def rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # sums saved in two steps
        return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]

    assert got["findings"] == expected["findings"]
    assert rounded(got["usage"]) == rounded(expected["usage"])
    assert got["windows"] == expected["windows"]
    assert one.queries + two.queries == int(re.search(r"([\d,]+) queries", summary).group(1).replace(",", ""))  # type: ignore[union-attr]


def rule_file(tmp_path: Path, rule_id: str, group_by: list[str]) -> str:
    path = tmp_path / f"{rule_id}.yaml"
    path.write_text(yaml.safe_dump({
        "id": rule_id, "kind": "repeated_identical",
        "params": {"group_by": group_by, "window": "1d", "min_runs": 3},
        "title": "{{ count }} identical runs", "intervention": "-", "howto": "none.md"}))
    return str(path)


def test_partition_fields(tmp_path):
    def fields(*group_bys: list[str]) -> tuple[str, ...]:
        rules = load_rules([rule_file(tmp_path, f"r{i}", g) for i, g in enumerate(group_bys)])
        return partition_fields(rules, 2)

    assert partition_fields(load_rules(STOCK), 2) == ("user",)
    assert fields(["user", "database", "fingerprint"], ["database", "user"]) == ("user", "database")
    assert fields(["database", "fingerprint"], ["user", "database"]) == ("database",)
    with pytest.raises(UsagewatchError, match=r"rule 'r1' \(.*r1.yaml:\d+\) groups by fingerprint only: it counts "
                                              r"queries of several users together"):
        fields(["user", "fingerprint"], ["fingerprint"])
    with pytest.raises(UsagewatchError, match="rule 'r1' .* groups by database, fingerprint, the rules before it by user"):
        fields(["user", "fingerprint"], ["database", "fingerprint"])


def test_partitions_are_stable_and_spread():
    from datetime import datetime, timezone

    from usagewatch.model import QueryEvent

    def ev(user: str | None) -> QueryEvent:
        return QueryEvent("s", datetime(2026, 1, 1, tzinfo=timezone.utc), "SELECT 1", user=user)

    part = Partitioner(("user",), 3)
    assert [part(ev(u)) for u in ("kim", "ann", None, "")] == [part(ev(u)) for u in ("kim", "ann", "", None)]
    # crc32, not hash(): the same in every interpreter, whatever PYTHONHASHSEED
    assert {part(ev(f"user{i}")) for i in range(30)} == {0, 1, 2}
    out = subprocess.run([sys.executable, "-c", "from usagewatch.parallel import Partitioner\n"
                          "from usagewatch.model import QueryEvent\nfrom datetime import datetime, timezone\n"
                          "p = Partitioner(('user',), 3)\n"
                          "print([p(QueryEvent('s', datetime(2026, 1, 1, tzinfo=timezone.utc), '', user=f'user{i}')) "
                          "for i in range(30)])"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == str([part(ev(f"user{i}")) for i in range(30)])


def test_rules_sharing_only_database_are_spread_by_database(tmp_path, tmp_path_factory, data):
    rules = [rule_file(tmp_path, "by-db", ["database", "fingerprint"]),
             rule_file(tmp_path, "by-db-user", ["user", "database", "fingerprint"])]
    expected, summary = one_job(tmp_path_factory, data, rules)
    cfg = setup(tmp_path, data, rules)
    assert replay(cfg, jobs=2).summary() == summary
    assert store_state(cfg) == expected and expected["findings"]


def test_a_rule_across_users_is_refused_by_name(tmp_path, data):
    rules = [*STOCK, rule_file(tmp_path, "everyone", ["fingerprint"])]
    cfg = setup(tmp_path, data, rules)
    r = CliRunner().invoke(cli, ["replay", "--config", str(tmp_path / "config.yaml"), "-j", "2"])
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: replay -j 2 gives each worker the queries of some users, and rule 'everyone' (")
    assert "Add user to its group_by, or replay with -j 1.\n" in r.stderr
    assert store_state(cfg)["cursors"] == []  # refused before reading anything
    r = CliRunner().invoke(cli, ["replay", "--config", str(tmp_path / "config.yaml"), "-j", "1"])
    assert r.exit_code == 0, r.output


def test_jobs_option(tmp_path, data, reference):
    assert jobs_of(0) == len(os.sched_getaffinity(0)) and jobs_of(3) == 3
    cfg = setup(tmp_path, data)
    r = CliRunner().invoke(cli, ["replay", "--config", str(tmp_path / "config.yaml"), "-j", "5000"])
    assert r.exit_code == 1, r.output
    assert "Error: -j 5000: at most 1,024 jobs; more workers than CPUs do not help (-j 0 = one per CPU)." in r.output
    r = CliRunner().invoke(cli, ["replay", "--config", str(tmp_path / "config.yaml"), "--jobs", "2"])
    assert r.exit_code == 0, r.output
    assert r.stdout == f"Replayed {reference[1]}.\n"
    assert store_state(cfg) == reference[0]
    r = CliRunner().invoke(cli, ["replay", "--config", str(tmp_path / "config.yaml"), "-j", "-1"])
    assert r.exit_code == 2 and "-1 is not in the range x>=0" in r.stderr


def sabotage(monkeypatch, tmp_path: Path, at_call: int, how: str) -> None:
    """Make ONE worker (the first to get there) die or raise as it finishes its ``at_call``-th
    evaluation (one per group of chunks)."""
    parent = os.getpid()
    real = EvaluationRun.finish
    calls = [0]

    def finish(self):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            calls[0] += 1
            if calls[0] == at_call:
                try:
                    os.close(os.open(tmp_path / "sabotaged", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    if how == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise ValueError("boom")
        return real(self)

    monkeypatch.setattr(EvaluationRun, "finish", finish)


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_worker_that_dies_fails_the_replay_and_a_rerun_completes_it(tmp_path, data, references, monkeypatch, how):
    """(Default sweeps: a rerun is a new process with a new sweep clock, as after any crash.)"""
    cfg = setup(tmp_path, data)
    sabotage(monkeypatch, tmp_path, at_call=3, how=how)
    with pytest.raises(UsagewatchError) as exc:
        replay(cfg, jobs=2)
    if how == "kill":
        assert re.fullmatch(r"replay worker [12] of 2 was killed by SIGKILL; the store holds every chunk saved before "
                            r"\(nothing half-saved\): run the replay again to continue from there\.", str(exc.value))
    else:
        assert re.fullmatch(r"replay worker [12] of 2 failed: ValueError: boom; the store holds every chunk saved "
                            r"before \(nothing half-saved\)\.", str(exc.value))
    half = store_state(cfg)
    (offset,) = [c[1] for c in half["cursors"]]
    assert 0 < offset < len(data)  # some chunks saved, not all
    replay(cfg, jobs=2)  # the sabotage is spent
    got = store_state(cfg)
    for part in got:
        assert got[part] == references[engine_module.SWEEP_EVERY][0][part], part


def test_a_file_growing_during_the_replay_is_read_once(tmp_path, tmp_path_factory, monkeypatch):
    """Records appended after the replay read its first chunk (a live log): read once, by the
    parent alone, and the store is what ``-j 1`` leaves after reading the whole file."""
    data = multi_user_log(2)
    cut = data.rfind(b"\n2026-", 0, len(data) // 2) + 1
    data, tail = data[:cut], data[cut:]
    expected, _ = one_job(tmp_path_factory, data + tail)
    cfg = setup(tmp_path, data)
    real = FileSource.read
    log = tmp_path / "pg.csv"

    def read(self, path, at_eof=False):  # type: ignore[no-untyped-def]
        for n, chunk in enumerate(real(self, path, at_eof)):
            if n == 0:
                with open(log, "ab") as f:
                    f.write(tail)
            yield chunk

    monkeypatch.setattr(FileSource, "read", read)
    stats = replay(cfg, jobs=2)
    assert store_state(cfg) == expected
    assert stats.records == len(re.findall(rb"(?m)^\d{4}-", data + tail))


def start_replay_with_workers(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """``usagewatch replay -j 2`` on a log long enough to be stopped midway, in its own session,
    once both workers run: the process and the workers' pids."""
    # SIGINT as a terminal leaves it: a test run started in the background (``.ci/run &``) inherits
    # SIGINT ignored, and so would the replay, which then finished and exited 0 despite the Ctrl-C
    proc = subprocess.Popen([sys.executable, "-m", "usagewatch", "replay", "--config", str(tmp_path / "config.yaml"),
                             "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children: list[int] = []
    deadline = time.monotonic() + 30
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        except FileNotFoundError:
            break
    if len(children) < 2:
        proc.kill()
        pytest.fail(f"the workers did not start: {proc.communicate()}")
    time.sleep(0.3)
    return proc, children


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"worker {pid} still running")


def test_ctrl_c_stops_the_parent_and_every_worker(tmp_path):
    cfg = setup(tmp_path, multi_user_log(30))
    proc, children = start_replay_with_workers(tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert_gone(children)
    offsets = [c[1] for c in store_state(cfg)["cursors"]]
    assert offsets == [] or offsets[0] < (tmp_path / "pg.csv").stat().st_size


def test_workers_end_when_the_parent_is_killed(tmp_path):
    """A parent killed outright (OOM killer, ``kill -9``) leaves no worker behind waiting for
    work: each worker's inbox has no other writer, so it ends."""
    setup(tmp_path, multi_user_log(30))
    proc, children = start_replay_with_workers(tmp_path)
    proc.kill()
    proc.communicate(timeout=20)
    assert_gone(children)
