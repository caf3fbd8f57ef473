"""The config model: every key, its default and its help, validated in one place.

One YAML file (``config.example.yaml`` documents every key). Unknown keys are errors with
"Did you mean ...?"; every problem is reported with ``path:line:col``. Secrets never live in the
YAML: a key like ``password_env`` names the environment variable that holds the secret.
Relative paths are relative to the config file's directory, so a config works from any cwd.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from usagewatch.durations import Duration, parse_duration
from usagewatch.errors import ConfigError
from usagewatch.registry import did_you_mean
from usagewatch.sources.formats import FormatOptions, LogFormat, formats
from usagewatch.usage.settings import CostConfig as CostConfig  # the usage: section, re-exported
from usagewatch.usage.settings import SegmentsConfig as SegmentsConfig
from usagewatch.usage.settings import UsageConfig
from usagewatch.validation import problems_from
from usagewatch.yamlload import Located, load_file, load_text

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_LOG = PACKAGE_DIR / "samples" / "postgresql.csv"
DEFAULT_HOWTO_BASE = "https://github.com/usagewatch/usagewatch/blob/main/docs/howto/"


def stock_rules_dir() -> Path:
    """The stock rules: inside the installed wheel, or ``rules/`` of a source checkout."""
    installed = PACKAGE_DIR / "stock_rules"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "rules"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceConfig(_Strict):
    """One source of query events: log files matched by glob patterns (``type: file``), or a
    query-history table polled over SQL (``type: query``); either way in one ``format``."""

    name: str = Field(description="Name shown in summaries and stored with checkpoints.")
    type: Literal["file", "query"] = "file"
    format: str = Field(description="Log format, e.g. postgres-csvlog or postgres-jsonlog.")
    options: dict[str, Any] = Field(default_factory=dict, description="Settings of the format (see docs/sources.md).")
    # type: file
    paths: list[str] = Field(default_factory=list, description="Glob patterns of the log files.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns never read.")
    # type: query
    url: str | None = Field(default=None, description="SQLAlchemy URL of the database holding the history.")
    url_env: str | None = Field(default=None, description="Environment variable holding that URL (with a password).")
    table: str | None = Field(default=None, description="History table or view to read (or give query).")
    query: str | None = Field(default=None, description="SQL returning history rows; :cursor is the last value read.")
    cursor: str | None = Field(default=None, description="Column that only grows (timestamp or id): read past it.")
    interval: Duration = Field(default=timedelta(seconds=30), description="How often to poll.")
    batch_rows: int = Field(default=5000, gt=0, description="Rows read per query and transaction, at most.")
    start: str | int | None = Field(
        default=None, description="Where a query source with no saved cursor begins: a duration back from now "
        "(7d), a time (2026-01-01T00:00:00Z), a number (an id); default the beginning of the table.")
    key: str | None = Field(default=None, description="Column identifying a row (query id), for rows that share a cursor value.")

    _format_options: FormatOptions | None = PrivateAttr(default=None)

    @field_validator("paths")
    @classmethod
    def _paths_for_files(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("type", "file") == "file" and not v:
            raise ValueError("a file source needs at least one glob pattern")
        return v

    @model_validator(mode="after")
    def _by_type(self) -> SourceConfig:
        if self.type == "file":
            extra = [k for k in ("url", "url_env", "table", "query", "cursor") if getattr(self, k)]
            if extra:
                raise ValueError(f'source "{self.name}": {extra[0]} is only for sources of type: query')
        else:
            if not (self.url or self.url_env):
                raise ValueError(f'source "{self.name}": a query source needs url or url_env')
            if not (self.table or self.query) or (self.table and self.query):
                raise ValueError(f'source "{self.name}": a query source needs exactly one of table or query')
            if not self.cursor:
                raise ValueError(f'source "{self.name}": a query source needs cursor (a column that only grows)')
            self.start_value()  # a bad start is an error at load time, not at the first poll
            if self.paths:
                raise ValueError(f'source "{self.name}": paths are only for sources of type: file')
        return self

    def database_url(self) -> str:
        """The polled database's URL; from the environment when ``url_env`` is given."""
        if self.url_env:
            value = os.environ.get(self.url_env)
            if value is None:
                raise ConfigError(f"the environment variable {self.url_env} (source {self.name}, url_env) is not set.")
            return value
        assert self.url is not None
        return self.url

    def start_value(self) -> Any:
        """``start`` as a cursor value: a duration means that long before now."""
        if self.start is None or isinstance(self.start, int):
            return self.start
        try:
            return datetime.now(timezone.utc) - parse_duration(self.start)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(self.start.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f'source "{self.name}": start {self.start!r} is neither a duration (7d), '
                              "a time (2026-01-01T00:00:00Z) nor a number") from None

    def make_format(self) -> LogFormat:
        """The format object, built with its validated options."""
        return formats.get(self.format)(self._format_options)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in formats:
            raise ValueError(formats.unknown(v))
        return v


