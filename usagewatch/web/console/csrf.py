"""Cross-site request forgery: every console form carries its session's token, and a post must
come from the console's own origin.

Two independent checks, both required on every POST: the token (a random value bound to the
session cookie, which another site can neither read nor guess) and the Origin (or, without
Origin, the Referer) header naming the public URL's origin or the listener's own address. A
post with neither header is judged by the token alone (some privacy tools strip both).
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from usagewatch.web.console.wire import Headers

FIELD = "csrf"


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, default ports left out, lower case; None when it has none."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def same_origin(headers: Headers, allowed: Collection[str]) -> bool:
    """Did the browser say the post comes from one of the ``allowed`` origins?"""
    origin = headers.get("Origin")
    if origin is not None:
        return origin_of(origin) in allowed  # "null" (sandboxed or no-referrer pages) is refused
    referer = headers.get("Referer")
    if referer is not None:
        return origin_of(referer) in allowed
    return True


def token_matches(expected: str, form: Mapping[str, str]) -> bool:
    given = form.get(FIELD) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
