"""Delivery through a real SMTP server (aiosmtpd, in-process): what arrives, and how failures read."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.smtp import SmtpServer
from usagewatch.errors import DeliveryError
from usagewatch.notify.email import SmtpChannel, SmtpSettings
from usagewatch.notify.render import render_email


def rendered(finding: dict[str, Any], outbox_id: int = 1) -> Any:
    return render_email(
        finding, outbox_id=outbox_id, sender="usagewatch@example.com", recipients=["dw-support@example.com"]
    )


def channel(server: SmtpServer, **kw: Any) -> SmtpChannel:
    return SmtpChannel(SmtpSettings(host=server.host, port=server.port, timeout=5, **kw))


def test_message_arrives_intact(smtp_server: SmtpServer, finding: dict[str, Any]) -> None:
    channel(smtp_server).send(rendered(finding, outbox_id=3))
    [got] = smtp_server.wait_for(1)
    assert got.rcpt_tos == ("dw-support@example.com",)
    assert got.mail_from == "usagewatch@example.com"
    msg = got.message
    assert msg["Subject"] == "[usagewatch] kim ran one query 136 times with different company_id values"
    assert msg["Message-ID"] == "<usagewatch.n3.f42@example.com>"
    body = msg.get_body(("plain",))
    assert body is not None and "136" in body.get_content()


def test_server_down_is_transient_and_recovery_delivers(
    smtp_server: SmtpServer, finding: dict[str, Any]
) -> None:
    ch = channel(smtp_server)
    smtp_server.stop()
    with pytest.raises(DeliveryError) as err:
        ch.send(rendered(finding))
    assert err.value.transient is True
    assert "connection refused" in str(err.value)
    smtp_server.start()  # same port
    ch.send(rendered(finding))
    assert len(smtp_server.wait_for(1)) == 1


def test_silent_server_times_out_transiently(
    smtp_blackhole: tuple[str, int], finding: dict[str, Any]
) -> None:
    host, port = smtp_blackhole
    ch = SmtpChannel(SmtpSettings(host=host, port=port, timeout=0.5))
    with pytest.raises(DeliveryError) as err:
        ch.send(rendered(finding))
    assert err.value.transient is True
    assert "did not answer within 0.5 s" in str(err.value)


def test_451_on_rcpt_is_transient(smtp_server: SmtpServer, finding: dict[str, Any]) -> None:
    smtp_server.fail_next("RCPT", "451 4.3.0 Try again later")
    with pytest.raises(DeliveryError) as err:
        channel(smtp_server).send(rendered(finding))
    assert err.value.transient is True
    assert "451" in str(err.value)
    channel(smtp_server).send(rendered(finding))  # the next attempt goes through
    assert len(smtp_server.wait_for(1)) == 1


def test_451_on_data_is_transient(smtp_server: SmtpServer, finding: dict[str, Any]) -> None:
    smtp_server.fail_next("DATA", "451 4.3.0 Queue full")
    with pytest.raises(DeliveryError) as err:
        channel(smtp_server).send(rendered(finding))
    assert err.value.transient is True
    assert smtp_server.messages == []


def test_recipient_refused_is_permanent(smtp_server: SmtpServer, finding: dict[str, Any]) -> None:
    smtp_server.fail_next("RCPT", "550 5.1.1 No such user")
    with pytest.raises(DeliveryError) as err:
        channel(smtp_server).send(rendered(finding))
    assert err.value.transient is False
    assert "dw-support@example.com" in str(err.value) and "550" in str(err.value)


def test_wrong_password_is_permanent_and_not_shown(
    smtp_auth_server: SmtpServer, finding: dict[str, Any]
) -> None:
    ch = channel(smtp_auth_server, username="usagewatch", password="wrong-Pa55word")
    with pytest.raises(DeliveryError) as err:
        ch.send(rendered(finding))
    assert err.value.transient is False
    assert "535" in str(err.value) and "usagewatch" in str(err.value)
    assert "wrong-Pa55word" not in str(err.value)
    assert smtp_auth_server.messages == []


def test_right_password_delivers(smtp_auth_server: SmtpServer, finding: dict[str, Any]) -> None:
    assert smtp_auth_server.password is not None
    ch = channel(smtp_auth_server, username="usagewatch", password=smtp_auth_server.password)
    ch.send(rendered(finding))
    [got] = smtp_auth_server.wait_for(1)
    assert got.login == "usagewatch"


def test_no_login_on_server_requiring_auth_is_permanent(
    smtp_auth_server: SmtpServer, finding: dict[str, Any]
) -> None:
    with pytest.raises(DeliveryError) as err:
        channel(smtp_auth_server).send(rendered(finding))
    assert err.value.transient is False
    assert "requires a login" in str(err.value)


def test_starttls_with_trusted_ca_delivers(smtp_tls_server: SmtpServer, finding: dict[str, Any]) -> None:
    channel(smtp_tls_server, tls="starttls", ca_file=smtp_tls_server.ca_file).send(rendered(finding))
    assert len(smtp_tls_server.wait_for(1)) == 1


def test_untrusted_certificate_is_permanent(smtp_tls_server: SmtpServer, finding: dict[str, Any]) -> None:
    with pytest.raises(DeliveryError) as err:
        channel(smtp_tls_server, tls="starttls").send(rendered(finding))
    assert err.value.transient is False
    assert "not trusted" in str(err.value)
    assert smtp_tls_server.messages == []


def test_verify_off_accepts_untrusted_certificate(
    smtp_tls_server: SmtpServer, finding: dict[str, Any]
) -> None:
    channel(smtp_tls_server, tls="starttls", verify=False).send(rendered(finding))
    assert len(smtp_tls_server.wait_for(1)) == 1


def test_implicit_tls_against_plain_server_is_permanent(
    smtp_server: SmtpServer, finding: dict[str, Any]
) -> None:
    with pytest.raises(DeliveryError) as err:
        channel(smtp_server, tls="ssl").send(rendered(finding))
    assert err.value.transient is False
    assert "notify.email.tls" in str(err.value)


def test_settings_never_show_the_password() -> None:
    settings = SmtpSettings(host="smtp.example.com", port=587, username="u", password="hunter2-secret")
    for shown in (repr(settings), str(settings), repr(SmtpChannel(settings))):
        assert "hunter2-secret" not in shown
        assert "password=<secret>" in shown
    assert "password=None" in repr(SmtpSettings(host="h"))


def test_settings_reject_unknown_tls_mode() -> None:
    with pytest.raises(ValueError, match="tls must be one of"):
        SmtpSettings(host="h", tls="maybe")  # type: ignore[arg-type]