class EmailConfig(_Strict):
    """SMTP delivery of notifications to the support team."""

    host: str
    port: int = 25
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    tls: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="Name of the environment variable holding the SMTP password."
    )
    timeout: Duration = timedelta(seconds=30)
    verify: bool = True
    ca_file: str | None = Field(default=None, description="A CA bundle to trust besides the system's (an internal CA).")

    def password(self) -> str | None:
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"the environment variable {self.password_env} (notify.email.password_env) is not set.")
        return value


class RetryConfig(_Strict):
    """Backoff for notifications while a channel is down, and when to give up (dead letter)."""

    initial: Duration = timedelta(seconds=10)
    max: Duration = timedelta(minutes=30)
    give_up_after: Duration = Field(default=timedelta(days=2),
                                    description="A notification still failing after this is a dead letter.")


class WebhookConfig(_Strict):
    """A JSON POST channel (chat tools, ticketing); ``style: slack`` sends a Slack-compatible body."""

    name: str
    url: str | None = None
    url_env: str | None = Field(default=None, description="Environment variable holding the URL (it often holds a token).")
    style: Literal["json", "slack"] = "json"
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if bool(self.url) == bool(self.url_env):
            raise ValueError(f'webhook "{self.name}" needs exactly one of url or url_env')
        return self

    def resolved_url(self) -> str:
        if self.url_env:
            value = os.environ.get(self.url_env)
            if value is None:
                raise ConfigError(f"the environment variable {self.url_env} (webhook {self.name}, url_env) is not set.")
            return value
        assert self.url is not None
        return self.url


class RouteMatch(_Strict):
    rules: list[str] = Field(default_factory=list, description="Rule ids (globs); empty = all.")
    severities: list[Literal["info", "warning", "high"]] = Field(default_factory=list, description="Empty = all.")


class RouteConfig(_Strict):
    """Where the notifications of matching findings go, and when. The first matching route wins."""

    name: str
    match: RouteMatch = Field(default_factory=RouteMatch)
    email_to: list[str] = Field(default_factory=list, description="Recipients (notify.email is the server).")
    webhooks: list[str] = Field(default_factory=list, description="Names of notify.webhooks entries.")
    mode: Literal["immediate", "digest"] = "immediate"
    digest_every: Duration = Field(default=timedelta(hours=1), description="For mode: digest, how often.")


