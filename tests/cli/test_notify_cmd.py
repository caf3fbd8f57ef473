"""``usagewatch notify test`` against real SMTP servers (aiosmtpd) and a real HTTP receiver;
``usagewatch notify preview`` of a stored finding."""

from __future__ import annotations

import json
from email import message_from_string, policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.helpers.configs import write_config
from tests.helpers.http import HttpReceiver
from tests.helpers.smtp import SmtpServer, free_port
from tests.store.test_store import update
from usagewatch.cli import cli
from usagewatch.store import Batch, Store

HOOK_TOKEN = "T0123ABCD/B0456EFGH/s3cr3tT0kenXYZ987654"

# fixtures of tests/helpers/http.py, until tests/conftest.py registers it as a plugin


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def email_cfg(server: SmtpServer | None = None, port: int | None = None, **kw: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port or (server.port if server else 25), "from": "usagewatch@example.com",
            "to": ["dw-support@example.com"], "timeout": "5s", **kw}


def config(tmp_path: Path, **notify: Any) -> str:
    return str(write_config(tmp_path, [], notify=notify))


def test_email_delivered(tmp_path: Path, smtp_server: SmtpServer) -> None:
    r = invoke("notify", "test", "--config", config(tmp_path, email=email_cfg(smtp_server)))
    assert r.exit_code == 0, r.output
    assert r.stdout == f"email to dw-support@example.com via 127.0.0.1:{smtp_server.port} (no TLS): delivered\n"
    [got] = smtp_server.wait_for(1)
    assert got.rcpt_tos == ("dw-support@example.com",)
    assert got.message["Subject"].startswith("[usagewatch] TEST ALERT: analyst.example ran one query 136 times")
    assert got.message["Message-ID"].endswith(".ftest@example.com>")


