"""Log lines: logfmt and JSON parsed back (quoting, newlines, extras, exceptions), passwords in
URLs masked, and ``usagewatch run`` honouring the config's ``log:`` (and ``--debug``)."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tests.helpers.configs import write_config
from usagewatch.cli import cli
from usagewatch.logs import JsonFormatter, LogfmtFormatter, TextFormatter, logfmt_value, parse_logfmt, setup_logging

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(msg: str, *args: object, level: int = logging.INFO, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("usagewatch.daemon", level, __file__, 1, msg, args, exc_info)
    rec.created = 1795669200.123456  # 2026-11-26T05:00:00.123Z
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_logfmt_line_is_exact_for_a_plain_record():
    line = LogfmtFormatter().format(record("following %d sources", 1, source="warehouse", files=3))
    assert line == ('ts=2026-11-26T05:00:00.123Z level=info logger=usagewatch.daemon msg="following 1 sources" '
                    "source=warehouse files=3")


def test_logfmt_quotes_and_escapes_and_parses_back():
    tricky = 'he said "hi" a=b back\\slash\nnext\tline'
    line = LogfmtFormatter().format(record("%s", tricky, level=logging.WARNING, exc=True, file="/var/log/a b.csv",
                                           empty="", none=None, flag=True))
    assert "\n" not in line
    got = parse_logfmt(line)
    assert TS.match(got["ts"])
    assert (got["level"], got["logger"], got["msg"]) == ("warning", "usagewatch.daemon", tricky)
    assert (got["file"], got["empty"], got["none"], got["flag"]) == ("/var/log/a b.csv", "", "null", "true")
    assert got["exc_info"].startswith("Traceback (most recent call last):\n")
    assert got["exc_info"].endswith("ValueError: boom\nsecond line")
    assert logfmt_value("plain") == "plain" and logfmt_value("a=b") == '"a=b"' and logfmt_value("\x1b") == '"\\u001b"'


def test_json_is_one_object_per_line_with_extras_and_exception():
    line = JsonFormatter().format(record("new finding %d: %s", 7, 'a "quoted"\ntitle', exc=True,
                                         rule="same-query-different-ids", when=record("x").created))
    assert "\n" not in line
    got = json.loads(line)
    assert got["ts"] == "2026-11-26T05:00:00.123Z"
    assert (got["level"], got["logger"], got["msg"]) == ("info", "usagewatch.daemon", 'new finding 7: a "quoted"\ntitle')
    assert got["rule"] == "same-query-different-ids" and got["when"] == 1795669200.123456
    assert "ValueError: boom\nsecond line" in got["exc_info"]


def test_passwords_in_urls_are_masked_in_every_format():
    rec = record("cannot connect to %s", "postgresql://uw:s3cret@db.example.com/dw", url="mysql://root:hunter2@h/x",
                 exc=False)
    for f in (LogfmtFormatter(), JsonFormatter(), TextFormatter()):
        out = f.format(rec)
        assert "s3cret" not in out and "hunter2" not in out, out
        assert "postgresql://uw:***@db.example.com/dw" in out


def test_text_keeps_the_human_format_with_extras_after_the_message():
    out = TextFormatter().format(record("following %d sources", 1, source="dw"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO usagewatch.daemon: following 1 sources source=dw", out)


def test_setup_logging_replaces_its_handler_and_sets_the_level():
    root = logging.getLogger()
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        setup_logging("logfmt", "info", stream=first)
        h = setup_logging("json", "debug", stream=second)
        assert sum(1 for x in root.handlers if getattr(x, "_usagewatch", False)) == 1
        logging.getLogger("usagewatch.test").debug("hello", extra={"source": "dw"})
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["source"] == "dw"
    finally:
        if h is not None:
            root.removeHandler(h)
        root.setLevel(level)
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("xml", "info", stream=first)


def test_the_store_hides_a_database_password_in_errors(tmp_path):
    cfg = write_config(tmp_path, [], database="postgresql+psycopg://uw:s3cret@127.0.0.1:1/dw")
    r = CliRunner().invoke(cli, ["status", "--config", str(cfg)])
    assert r.exit_code == 1
    assert "s3cret" not in r.output and "uw:***@127.0.0.1" in r.output


def daemon_output(tmp_path, log: dict, *args: str) -> str:
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path, [{"name": "dw", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}], log=log)
    out = tmp_path / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "usagewatch", *args, "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=out.open("wb"), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while "following 1 sources" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return out.read_text()


def test_run_logs_json_lines_when_the_config_says_so(tmp_path):
    lines = daemon_output(tmp_path, {"format": "json", "level": "info"}).splitlines()
    events = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert any(e["msg"] == "following 1 sources" and e["level"] == "info" and e["logger"] == "usagewatch.daemon"
               for e in events)
    assert any(e["msg"].startswith("stopped (signal received)") for e in events)


def test_debug_forces_debug_level_over_the_config(tmp_path):
    text = daemon_output(tmp_path, {"format": "logfmt", "level": "error"}, "--debug")
    events = [parse_logfmt(ln) for ln in text.splitlines() if ln.startswith("ts=")]
    assert any(e["msg"] == "following 1 sources" and e["level"] == "info" for e in events), text
