"""Signed, expiring action links: a token says "finding N, action A, valid until T" and nothing else.

Token format (all of it URL-safe, no padding)::

    base64url("uw1:<finding id>:<action>:<expiry, unix seconds>") "." base64url(HMAC-SHA256(secret, payload))

The payload is not secret (it names a finding id and an action), only unforgeable: the signature
covers every byte of it, version prefix included, so changing the id, the action or the expiry
gives "bad signature". The key comes from ``http.secret()`` (an environment variable) and is never
logged nor written into a page. Signatures are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timezone

from usagewatch.config import HttpConfig
from usagewatch.errors import UsagewatchError

VERSION = "uw1"
#: The actions a link may carry, by the label the email shows (in the email's order).
LINK_ACTIONS: dict[str, str] = {
    "Acknowledge": "acknowledged",
    "Mark as coached": "coached",
    "Not useful": "dismissed",
}
MAX_TOKEN_CHARS = 512  # real tokens are ~90; anything much longer is not ours


class LinkError(UsagewatchError):
    """A link token was refused. ``reason`` is one of "malformed", "bad signature", "expired".

    An expired link was signed by us, so its ``finding_id`` and ``action`` are given (else None).
    """

    def __init__(self, reason: str, finding_id: int | None = None, action: str | None = None):
        self.reason = reason
        self.finding_id = finding_id
        self.action = action
        super().__init__(f"the link is refused: {reason}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def _epoch(when: datetime) -> int:
    if when.tzinfo is None:  # naive times are UTC throughout usagewatch
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def make_token(secret: bytes, finding_id: int, action: str, expires: datetime) -> str:
    """One signed token for ``action`` on ``finding_id``, valid until ``expires``."""
    if action not in LINK_ACTIONS.values():
        raise ValueError(f"no link for action {action!r}")
    payload = f"{VERSION}:{int(finding_id)}:{action}:{_epoch(expires)}".encode("ascii")
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def verify(token: str, secret: bytes, now: datetime) -> tuple[int, str]:
    """``(finding_id, action)`` of a valid token; ``LinkError`` saying why when it is not.

    The signature is checked before anything in the payload is believed, so a tampered expiry or
    action reads as "bad signature", never as "expired".
    """
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise LinkError("malformed")
    head, _, sig = token.partition(".")
    try:
        payload, signature = _unb64(head), _unb64(sig)
    except (ValueError, binascii.Error):
        raise LinkError("malformed") from None
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise LinkError("bad signature")
    try:
        version, fid, action, expires = payload.decode("ascii").split(":")
        finding_id, expiry = int(fid), int(expires)
    except (UnicodeDecodeError, ValueError):
        raise LinkError("malformed") from None
    if version != VERSION or action not in LINK_ACTIONS.values():
        raise LinkError("malformed")
    if _epoch(now) >= expiry:
        raise LinkError("expired", finding_id, action)
    return finding_id, action


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/a/{token}"


def action_links(http: HttpConfig | None, finding_id: int, now: datetime) -> dict[str, str]:
    """The links a notification about ``finding_id`` carries, by label; ``{}`` without ``http``.

    They expire ``http.link_ttl`` after ``now``. Raises ``ConfigError`` when the signing secret's
    environment variable is not set.
    """
    if http is None:
        return {}
    secret = http.secret()
    expires = now + http.link_ttl
    return {label: link_url(http.public_url, make_token(secret, finding_id, action, expires))
            for label, action in LINK_ACTIONS.items()}
