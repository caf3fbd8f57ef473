"""``usagewatch serve`` and ``usagewatch console add-user`` as real processes over an existing store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.helpers.configs import STORY_RULES
from tests.helpers.smtp import free_port
from tests.web.client import Client
from tests.web.conftest import SECRET
from usagewatch.store import Store

PASSWORD = "correct horse battery"


def uw(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "usagewatch", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def console_config(tmp_path: Path, auth: bool = True) -> Path:
    data = {"database": f"sqlite:///{tmp_path}/uw.db", "rules": STORY_RULES,
            "http": {"listen": "127.0.0.1:1", "public_url": "https://uw.example.com/"}}
    if auth:
        data["http"]["auth"] = {"mode": "login", "users_file": "console-users"}  # relative to the config
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_serve_shows_the_console_over_an_existing_store(tmp_path, store: Store):
    cfg = console_config(tmp_path)
    added = uw("console", "add-user", "ana", "--password-stdin", "--config", str(cfg), stdin=PASSWORD + "\n")
    assert (added.returncode, added.stdout) == (0, f"Added ana in {tmp_path / 'console-users'}.\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "usagewatch", "serve", "--config", str(cfg), "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "USAGEWATCH_LINK_SECRET": SECRET})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.communicate()[1]) from None
                time.sleep(0.2)
        browser = Client(port, origin=f"http://127.0.0.1:{port}")  # opened directly, not through public_url
        assert browser.get("/console/findings").status == 303
        assert browser.login("ana", PASSWORD).status == 303
        assert "kim ran one query 136 times" in browser.get("/console/findings/1").text
        token = browser.get("/console/findings/1").csrf()
        assert browser.post("/console/findings/1/dismissed", {"csrf": token, "note": "a test user"}).status == 303
        assert store.history(1)[-1] | {"at": ""} == {"at": "", "action": "dismissed", "actor": "ana", "note": "a test user"}
        rules = browser.get("/console/rules").text
        assert "same-query-different-ids" in rules and "same-query-repeated" in rules
        assert browser.get("/console/usage").status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"Serving the console at https://uw.example.com/console/ (listening on http://127.0.0.1:{port})" in err


def test_serve_needs_the_http_section(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/uw.db\n")
    done = uw("serve", "--config", str(cfg))
    assert done.returncode == 1
    assert done.stderr.endswith("Error: usagewatch serve needs the http: section (listen, public_url, auth); see docs/console.md.\n")


def test_add_user_refuses_short_passwords_and_a_config_without_login(tmp_path):
    cfg = console_config(tmp_path)
    short = uw("console", "add-user", "ana", "--password-stdin", "--config", str(cfg), stdin="short\n")
    assert short.returncode == 1 and "Error: the password is too short: use at least 10 characters." in short.stderr
    assert not (tmp_path / "console-users").exists()
    no_auth = uw("console", "add-user", "ana", "--password-stdin", "--config", str(console_config(tmp_path, auth=False)),
                 stdin=PASSWORD + "\n")
    assert no_auth.returncode == 1 and "console users need http.auth with mode: login and users_file" in no_auth.stderr


def test_a_new_password_replaces_the_old_one(tmp_path):
    cfg = console_config(tmp_path)
    uw("console", "add-user", "ana", "--password-stdin", "--config", str(cfg), stdin=PASSWORD + "\n")
    again = uw("console", "add-user", "ana", "--password-stdin", "--config", str(cfg), stdin="another long one\n")
    assert again.stdout.startswith("Changed the password of ana in ")
    lines = (tmp_path / "console-users").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ana:scrypt$")