class NotifyConfig(_Strict):
    email: EmailConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(
        default_factory=list, description="Default: one immediate route to notify.email.to for everything.")
    howto_base_url: str = Field(
        default=DEFAULT_HOWTO_BASE,
        description="Base URL the rules' relative how-to links are joined to (point it at your wiki).",
    )
    redact_values: bool = False
    retry: RetryConfig = Field(default_factory=RetryConfig)
    status_every: Duration | None = Field(
        default=None, description="Email notify.email.to a status report (service levels, open work) this often, e.g. 7d.")

    @model_validator(mode="after")
    def _references(self) -> NotifyConfig:
        names = [w.name for w in self.webhooks]
        for r in self.routes:
            for w in r.webhooks:
                if w not in names:
                    raise ValueError(f'route "{r.name}" names webhook "{w}", which is not in notify.webhooks.'
                                     + did_you_mean(w, names))
            if r.email_to and self.email is None:
                raise ValueError(f'route "{r.name}" sends email but notify.email (the server) is not configured')
            if not (r.email_to or r.webhooks):
                raise ValueError(f'route "{r.name}" sends nothing: give email_to or webhooks')
        if self.status_every is not None and self.email is None:
            raise ValueError("status_every needs notify.email (the status report is an email)")
        return self


class HttpAuthConfig(_Strict):
    """Who may use the web console: people logging in (``login``), or a reverse proxy that has
    already authenticated them and names them in a header (``proxy_header``)."""

    mode: Literal["login", "proxy_header"] = "login"
    users_file: str | None = Field(default=None, description="For mode: login, the file of user:password-hash lines "
                                   "(`usagewatch console add-user NAME` writes it).")
    header: str = Field(default="X-Forwarded-User", description="For mode: proxy_header, the header naming the user.")
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"],
                                       description="Addresses or networks (10.0.0.0/8) whose header is believed.")
    session_ttl: Duration = Field(default=timedelta(hours=12), description="A login lasts this long.")

    @model_validator(mode="after")
    def _mode_needs(self) -> HttpAuthConfig:
        if self.mode == "login" and not self.users_file:
            raise ValueError("mode: login needs users_file (create it with `usagewatch console add-user NAME`)")
        if self.mode == "proxy_header" and not self.trusted_proxies:
            raise ValueError("mode: proxy_header needs trusted_proxies (the proxy's addresses)")
        for p in self.trusted_proxies:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {p!r} is not an address or network (127.0.0.1, 10.0.0.0/8)") from None
        return self


class HttpConfig(_Strict):
    """The daemon's small web endpoint: the action links in notifications and, with ``auth``, the
    support console."""

    listen: str = Field(default="127.0.0.1:8765", description="host:port to listen on.")
    public_url: str = Field(description="Base URL the links in emails use (how the support team reaches it).")
    secret_env: str = Field(default="USAGEWATCH_LINK_SECRET",
                            description="Environment variable holding the key that signs links.")
    link_ttl: Duration = Field(default=timedelta(days=14), description="Links expire after this.")
    auth: HttpAuthConfig | None = Field(default=None, description="Who may use the console; without it there is no console.")

    def secret(self) -> bytes:
        value = os.environ.get(self.secret_env)
        if not value:
            raise ConfigError(f"the environment variable {self.secret_env} (http.secret_env) is not set or empty.")
        return value.encode()


class RetentionConfig(_Strict):
    """How long history is kept, so the store stays bounded on a year-long run."""

    closed_findings: Duration = Field(default=timedelta(days=365),
                                      description="Resolved or dismissed findings older than this are deleted.")
    evidence: Duration = Field(default=timedelta(days=90),
                               description="Sent notifications, daily run counts and history older than this.")
    every: Duration = Field(default=timedelta(hours=6), description="How often the retention job runs.")


class MetricsConfig(_Strict):
    """A Prometheus endpoint (prometheus-client)."""

    listen: str = Field(default="127.0.0.1:9187", description="host:port of /metrics.")


class LogConfig(_Strict):
    format: Literal["logfmt", "json", "text"] = Field(default="logfmt", description="One line per event, to stderr.")
    level: Literal["debug", "info", "warning", "error"] = "info"


class SlaConfig(_Strict):
    """Service levels the support team sets itself."""

    acknowledge_within: Duration = timedelta(hours=8)
    resolve_within: Duration = timedelta(days=7)


