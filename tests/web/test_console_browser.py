"""The console in a real headless Chromium (Debian's package, driven by Playwright) against a real
``usagewatch run`` daemon whose SQLite store holds the findings of the sample PostgreSQL log.

A person's path through it: refused before logging in, log in through the form, filter the
findings, open one, acknowledge it and mark it coached with notes, read the rules and usage
pages, log out and be refused again. Each page is saved as a PNG in ``$USAGEWATCH_ARTIFACTS/screenshots``
(default ``<repo>/test-artifacts/screenshots``) for people to look at; they are not committed.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.configs import write_config
from tests.helpers.servers import need_server
from tests.helpers.smtp import free_port
from tests.test_daemon import start_daemon, stop
from usagewatch.config import SAMPLE_LOG
from usagewatch.store import Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SECRET = "a browser-test signing key, long enough"
USER, PASSWORD = "ana", "correct horse battery"
REPO = Path(__file__).resolve().parents[2]


def artifacts() -> Path:
    root = Path(os.environ["USAGEWATCH_ARTIFACTS"]) if os.environ.get("USAGEWATCH_ARTIFACTS") else REPO / "test-artifacts"
    out = root / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def wait_until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except Exception:  # not up yet
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running daemon with the console on; yields (its base URL, the store's database path)."""
    if not os.path.exists(CHROMIUM):
        need_server(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need_server("the playwright package is not installed (pip install -e '.[test]')")
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    users = tmp_path / "console-users"
    base = f"http://127.0.0.1:{port}"
    cfg = write_config(tmp_path, [{"name": "warehouse", "format": "postgres-csvlog", "paths": [f"{logs}/*.csv"]}],
                       http={"listen": f"127.0.0.1:{port}", "public_url": base,
                             "auth": {"mode": "login", "users_file": str(users)}},
                       follow={"rescan_interval": "300ms", "idle_flush": "300ms"})
    env = {**os.environ, "USAGEWATCH_LINK_SECRET": SECRET}
    added = subprocess.run([sys.executable, "-m", "usagewatch", "console", "add-user", USER, "--password-stdin",
                            "--config", str(cfg)], input=PASSWORD + "\n", capture_output=True, text=True, env=env,
                           timeout=60)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"Added {USER} in {users}."
    (logs / "postgresql.csv").write_bytes(SAMPLE_LOG.read_bytes())
    daemon_log = tmp_path / "daemon.log"
    proc = start_daemon(cfg, daemon_log, env={"USAGEWATCH_LINK_SECRET": SECRET})
    database = tmp_path / "usagewatch.db"
    try:
        wait_until(lambda: urllib.request.urlopen(base + "/healthz", timeout=2).status == 200, 30, "the listener")

        def three_findings() -> bool:
            store = Store(f"sqlite:///{database}")
            try:
                return len(store.findings()) == 3
            finally:
                store.close()

        wait_until(three_findings, 30, "the sample log's three findings")
        yield base, database
        assert stop(proc, daemon_log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_support_person_works_a_finding_in_the_browser(daemon):
    from playwright.sync_api import expect, sync_playwright

    base, database = daemon
    shots = artifacts()
    taken: list[Path] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            page.set_default_timeout(15000)

            def shot(name: str) -> None:
                path = shots / f"console-{len(taken) + 1:02d}-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                taken.append(path)

            # not logged in: every page leads to the login form
            page.goto(base + "/console/findings")
            expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2Ffindings")
            page.fill("#user", USER)
            page.fill("#password", "not the password")
            page.click("button:has-text('Log in')")
            expect(page.locator(".problem")).to_have_text("Wrong user name or password.")
            page.fill("#user", USER)
            page.fill("#password", PASSWORD)
            shot("login")
            page.click("button:has-text('Log in')")

            # the findings list, then filtered to one user
            expect(page).to_have_url(base + "/console/findings")
            expect(page.locator("h1")).to_have_text("Findings")
            expect(page.locator("table.list tr")).to_have_count(4)  # header + 3 findings
            shot("findings")
            page.select_option("select[name=user]", "kim")
            page.click("button:has-text('Filter')")
            expect(page).to_have_url(f"{base}/console/findings?status=&rule=&user=kim&severity=")
            expect(page.locator("table.list tr")).to_have_count(2)
            shot("findings-kim")

            # one finding: evidence, then Acknowledge and Mark as coached, each with a note
            page.click("table.list a")
            expect(page.locator("h1")).to_have_text("Finding 1")
            expect(page.locator("main")).to_contain_text("same-query-different-ids")
            expect(page.locator("main")).to_contain_text("company_id")
            page.fill("#note", "asked kim about it")
            page.click("button:has-text('Acknowledge')")
            expect(page.locator("p.done")).to_have_text("Finding 1 acknowledged.")
            page.fill("#note", "showed kim the IN list")
            page.click("button:has-text('Mark as coached')")
            expect(page.locator("p.done")).to_have_text("Finding 1 marked as coached.")
            expect(page.locator("main")).to_contain_text("showed kim the IN list")
            expect(page.locator("main")).to_contain_text("in the 7 days before coaching")
            shot("finding-coached")

            store = Store(f"sqlite:///{database}")
            try:
                acted = [(e["action"], e["actor"], e["note"]) for e in store.history(1) if e["action"] != "opened"]
                assert acted == [("acknowledged", USER, "asked kim about it"), ("coached", USER, "showed kim the IN list")]
                assert store.finding(1)["status"] == "coached"
            finally:
                store.close()

            # the rules in force and the usage report
            page.click("header a:has-text('Rules')")
            expect(page.locator("h1")).to_have_text("Rules in force")
            expect(page.locator("main")).to_contain_text("same-query-repeated")
            shot("rules")
            page.click("header a:has-text('Usage')")
            expect(page).to_have_title("usagewatch: Usage")
            expect(page.locator("main")).to_contain_text("Warehouse usage")
            page.fill("input[name=since]", "7d")
            page.click("button:has-text('Show')")
            expect(page).to_have_url(base + "/console/usage?since=7d")
            shot("usage")

            # log out: the pages are refused again
            page.click("header button:has-text('Log out')")
            expect(page.locator("p.done")).to_have_text("You are logged out.")
            shot("logged-out")
            page.goto(base + "/console/findings/1")
            expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2Ffindings%2F1")
            expect(page.locator("main")).not_to_contain_text("kim")
        finally:
            browser.close()

    for path in taken:
        width, height = png_size(path)
        assert width >= 1200 and height >= 400 and path.stat().st_size > 8000, f"{path} looks empty"
    assert len(taken) == 7
