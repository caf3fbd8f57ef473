"""Deliver a notification as a JSON POST to a webhook, and say in plain words whether a failure is worth a retry.

This module owns the HTTP boundary of the webhook channel (what the body *says* is ``payload.py``):
one POST per notification with ``Content-Type: application/json``, the configured timeout, TLS
verified against the system's CAs, and redirects *not* followed (a redirected POST would silently
become a GET, or hand the body to another host). Every foreign error is mapped to
``DeliveryError``:

- ``transient=True`` when trying again later may work: connection refused or reset, timeout, name
  lookup failure, HTTP 408, 429 and 5xx;
- ``transient=False`` when only a person can fix it: any other 4xx (404 wrong URL, 401/403 wrong
  token, 400 body refused), a redirect, a certificate that is not trusted, a URL that is not http(s).

A webhook URL often *is* the secret (Slack's ``https://hooks.slack.com/services/T../B../XXXX``), so
no message, log line or ``repr`` shows more of it than ``scheme://host/…`` (``safe_url``).

Each POST carries the notification's stable id twice, as ``Idempotency-Key`` (the name payment and
ticketing APIs understand) and ``X-Usagewatch-Message-Id``, so a receiver can recognise a resend.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from usagewatch import __version__
from usagewatch.config import WebhookConfig
from usagewatch.errors import DeliveryError
from usagewatch.notify.render import header_safe

MAX_ERROR_BODY = 200  # characters of a refusal's body quoted in the error (receivers explain there)
_MIN_SECRET_PART = 8  # path and query parts at least this long are treated as possible tokens


def safe_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell which receiver, never the path or query that may hold a token."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme or not host:
        return "<unparseable URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    rest = "…" if (parts.path.strip("/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme.lower()}://{host}{port}/{rest}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status


class WebhookChannel:
    """POSTs one JSON body per notification; raises ``DeliveryError`` for every kind of failure."""

    def __init__(self, cfg: WebhookConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.url = cfg.resolved_url()  # ConfigError when url_env names an unset variable
        self.timeout = cfg.timeout.total_seconds()
        self.where = f"webhook {self.name} ({safe_url(self.url)})"
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
        )

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={safe_url(self.url)!r}, style={self.cfg.style!r}, timeout={self.timeout:g})"

    def send(self, body: Mapping[str, Any], message_id: str) -> None:
        """POST ``body`` as JSON; return when the receiver answered 2xx, else raise ``DeliveryError``.

        ``message_id`` must be the same on every (re)send of one notification."""
        try:
            self._post(body, message_id)
        except DeliveryError:
            raise
        except Exception as err:  # every foreign error is mapped here, at the boundary
            message, transient = self._explain(err)
            raise DeliveryError(message, transient) from err

    # -- the request ---------------------------------------------------------------------------

    def _post(self, body: Mapping[str, Any], message_id: str) -> None:
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise DeliveryError(f"{self.where}: the URL is not an http(s) URL. Check the webhook's url.", False)
        try:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise DeliveryError(f"{self.where}: the body could not be written as JSON ({exc}).", False) from exc
        key = header_safe(message_id)
        request = urllib.request.Request(self.url, data=data, method="POST", headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/plain;q=0.9, */*;q=0.1",
            "User-Agent": f"usagewatch/{__version__}",
            "Idempotency-Key": key,
            "X-Usagewatch-Message-Id": key,
        })
        with self._opener.open(request, timeout=self.timeout) as response:
            response.read()  # drain, so the connection ends cleanly; 2xx bodies carry nothing we need

    # -- error mapping -------------------------------------------------------------------------

    def _explain(self, err: Exception) -> tuple[str, bool]:
        """Map a foreign error to (one plain sentence with a remedy, transient)."""
        where = self.where
        if isinstance(err, urllib.error.HTTPError):
            return self._explain_status(err)
        if isinstance(err, urllib.error.URLError):
            reason = err.reason
            if isinstance(reason, Exception):
                return self._explain(reason)
            return f"{where}: could not connect ({self._scrub(str(reason))}). Will retry.", True
        if isinstance(err, ssl.SSLCertVerificationError):
            return (f"{where}: certificate not trusted ({err.verify_message or err}). "
                    "Install the issuing CA in the system's trust store.", False)
        if isinstance(err, ssl.SSLError):
            return f"{where}: TLS failed ({self._scrub(str(err.reason or err))}). Check that the URL's scheme matches the server.", False
        if isinstance(err, ConnectionRefusedError):
            return f"{where}: connection refused. Will retry.", True
        if isinstance(err, TimeoutError):  # socket.timeout is TimeoutError
            return f"{where}: no answer within {self.timeout:g} s. Will retry.", True
        if isinstance(err, socket.gaierror):
            return f"{where}: host not found ({err.strerror}). Check the URL; will retry.", True
        if isinstance(err, ConnectionError):
            return f"{where}: the connection broke ({err.strerror or type(err).__name__}). Will retry.", True
        if isinstance(err, OSError):
            return f"{where}: could not talk to the receiver ({err.strerror or err}). Will retry.", True
        if isinstance(err, ValueError):  # urllib: malformed URL, bad header value
            return f"{where}: the request could not be made ({self._scrub(str(err))}). Check the webhook's url.", False
        return f"{where}: sending failed ({type(err).__name__}: {self._scrub(str(err))}).", False

    def _explain_status(self, err: urllib.error.HTTPError) -> tuple[str, bool]:
        code = err.code
        said = self._excerpt(err)
        detail = f" ({said})" if said else ""
        head = f"{self.where}: HTTP {code}{detail}"
        if code == 429:
            after = err.headers.get("Retry-After") if err.headers else None
            return f"{head}: rate limited{f', asked to wait {after} s' if after else ''}. Will retry.", True
        if code == 408 or code >= 500:
            return f"{head}: the receiver failed. Will retry.", True
        if code in (401, 403):
            return f"{head}: the receiver refused the credentials: check the URL (its token).", False
        if code in (404, 410):
            return f"{head}: check the URL.", False
        if 300 <= code < 400:
            return f"{head}: the receiver redirects elsewhere; put the final URL in the config.", False
        return f"{head}: the receiver refused the notification; check the URL and the webhook's style.", False

    def _excerpt(self, err: urllib.error.HTTPError) -> str:
        """The start of a refusal's body on one line (Slack says ``invalid_token``, ``no_service``)."""
        try:
            raw = err.read(4 * MAX_ERROR_BODY)
        except Exception:
            return ""
        text = self._scrub(" ".join(raw.decode("utf-8", "replace").split()))
        if len(text) > MAX_ERROR_BODY:
            text = text[: MAX_ERROR_BODY - 1] + "…"
        return text

    def _scrub(self, text: str) -> str:
        """Foreign text (a refusal's body, a library's message) may echo the URL, its path or its token.

        Only foreign text is scrubbed: our own sentences never contain more than ``safe_url``."""
        parts = urlsplit(self.url)
        secrets = [self.url, parts.path, parts.query, parts.username or "", parts.password or ""]
        secrets += re.split(r"[/&=?;]", f"{parts.path}/{parts.query}")
        for secret in sorted({s for s in secrets if len(s) >= _MIN_SECRET_PART}, key=len, reverse=True):
            text = text.replace(secret, "<secret>")
        return text