class FollowConfig(_Strict):
    """How the daemon follows files."""

    rescan_interval: Duration = timedelta(seconds=2)
    idle_flush: Duration = timedelta(seconds=2)
    batch_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_record_bytes: int = Field(default=1024 * 1024, gt=0, description="Longer records are skipped and counted.")
    close_idle: Duration = Field(default=timedelta(minutes=5),
                                 description="Close a file idle this long (reopened when it grows).")


class Config(_Strict):
    database: str = "sqlite:///usagewatch.db"
    rules: list[str] = Field(default_factory=lambda: [str(stock_rules_dir())])
    rule_overrides: list[str] = Field(
        default_factory=list, description="Files of local overrides merged over the rules (see docs/rules.md).")
    sources: list[SourceConfig] = Field(default_factory=list)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    http: HttpConfig | None = None
    sla: SlaConfig = Field(default_factory=SlaConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    metrics: MetricsConfig | None = None
    log: LogConfig = Field(default_factory=LogConfig)
    follow: FollowConfig = Field(default_factory=FollowConfig)

    path: str | None = Field(default=None, exclude=True, description="internal: the file this came from")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for s in v:
            if s.name in seen:
                raise ValueError(f'two sources are named "{s.name}"; names must be unique')
            seen.add(s.name)
        return v


def _resolve(base: Path, p: str) -> str:
    expanded = os.path.expanduser(p)
    return expanded if os.path.isabs(expanded) else str(base / expanded)


def _resolve_sqlite(base: Path, url: str) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        return prefix + _resolve(base, url[len(prefix):])
    return url


def from_document(doc: Located, base: Path) -> Config:
    """Validate a loaded document; relative paths are resolved against ``base``."""
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(doc.problem((), "the config must be a mapping of keys (database, rules, sources, ...)."))
    data = dict(data)
    data.pop("path", None)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, doc, Config)) from None
    problems = []
    for i, s in enumerate(cfg.sources):
        options_model = formats.get(s.format).Options
        try:
            s._format_options = options_model.model_validate(s.options)
        except ValidationError as exc:
            problems.extend(problems_from(exc, doc, options_model, ("sources", i, "options")))
    if problems:
        raise ConfigError(problems)
    cfg.path = doc.path
    cfg.database = _resolve_sqlite(base, cfg.database)
    cfg.rules = [_resolve(base, r) for r in cfg.rules]
    cfg.rule_overrides = [_resolve(base, r) for r in cfg.rule_overrides]
    if cfg.usage.teams_file:
        cfg.usage.teams_file = _resolve(base, cfg.usage.teams_file)
    team_problems = [doc.problem(("usage", "teams"), p.message) if p.path == doc.path and p.line is None else p
                     for p in cfg.usage.load_teams(doc.path)]
    if team_problems:
        raise ConfigError(team_problems)
    if cfg.notify.email is not None and cfg.notify.email.ca_file:
        cfg.notify.email.ca_file = _resolve(base, cfg.notify.email.ca_file)
    if cfg.http is not None and cfg.http.auth is not None and cfg.http.auth.users_file:
        cfg.http.auth.users_file = _resolve(base, cfg.http.auth.users_file)
    for s in cfg.sources:
        if s.url:
            s.url = _resolve_sqlite(base, s.url)
        s.paths = [_resolve(base, p) for p in s.paths]
        s.exclude = [_resolve(base, p) for p in s.exclude]
    return cfg


def load(path: str | Path) -> Config:
    """Load and validate a config file."""
    p = Path(path)
    return from_document(load_file(p), p.resolve().parent)


def default_config(cwd: Path | None = None) -> Config:
    """The embedded default: a SQLite file in the current directory, the stock rules and the
    sample PostgreSQL csvlog that ships with the package. Lets a new user see findings at once."""
    base = cwd or Path.cwd()
    text = f"""
database: sqlite:///usagewatch.db
rules: [{stock_rules_dir()}]
sources:
  - name: sample
    format: postgres-csvlog
    paths: ["{SAMPLE_LOG}"]
"""
    cfg = from_document(load_text(text, "<embedded default config>"), base)
    cfg.path = "<embedded default config>"
    return cfg

