"""The console's view of one HTTP exchange: a parsed ``Request`` in, a ``Response`` out.

The listener (``web/server.py``) owns sockets and bodies; the console only sees these two plain
objects, so its routes, checks and pages are tested without a socket too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Protocol

#: sent with every console page. Unlike the action links' pages (whose URL is a bearer token and so
#: sends no referrer), console URLs hold no secret: same-origin referrers let the browser send a
#: real Origin on the console's own form posts, which the CSRF check compares.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Headers(Protocol):
    """Request headers looked up by name, case-insensitively (``email.message.Message`` is one)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass
class Request:
    method: str
    path: str  # without the public URL's path prefix, e.g. /console/findings/3
    query: Mapping[str, str]
    headers: Headers
    client: str  # the peer's address
    form: Mapping[str, str] = field(default_factory=dict)

    def cookie(self, name: str) -> str | None:
        try:
            jar = SimpleCookie(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None


@dataclass
class Response:
    status: HTTPStatus
    body: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/html; charset=utf-8"

    def all_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), *SECURITY_HEADERS.items(), *self.headers]


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    """303 See Other: after a form post the browser GETs the result (no re-post on reload)."""
    return Response(HTTPStatus.SEE_OTHER, "", [("Location", location), *headers])
