"""Deliver a rendered email over SMTP, and say in plain words whether a failure is worth a retry.

This module owns the SMTP boundary: connection, TLS (none, STARTTLS or implicit TLS), login, and
the mapping of every foreign error (``OSError``, ``ssl``, ``smtplib``) to ``DeliveryError``:

- ``transient=True`` when trying again later may work: connection refused or reset, timeout, name
  lookup failure, a server that hangs up, any 4xx reply (e.g. "451 try again later");
- ``transient=False`` when only a person can fix it: login refused (535), sender or recipient
  refused (5xx), certificate not trusted, TLS or AUTH not offered by the server.

The password never appears in a message, log line or ``repr``: ``SmtpSettings`` prints it as
``<secret>`` and error messages are scrubbed of it as a last guard.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from usagewatch.config import EmailConfig
from usagewatch.errors import DeliveryError

log = logging.getLogger(__name__)

TlsMode = Literal["none", "starttls", "ssl"]
_TLS_MODES: tuple[str, ...] = ("none", "starttls", "ssl")
_MIN_SCRUB_LEN = 6


@dataclass(frozen=True, repr=False)
class SmtpSettings:
    """Where and how to deliver mail. ``verify`` checks the server's TLS certificate (default on);
    ``ca_file`` adds a CA bundle to trust (for an internal CA)."""

    host: str
    port: int = 25
    tls: TlsMode = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    verify: bool = True
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.tls not in _TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(_TLS_MODES)}, not {self.tls!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {self.port}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")

    def __repr__(self) -> str:
        password = "<secret>" if self.password is not None else "None"
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port!r}, tls={self.tls!r}, "
            f"username={self.username!r}, password={password}, timeout={self.timeout!r}, "
            f"verify={self.verify!r}, ca_file={self.ca_file!r})"
        )

    __str__ = __repr__

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


def _sentence(err: BaseException) -> str:
    """The error's text without trailing dots, to sit inside one of our sentences."""
    return str(err).strip().rstrip(".") or type(err).__name__


def _is_transient(code: int) -> bool:
    return 400 <= code < 500


