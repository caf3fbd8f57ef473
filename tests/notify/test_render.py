"""What the support team receives for a finding: subject, both parts, safe headers, safe HTML."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from usagewatch.notify.render import render_email

SENDER = "usagewatch@example.com"
TO = ["dw-support@example.com"]
BASE = "https://wiki.example.com/dw/"


def render(finding: dict[str, Any], **kw: Any) -> EmailMessage:
    args: dict[str, Any] = {"outbox_id": 7, "sender": SENDER, "recipients": TO}
    args.update(kw)
    return render_email(finding, **args)


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def everything(msg: EmailMessage) -> str:
    """Headers plus both decoded parts: what any reader of the email could see."""
    text, html = parts(msg)
    return "\n".join(f"{k}: {v}" for k, v in msg.items()) + "\n" + text + "\n" + html


def test_subject_is_prefixed_title(finding: dict[str, Any]) -> None:
    msg = render(finding)
    assert msg["Subject"] == "[usagewatch] kim ran one query 136 times with different company_id values"
    assert msg["From"] == SENDER
    assert msg["To"] == "dw-support@example.com"
    assert msg["Date"]


def test_long_title_is_one_shortened_subject_line(finding: dict[str, Any]) -> None:
    finding["title"] = "kim ran one query " + "very " * 100 + "often"
    wire = render(finding).as_bytes()
    reparsed = message_from_bytes(wire, policy=policy.default)
    assert reparsed["Subject"].startswith("[usagewatch] kim ran one query very")
    assert reparsed["Subject"].endswith("...") and len(reparsed["Subject"]) == 200


def test_has_text_and_html_alternatives(finding: dict[str, Any]) -> None:
    msg = render(finding)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_both_parts_say_what_we_saw_and_what_to_do(finding: dict[str, Any]) -> None:
    text, html = parts(render(finding, howto_base_url=BASE))
    link = "https://wiki.example.com/dw/howto/batch-ids-into-one-query.html"
    for body in (text, html):
        assert "kim" in body and "warehouse" in body
        assert "136" in body
        assert "company_id" in body
        assert "90417" in body  # a sample value
        assert "2024-05-02 09:14:00 UTC" in body and "2024-05-02 14:26:03 UTC" in body
        assert "WHERE company_id = ?" in body
        assert "GROUP BY company_id" in body  # the suggested rewrite
        assert link in body
        assert "usagewatch findings show 42" in body
    assert f'<a href="{link}">' in html


def test_only_a_few_sample_values_are_listed(finding: dict[str, Any]) -> None:
    text, _ = parts(render(finding))
    assert "and 2 more" in text
    assert "60001" not in text


def test_relative_howto_without_base_is_shown_but_not_linked(finding: dict[str, Any]) -> None:
    text, html = parts(render(finding))
    assert "howto/batch-ids-into-one-query.html" in text
    assert "<a href" not in html


def test_absolute_howto_is_kept_as_is(finding: dict[str, Any]) -> None:
    finding["howto"] = "https://docs.example.org/batching"
    _, html = parts(render(finding, howto_base_url=BASE))
    assert '<a href="https://docs.example.org/batching">' in html


def test_javascript_howto_is_never_clickable(finding: dict[str, Any]) -> None:
    finding["howto"] = "javascript:alert(1)"
    _, html = parts(render(finding, howto_base_url=BASE))
    assert "<a href" not in html


def test_message_id_is_stable_per_outbox_row(finding: dict[str, Any]) -> None:
    first = render(finding, now=datetime(2024, 5, 2, 15, tzinfo=timezone.utc))
    again = render(finding, now=datetime(2024, 5, 3, 8, tzinfo=timezone.utc))
    other = render(finding, outbox_id=8)
    assert first["Message-ID"] == again["Message-ID"] == "<usagewatch.n7.f42@example.com>"
    assert other["Message-ID"] != first["Message-ID"]


def test_message_id_uses_domain_of_sender_with_display_name(finding: dict[str, Any]) -> None:
    msg = render(finding, sender="Usage Watch <alerts@dw.example.net>")
    assert msg["Message-ID"] == "<usagewatch.n7.f42@dw.example.net>"


def test_crlf_in_user_name_cannot_inject_a_header(finding: dict[str, Any]) -> None:
    finding["user"] = "kim\r\nBcc: attacker@evil.example"
    finding["title"] = "kim\r\nBcc: attacker@evil.example ran one query 136 times"
    finding["rule"] = "same-query\nX-Evil: 1"
    msg = render(finding, recipients=["dw-support@example.com\r\nCc: x@evil.example"])
    wire = msg.as_bytes()
    reparsed = message_from_bytes(wire, policy=policy.default)
    assert reparsed["Bcc"] is None and reparsed["Cc"] is None and reparsed["X-Evil"] is None
    assert "\n" not in reparsed["Subject"] and "\r" not in reparsed["Subject"]
    assert reparsed["Subject"].startswith("[usagewatch] kim Bcc: attacker@evil.example ran")
    head = wire.split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nCc:" not in head and b"\nX-Evil:" not in head
    text, _ = parts(msg)
    assert "Who:             kim Bcc: attacker@evil.example\n" in text  # one line in the body too


def test_html_is_escaped(finding: dict[str, Any]) -> None:
    finding["sample_sql"] = "SELECT '<script>alert(1)</script>' FROM t"
    finding["user"] = "<b>kim</b>"
    text, html = parts(render(finding))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>kim</b>" not in html and "&lt;b&gt;kim&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in text  # plain text is shown verbatim


def test_redaction_hides_every_literal(finding: dict[str, Any]) -> None:
    msg = render(finding, redact_values=True)
    seen = everything(msg)
    for value in finding["sample_values"]:
        assert value not in seen
    assert finding["sample_sql"] not in seen
    assert "<7 values redacted>" in seen  # text part
    assert "&lt;7 values redacted&gt;" in seen  # HTML part
    assert "WHERE company_id = ?" in seen  # the shape is still there
    assert "136" in seen and "company_id" in seen  # and so is what happened


def test_render_without_optional_fields(finding: dict[str, Any]) -> None:
    for key in ("varying", "sample_values", "details", "howto", "intervention"):
        finding[key] = [] if key in ("varying", "sample_values") else ({} if key == "details" else "")
    finding["title"] = ""
    text, _ = parts(render(finding))
    assert "same-query-different-ids" in text and "kim" in text


ACTIONS = {
    "Acknowledge": "https://uw.example.com/a/AAA.sig1",
    "Mark as coached": "https://uw.example.com/a/BBB.sig2",
    "Not useful": "https://uw.example.com/a/CCC.sig3",
}


def test_action_links_appear_in_both_parts_before_the_details(finding: dict[str, Any]) -> None:
    text, html = parts(render(finding, actions=ACTIONS))
    for label, url in ACTIONS.items():
        assert f"  {label + ':':<17}{url}" in text
        assert f">{label}</a>" in html and f'href="{url}"' in html
    assert text.index(ACTIONS["Acknowledge"]) < text.index("WHAT WE SAW")
    assert html.index(ACTIONS["Not useful"]) < html.index("What we saw")
    assert "opens a page where you confirm" in text and "opens a page where you confirm" in html


def test_no_actions_no_action_section(finding: dict[str, Any]) -> None:
    for actions in (None, {}):
        text, html = parts(render(finding, actions=actions))
        assert "ACT ON IT" not in text and "/a/" not in text and "/a/" not in html
    assert parts(render(finding)) == parts(render(finding, actions=None))


def test_action_links_are_escaped_and_only_http_is_clickable(finding: dict[str, Any]) -> None:
    odd = {"Acknowledge": 'https://uw.example.com/a/x"><script>1</script>', "Not useful": "javascript:alert(1)"}
    text, html = parts(render(finding, actions=odd))
    assert "<script>1</script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html and "<code>javascript:alert(1)</code>" in html
    assert re.search(r"Not useful: +javascript:alert\(1\)\n", text)


def test_action_links_survive_redaction(finding: dict[str, Any]) -> None:
    text, html = parts(render(finding, actions=ACTIONS, redact_values=True))
    assert all(url in text and url in html for url in ACTIONS.values())
