"""Who is asking: console users and their password hashes, signed session cookies, the trusted
proxy's user header, and a brake on password guessing.

The users file holds one ``name:hash`` line per person (comments with ``#``); the hash is
``scrypt$<n>$<r>$<p>$<salt>$<key>`` (base64url), so a copied file does not give the passwords away
cheaply and the parameters can grow later without breaking old lines. The file is re-read when it
changes, so ``usagewatch console add-user`` works without a restart.

A session is a cookie signed with a key derived from ``http.secret_env`` (itsdangerous, salted
for this purpose, so a session cookie can never pass for an action link or the other way round).
It carries the user, a random session id, the session's CSRF token and a fingerprint of the user's
password hash: changing or removing a user's password ends that user's sessions. Logging out
revokes the session id in memory until the cookie would have expired anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from usagewatch.errors import UsagewatchError

log = logging.getLogger(__name__)

COOKIE = "uw_console"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
#: scrypt cost: 2**15 * 8 * 128 bytes = 32 MiB and some 50-100 ms per check on a small machine
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password`` in the users file's format."""
    salt = salt or os.urandom(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         maxmem=_MAXMEM, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_password(password: str, stored: str | None) -> bool:
    """Does ``password`` match ``stored``? An unknown user (None) costs the same time as a known
    one, so response times do not tell which names exist."""
    try:
        scheme, n, r, p, salt, key = (stored or "").split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = _unb64(key)
        got = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        hash_password(password, b"\0" * 16)  # same work as a real check
        return False
    return hmac.compare_digest(got, expected)


def fingerprint(stored: str) -> str:
    """A short digest of a password hash: a session names it, so a new password ends old sessions."""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]


class Users:
    """The users file, read again whenever its modification time or size changes."""

    def __init__(self, path: str):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        """The stored hash of ``name``; None for an unknown name (or a missing file)."""
        with self._lock:
            try:
                st = self.path.stat()
            except OSError:
                self._users, self._stamp = {}, None
                return None
            if self._stamp != (st.st_mtime_ns, st.st_size):
                try:
                    self._users = read_users(self.path)
                except (OSError, UnicodeDecodeError) as exc:  # nobody gets in; the log says why
                    log.error("console: cannot read the users file %s: %s", self.path, exc)
                    return None
                self._stamp = (st.st_mtime_ns, st.st_size)
            return self._users.get(name)


def read_users(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if sep and NAME.fullmatch(name):
            users[name] = stored
    return users


def write_user(path: str | Path, name: str, password: str) -> bool:
    """Add ``name`` to the users file, or give it a new password; True when the name is new.

    The file is rewritten whole (to a temporary file, then renamed) and readable only by its owner.
    """
    if not NAME.fullmatch(name):
        raise UsagewatchError(f"{name!r} is not a usable user name: letters, digits and . _ @ + - (up to 64).")
    p = Path(path)
    lines = p.read_text(encoding="utf-8").splitlines() if p.exists() else []
    entry = f"{name}:{hash_password(password)}"
    new = True
    for i, line in enumerate(lines):
        if line.partition(":")[0].strip() == name:
            lines[i], new = entry, False
    if new:
        lines.append(entry)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, p)
    return new


@dataclass(frozen=True)
class Session:
    """One browser's session: ``user`` is "" before logging in (the login form still needs a token)."""

    sid: str
    user: str
    csrf: str
    password: str = ""  # fingerprint of the password hash it was opened with (login mode)


class Sessions:
    """Signed, expiring session cookies, and the ids revoked by logging out."""

    def __init__(self, secret: bytes, ttl: float, secure: bool, path: str):
        self._signer = URLSafeTimedSerializer(secret, salt="usagewatch-console-session")
        self.ttl = ttl
        self.secure = secure
        self.path = path
        self._revoked: dict[str, float] = {}  # sid -> when its cookie expires anyway
        self._lock = threading.Lock()

    def new(self, user: str = "", password: str = "") -> Session:
        return Session(secrets.token_urlsafe(18), user, secrets.token_urlsafe(24), password)

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=int(self.ttl))
            session = Session(str(data["s"]), str(data["u"]), str(data["c"]), str(data.get("p", "")))
        except (BadSignature, KeyError, TypeError):
            return None
        with self._lock:
            return None if session.sid in self._revoked else session

    def cookie(self, session: Session) -> str:
        """The Set-Cookie value that stores ``session`` in the browser."""
        value = self._signer.dumps({"s": session.sid, "u": session.user, "c": session.csrf, "p": session.password})
        return self._attributes(f"{COOKIE}={value}", int(self.ttl))

    def revoke(self, session: Session) -> str:
        """End ``session`` here and return the Set-Cookie value that deletes it in the browser."""
        now = time.time()
        with self._lock:
            self._revoked = {sid: t for sid, t in self._revoked.items() if t > now}
            self._revoked[session.sid] = now + self.ttl
        return self._attributes(f"{COOKIE}=", 0)

    def _attributes(self, pair: str, max_age: int) -> str:
        secure = "; Secure" if self.secure else ""
        return f"{pair}; Path={self.path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"


class TrustedProxies:
    """The reverse proxy's user header, believed only when the request comes from one of its addresses."""

    def __init__(self, header: str, networks: Iterable[str]):
        self.header = header
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
        return any(ip in n for n in self.networks)

    def user(self, value: str | None) -> str | None:
        """The header's user name, or None when it is missing or not a plausible name."""
        name = (value or "").strip()
        return name if name and len(name) <= 200 and name.isprintable() else None


class Throttle:
    """At most ``limit`` failed logins per key (client address and user name) in ``window`` seconds;
    then refuse for a while. scrypt already makes each guess slow; this keeps a script from trying
    thousands an hour."""

    def __init__(self, limit: int = 10, window: float = 600.0):
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key)) >= self.limit

    def failed(self, key: str) -> None:
        with self._lock:
            self._recent(key).append(time.monotonic())
            if len(self._failures) > 10000:  # a flood of names must not grow memory without bound
                self._failures = {a: t for a, t in self._failures.items() if t and t[-1] > time.monotonic() - self.window}

    def _recent(self, address: str) -> list[float]:
        cut = time.monotonic() - self.window
        times = [t for t in self._failures.get(address, []) if t > cut]
        self._failures[address] = times
        return times