def test_auth_refused(tmp_path: Path, smtp_auth_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UW_TEST_SMTP_PASSWORD", "wrong")
    path = config(tmp_path, email=email_cfg(smtp_auth_server, username="usagewatch", password_env="UW_TEST_SMTP_PASSWORD"))
    r = invoke("notify", "test", "--config", path)
    assert r.exit_code == 1
    assert r.stdout == (f"email to dw-support@example.com via 127.0.0.1:{smtp_auth_server.port} (no TLS): "
                        "auth refused (535): check notify.email.username (usagewatch) and the password variable "
                        "(UW_TEST_SMTP_PASSWORD)\n")
    assert r.stderr == "Error: 1 of 1 channel did not deliver the test alert.\n"
    assert "wrong" not in r.output


def test_auth_right_password_delivers(tmp_path: Path, smtp_auth_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert smtp_auth_server.password is not None
    monkeypatch.setenv("UW_TEST_SMTP_PASSWORD", smtp_auth_server.password)
    path = config(tmp_path, email=email_cfg(smtp_auth_server, username="usagewatch", password_env="UW_TEST_SMTP_PASSWORD"))
    r = invoke("notify", "test", "--config", path)
    assert r.exit_code == 0, r.output
    assert smtp_auth_server.wait_for(1)[0].login == "usagewatch"


def test_login_required_but_not_configured(tmp_path: Path, smtp_auth_server: SmtpServer) -> None:
    r = invoke("notify", "test", "--config", config(tmp_path, email=email_cfg(smtp_auth_server)))
    assert r.exit_code == 1
    assert r.stdout.endswith("(no TLS): login required (530): set notify.email.username and notify.email.password_env\n")


def test_starttls_with_an_untrusted_ca(tmp_path: Path, smtp_tls_server: SmtpServer) -> None:
    r = invoke("notify", "test", "--config", config(tmp_path, email=email_cfg(smtp_tls_server, tls="starttls")))
    assert r.exit_code == 1
    line = r.stdout
    assert line.startswith(f"email to dw-support@example.com via 127.0.0.1:{smtp_tls_server.port} (STARTTLS): "
                           "certificate not trusted (")
    assert "install the issuing CA in the system's trust store" in line
    assert smtp_tls_server.messages == []


def test_starttls_without_verification_delivers(tmp_path: Path, smtp_tls_server: SmtpServer) -> None:
    path = config(tmp_path, email=email_cfg(smtp_tls_server, tls="starttls", verify=False))
    r = invoke("notify", "test", "--config", path)
    assert r.exit_code == 0, r.output
    assert r.stdout.endswith("(STARTTLS): delivered\n")
    assert len(smtp_tls_server.wait_for(1)) == 1


def test_starttls_with_an_internal_ca_delivers(tmp_path: Path, smtp_tls_server: SmtpServer) -> None:
    """The production setup: STARTTLS, certificate verified against the company's own CA."""
    path = config(tmp_path, email=email_cfg(smtp_tls_server, tls="starttls", ca_file=smtp_tls_server.ca_file))
    r = invoke("notify", "test", "--config", path)
    assert r.exit_code == 0, r.output
    assert r.stdout.endswith("(STARTTLS): delivered\n")
    assert len(smtp_tls_server.wait_for(1)) == 1


def test_starttls_and_auth_against_a_relay_that_requires_both(
        tmp_path: Path, smtp_tls_auth_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = smtp_tls_auth_server
    monkeypatch.setenv("UW_TEST_SMTP_PASSWORD", "wrong")
    email = email_cfg(srv, tls="starttls", ca_file=srv.ca_file, username="usagewatch",
                      password_env="UW_TEST_SMTP_PASSWORD")
    r = invoke("notify", "test", "--config", config(tmp_path, email=email))
    assert r.exit_code == 1 and "(STARTTLS): auth refused (535)" in r.stdout
    assert srv.password is not None
    monkeypatch.setenv("UW_TEST_SMTP_PASSWORD", srv.password)
    r = invoke("notify", "test", "--config", config(tmp_path, email=email))
    assert r.exit_code == 0, r.output
    assert srv.wait_for(1)[0].login == "usagewatch"


def test_relay_denied(tmp_path: Path, smtp_server: SmtpServer) -> None:
    smtp_server.fail_next("RCPT", "550 5.7.1 Relaying denied")
    r = invoke("notify", "test", "--config", config(tmp_path, email=email_cfg(smtp_server)))
    assert r.exit_code == 1
    assert "(no TLS): relay denied (dw-support@example.com: 550 5.7.1 Relaying denied): " in r.stdout


def test_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    r = invoke("notify", "test", "--config", config(tmp_path, email=email_cfg(port=port)))
    assert r.exit_code == 1
    assert r.stdout == (f"email to dw-support@example.com via 127.0.0.1:{port} (no TLS): "
                        "connection refused: is the server running and the port right?\n")


def test_a_route_tries_its_email_and_webhooks(tmp_path: Path, smtp_server: SmtpServer, http_receiver: HttpReceiver) -> None:
    path = config(
        tmp_path, email=email_cfg(smtp_server),
        webhooks=[{"name": "slack", "url": http_receiver.url(f"/services/{HOOK_TOKEN}"), "style": "slack"},
                  {"name": "tickets", "url": http_receiver.url("/tickets")}],
        routes=[{"name": "first", "email_to": ["first@example.com"]},
                {"name": "oncall", "email_to": ["oncall@example.com"], "webhooks": ["slack", "tickets"]}],
    )
    http_receiver.respond_next(404, body="no_service")  # slack's answer to a wrong URL
    r = invoke("notify", "test", "--config", path, "--route", "oncall")
    assert r.exit_code == 1
    base = f"http://127.0.0.1:{http_receiver.port}"
    assert r.stdout.splitlines() == [
        f"email to oncall@example.com via 127.0.0.1:{smtp_server.port} (no TLS): delivered",
        f"webhook slack ({base}/…): HTTP 404 (no_service): check the URL.",
        f"webhook tickets ({base}/…): delivered",
    ]
    assert r.stderr == "Error: 1 of 3 channels did not deliver the test alert.\n"
    assert HOOK_TOKEN.split("/")[-1] not in r.output
    slack, ticket = http_receiver.wait_for(2)
    assert set(slack.json) == {"text", "blocks"} and "TEST ALERT" in slack.json["text"]
    assert ticket.json["event"] == "opened" and ticket.json["id"] == "test"
    assert ticket.headers["Idempotency-Key"].endswith(".ftest@example.com>")

    # without --route: the first route
    r = invoke("notify", "test", "--config", path)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"email to first@example.com via 127.0.0.1:{smtp_server.port} (no TLS): delivered\n"


def test_one_channel(tmp_path: Path, smtp_server: SmtpServer, http_receiver: HttpReceiver) -> None:
    path = config(tmp_path, email=email_cfg(smtp_server),
                  webhooks=[{"name": "tickets", "url": http_receiver.url("/tickets")}])
    r = invoke("notify", "test", "--config", path, "--channel", "webhook:tickets")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"webhook tickets (http://127.0.0.1:{http_receiver.port}/…): delivered\n"
    assert smtp_server.messages == []
    r = invoke("notify", "test", "--config", path, "--channel", "webhook:ticket")
    assert r.exit_code == 1
    assert r.stderr == 'Error: there is no webhook "ticket" in notify.webhooks. Did you mean "tickets"?\n'
    r = invoke("notify", "test", "--config", path, "--route", "oncall")
    assert r.exit_code == 1
    assert r.stderr == 'Error: there is no route "oncall". There are no notify.routes in the config.\n'


def test_webhook_down_and_its_variable_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UW_TEST_HOOK", raising=False)
    port = free_port()
    path = config(tmp_path, webhooks=[{"name": "down", "url": f"http://127.0.0.1:{port}/x"},
                                      {"name": "unset", "url_env": "UW_TEST_HOOK"}],
                  routes=[{"name": "chat", "webhooks": ["down", "unset"]}])
    r = invoke("notify", "test", "--config", path)
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [
        f"webhook down (http://127.0.0.1:{port}/…): connection refused. Will retry.",
        "webhook unset: the environment variable UW_TEST_HOOK (webhook unset, url_env) is not set.",
    ]


def test_nothing_configured(tmp_path: Path) -> None:
    r = invoke("notify", "test", "--config", config(tmp_path))
    assert r.exit_code == 1
    assert r.stderr == "Error: nothing to test: configure notify.email or notify.routes with webhooks.\n"


# -- preview ----------------------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> str:
    path = config(tmp_path, email=email_cfg(port=2525), howto_base_url="https://wiki.example.com/howto/")
    store = Store(f"sqlite:///{tmp_path}/usagewatch.db", "https://wiki.example.com/howto/")
    store.commit(Batch([update(136)]))
    store.close()
    return path


def test_preview_text(stored: str) -> None:
    r = invoke("notify", "preview", "1", "--config", stored)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("kim ran one query 136 times\n\nWHAT WE SAW\n")
    assert "https://wiki.example.com/howto/batch.md" in r.stdout
    assert "See it with: usagewatch findings show 1" in r.stdout


def test_preview_html_and_eml(stored: str) -> None:
    html = invoke("notify", "preview", "1", "--format", "html", "--config", stored)
    assert html.exit_code == 0 and html.stdout.lstrip().lower().startswith("<!doctype html>")
    eml = invoke("notify", "preview", "1", "--format", "eml", "--config", stored)
    assert eml.exit_code == 0
    msg = message_from_string(eml.stdout, policy=policy.default)
    assert msg["Subject"] == "[usagewatch] kim ran one query 136 times"
    assert msg["To"] == "dw-support@example.com" and msg.is_multipart()


def test_preview_webhook_bodies(stored: str) -> None:
    j = json.loads(invoke("notify", "preview", "1", "--format", "json", "--config", stored).stdout)
    assert (j["event"], j["id"], j["count"], j["user"]) == ("opened", 1, 136, "kim")
    s = json.loads(invoke("notify", "preview", "1", "--format", "slack", "--config", stored).stdout)
    assert s["blocks"][0]["text"]["text"] == "kim ran one query 136 times"


def test_preview_redacts_as_configured(tmp_path: Path) -> None:
    path = config(tmp_path, redact_values=True)
    store = Store(f"sqlite:///{tmp_path}/usagewatch.db")
    store.commit(Batch([update(136)]))
    store.close()
    for fmt in ("text", "json", "slack"):
        r = invoke("notify", "preview", "1", "--format", fmt, "--config", path)
        assert r.exit_code == 0, r.output
        assert "SELECT 1" not in r.stdout, fmt  # the sample run is left out


def test_preview_unknown_finding(stored: str) -> None:
    r = invoke("notify", "preview", "9", "--config", stored)
    assert r.exit_code == 1
    assert r.stderr == "Error: there is no finding 9. `usagewatch findings list` shows them.\n"


def test_preview_shows_the_action_links_the_email_will_carry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store.test_store import update
    from usagewatch.store import Batch, Store

    monkeypatch.setenv("USAGEWATCH_LINK_SECRET", "preview secret")
    path = tmp_path / "c.yaml"
    path.write_text(f"database: sqlite:///{tmp_path}/uw.db\n"
                    "http: {public_url: 'https://uw.example.com'}\n")
    store = Store(f"sqlite:///{tmp_path}/uw.db")
    store.commit(Batch([update(136)]))
    store.close()
    r = invoke("notify", "preview", "--config", str(path), "1")
    assert r.exit_code == 0, r.output
    assert "Acknowledge:" in r.stdout and "https://uw.example.com/a/" in r.stdout
