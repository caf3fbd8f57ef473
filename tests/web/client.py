"""A small browser-like HTTP client for the console tests: keeps cookies (Secure ones too, since
the tests speak plain HTTP to a console whose public URL is https), follows no redirects, and
can read the CSRF token out of a page."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]
    cookies: list[str]  # raw Set-Cookie values

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    @property
    def text(self) -> str:
        """The visible words, on one line."""
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", self.body))

    def csrf(self) -> str:
        m = re.search(r'name="csrf" value="([^"]*)"', self.body)
        assert m, "no CSRF token in the page"
        return m.group(1)


@dataclass
class Client:
    port: int
    host: str = "127.0.0.1"
    origin: str | None = None  # sent as Origin on posts, like a browser
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, None, headers)

    def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
        extra = {"Origin": self.origin} if self.origin else {}
        return self.request("POST", path, form, {**extra, **(headers or {})})

    def request(self, method: str, path: str, form: dict[str, str] | None, headers: dict[str, str] | None) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            hdrs = dict(headers or {})
            if self.cookies:
                hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            body = None
            if form is not None:
                body = urllib.parse.urlencode(form).encode()
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read().decode()
            set_cookies = [v for k, v in resp.getheaders() if k.lower() == "set-cookie"]
            for value in set_cookies:
                jar: SimpleCookie = SimpleCookie(value)
                for name, morsel in jar.items():
                    if morsel.value and morsel["max-age"] != "0":
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
            return Reply(resp.status, raw, {k.lower(): v for k, v in resp.getheaders()}, set_cookies)
        finally:
            conn.close()

    def login(self, user: str, password: str, base: str = "/console") -> Reply:
        page = self.get(f"{base}/login")
        return self.post(f"{base}/login", {"csrf": page.csrf(), "user": user, "password": password, "next": ""})