class SmtpChannel:
    """Sends one message per connection; raises ``DeliveryError`` for every kind of failure."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    def __repr__(self) -> str:
        return f"SmtpChannel({self.settings!r})"

    def send(self, msg: EmailMessage) -> None:
        """Deliver ``msg`` to the recipients in its To/Cc/Bcc headers, or raise ``DeliveryError``."""
        try:
            self._deliver(msg)
        except DeliveryError as err:
            raise DeliveryError(self._scrub(str(err)), err.transient) from err
        except Exception as err:  # every foreign error is mapped here, at the boundary
            message, transient = self._explain(err)
            raise DeliveryError(self._scrub(message), transient) from err

    # -- the conversation ------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.tls == "ssl":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._ssl_context())
        conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.tls == "starttls":
                conn.ehlo()
                conn.starttls(context=self._ssl_context())
                conn.ehlo()
        except BaseException:
            _close_quietly(conn)
            raise
        return conn

    def _deliver(self, msg: EmailMessage) -> None:
        s = self.settings
        conn = self._connect()
        try:
            if s.username:
                conn.login(s.username, s.password or "")
            refused = conn.send_message(msg)
        finally:
            _close_quietly(conn)
        if refused:
            # The server took the message for some recipients. Retrying would send it to those
            # twice, so this counts as delivered; the refused ones are logged for an admin.
            log.warning(
                "SMTP server %s accepted message %s but refused some recipients: %s",
                s.address,
                msg.get("Message-ID", "?"),
                "; ".join(f"{r}: {c} {_reply_text(t)}" for r, (c, t) in refused.items()),
            )

    # -- error mapping -----------------------------------------------------------------------

    def _explain(self, err: Exception) -> tuple[str, bool]:
        """Map a foreign error to (one plain sentence with a remedy, transient)."""
        where = f"SMTP server {self.settings.address}"
        if isinstance(err, smtplib.SMTPAuthenticationError):
            return (
                f"{where} refused the login for user {self.settings.username!r} "
                f"({err.smtp_code} {_reply_text(err.smtp_error)}). "
                "Check the SMTP username and password.",
                _is_transient(err.smtp_code),
            )
        if isinstance(err, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in err.recipients.values()]
            listed = "; ".join(
                f"{rcpt} ({code} {_reply_text(text)})" for rcpt, (code, text) in err.recipients.items()
            )
            transient = bool(codes) and all(_is_transient(c) for c in codes)
            remedy = "Will retry." if transient else "Check notify.email.to."
            return f"{where} refused every recipient: {listed or 'none given'}. {remedy}", transient
        if isinstance(err, smtplib.SMTPSenderRefused) and err.smtp_code == 530:
            return (
                f"{where} requires a login ({err.smtp_code} {_reply_text(err.smtp_error)}). "
                "Set notify.email.username and give the password in the environment.",
                False,
            )
        if isinstance(err, smtplib.SMTPSenderRefused):
            return (
                f"{where} refused the sender {_reply_text(err.sender)} "
                f"({err.smtp_code} {_reply_text(err.smtp_error)}). Check notify.email.from.",
                _is_transient(err.smtp_code),
            )
        if isinstance(err, smtplib.SMTPDataError):
            return (
                f"{where} refused the message ({err.smtp_code} {_reply_text(err.smtp_error)}).",
                _is_transient(err.smtp_code),
            )
        if isinstance(err, smtplib.SMTPResponseException):  # connect/helo and other replies
            return (
                f"{where} answered {err.smtp_code} {_reply_text(err.smtp_error)}.",
                _is_transient(err.smtp_code),
            )
        if isinstance(err, smtplib.SMTPServerDisconnected):
            if isinstance(err.__context__, TimeoutError):  # smtplib wraps read timeouts
                return f"{where} did not answer within {self.settings.timeout:g} s. Will retry.", True
            return f"{where} closed the connection unexpectedly ({_sentence(err)}). Will retry.", True
        if isinstance(err, smtplib.SMTPNotSupportedError):
            return (
                f"{where} does not support what the settings ask for: {_sentence(err)}. "
                "Check notify.email.tls and notify.email.username.",
                False,
            )
        if isinstance(err, smtplib.SMTPException):
            return f"{where} could not be used: {_sentence(err)}. Check the SMTP settings.", False
        if isinstance(err, ssl.SSLCertVerificationError):
            return (
                f"The TLS certificate of {where} is not trusted ({err.verify_message or err}). "
                "Install the issuing CA and point notify.email.ca_file at it.",
                False,
            )
        if isinstance(err, ssl.SSLError):
            return (
                f"TLS with {where} failed ({err.reason or err}). "
                "Check that notify.email.tls matches what the server offers on this port.",
                False,
            )
        if isinstance(err, ConnectionRefusedError):
            return f"Could not connect to {where}: connection refused. Will retry.", True
        if isinstance(err, TimeoutError):
            return (
                f"{where} did not answer within {self.settings.timeout:g} s. Will retry.",
                True,
            )
        if isinstance(err, socket.gaierror):
            return (
                f"Could not look up the SMTP host {self.settings.host!r} ({err.strerror}). "
                "Check notify.email.host; will retry.",
                True,
            )
        if isinstance(err, OSError):
            return f"Could not talk to {where}: {err.strerror or err}. Will retry.", True
        if isinstance(err, (ValueError, UnicodeError)):
            return f"The message could not be sent as it is: {_sentence(err)}.", False
        return f"Sending through {where} failed: {type(err).__name__}: {_sentence(err)}.", False

    def _scrub(self, text: str) -> str:
        # Last guard in case a server echoes the password; tiny strings would only mangle words.
        password = self.settings.password
        if password and len(password) >= _MIN_SCRUB_LEN:
            return text.replace(password, "<secret>")
        return text


def _close_quietly(conn: smtplib.SMTP) -> None:
    """QUIT and close; a failure here must not turn a delivered message into a retry."""
    try:
        conn.quit()
    except Exception:
        pass
    finally:
        try:
            conn.close()
        except Exception:
            pass


def smtp_settings(email: EmailConfig) -> SmtpSettings:
    """The SMTP channel's settings from the config (the password from its environment variable)."""
    return SmtpSettings(host=email.host, port=email.port, tls=email.tls, username=email.username,
                        password=email.password(), timeout=email.timeout.total_seconds(), verify=email.verify,
                        ca_file=email.ca_file)
