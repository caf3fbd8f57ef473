"""The database schema (SQLAlchemy Core): findings, the notification outbox, source checkpoints and
rule windows, all in one database so one transaction can cover them.

Times are stored in UTC. One open finding per rule and key is a database constraint (a partial
unique index), not a convention, so concurrent writers cannot make two.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

metadata = MetaData()

#: a finding is active (one per rule and key, updated by repeats) until resolved or dismissed
ACTIVE_STATUSES = ("open", "acknowledged", "coached")
CLOSED_STATUSES = ("resolved", "dismissed")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware (UTC) datetimes out, on SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


findings = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("key", Text, nullable=False),
    Column("episode", String(64), nullable=False),
    Column("status", String(20), nullable=False, default="open"),
    Column("severity", String(20), nullable=False),
    Column("user", String(200)),
    Column("database", String(200)),
    Column("count", Integer, nullable=False),
    Column("distinct_values", Integer, nullable=False),
    Column("base_count", Integer, nullable=False, default=0),
    Column("base_distinct", Integer, nullable=False, default=0),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("fingerprint", String(64)),
    Column("sample_sql", Text),
    Column("normalized_sql", Text),
    Column("varying", JSON, nullable=False),
    Column("sample_values", JSON, nullable=False),
    Column("title", Text, nullable=False),
    Column("intervention", Text, nullable=False),
    Column("howto", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),  # resolved or dismissed (closed)
    Column("silenced_by", Integer),  # the silence that held back its notification, if any
    Column("acknowledged_at", UTCDateTime),
    Column("coached_at", UTCDateTime),
    Column("count_at_coaching", Integer),
)
Index("findings_rule_key", findings.c.rule, findings.c.key)
Index(
    "findings_one_open_per_rule_key", findings.c.rule, findings.c.key, unique=True,
    sqlite_where=text("status IN ('open', 'acknowledged', 'coached')"),
    postgresql_where=text("status IN ('open', 'acknowledged', 'coached')"),
)
Index("findings_closed", findings.c.status, findings.c.resolved_at)  # retention: closed before a cut-off

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("finding_id", Integer, ForeignKey("findings.id"), nullable=False),
    Column("event", String(20), nullable=False),          # "opened"
    Column("status", String(20), nullable=False),         # pending | sent | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("message_id", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
)
Index("outbox_due", outbox.c.status, outbox.c.next_attempt_at)

checkpoints = Table(
    "checkpoints", metadata,
    Column("source", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),  # FileCursor.key: device:inode, survives renames
    Column("path", Text, nullable=False),
    Column("dev", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("head_len", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("state", JSON, nullable=False),
    Column("mark_hash", String(64), nullable=False, default=""),
    Column("records", BigInteger, nullable=False, default=0),
    Column("bad", JSON, nullable=False),
    Column("last_ts", String(40)),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: bumped by every migration (usagewatch/store/migrations/versions/) that changes a table. Alembic's
#: ``alembic_version`` decides what to upgrade; this row stays so that a release from before
#: migrations (which compares it) refuses a database newer than itself instead of misreading it
SCHEMA_VERSION = 9

meta = Table(
    "usagewatch_meta", metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
)

finding_events = Table(
    "finding_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("finding_id", Integer, ForeignKey("findings.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),  # a person, or "usagewatch"
    Column("action", String(30), nullable=False),  # opened, reopened, acknowledged, coached, resolved, dismissed
    Column("note", Text),
)

finding_days = Table(
    "finding_days", metadata,
    Column("finding_id", Integer, ForeignKey("findings.id"), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC date of the queries (event time)
    Column("runs", Integer, nullable=False),
)
Index("finding_days_day", finding_days.c.day)  # retention: days before a cut-off

silences = Table(
    "silences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),  # glob over rule ids
    Column("user", String(200), nullable=False),  # glob over users
    Column("reason", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

#: keys whose state is more than their events: a windowed rule's key with an episode (count and
#: values of a firing finding), or a non-windowed kind's key (spike buckets)
rule_windows = Table(
    "rule_windows", metadata,
    Column("rule", String(200), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("state", JSON, nullable=False),
)

#: the events each commit added to a windowed rule's windows (JSON list of [key, ts] or
#: [key, ts, values]); restoring replays them in id order. A row goes once its newest event has
#: drained from the rule's window, so the table holds about one window of events, not one row per key.
#: ``owner``: the source names (JSON list) of the daemon that logged the events (``window_owner``):
#: a daemon restores, drains and drops only rows sharing a source with it ('' = before owners: all)
rule_window_log = Table(
    "rule_window_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("logic", String(64), nullable=False),
    Column("newest_ts", Float, nullable=False),
    Column("entries", Text, nullable=False),
    Column("owner", Text, nullable=False, server_default=""),
    Index("rule_window_log_drain", "rule", "newest_ts"),
)


# --- notification deliveries (notify/routing.py decides them; store/deliveries.py queries them) ---
#: an outbox row says WHAT happened (a finding opened or reopened); a delivery says WHERE it goes:
#: one row per (outbox row, route, channel), unique, so routing twice (or a crash while routing)
#: cannot make two. status: pending (immediate, due at next_attempt_at) | queued (waits for its
#: route's digest) | sent | dead (gave up; last_error says why).
deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("outbox_id", Integer, ForeignKey("outbox.id"), nullable=False),
    Column("finding_id", Integer, ForeignKey("findings.id"), nullable=False, index=True),
    Column("event", String(20), nullable=False),         # the outbox row's: opened | reopened
    Column("route", String(200), nullable=False),
    Column("channel", String(220), nullable=False),      # "email" or "webhook:<name>"
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("message_id", Text),
    Column("digest_id", Integer),                        # the digest that carried it (queued ones)
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("outbox_id", "route", "channel", name="deliveries_one_per_route_channel"),
)
Index("deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)
Index("deliveries_route", deliveries.c.route, deliveries.c.channel, deliveries.c.status)
Index("deliveries_sent", deliveries.c.status, deliveries.c.sent_at)  # retention: sent before a cut-off

#: one row per digest sent: per route AND channel, so a failing webhook never holds back (or
#: repeats) the email digest of the same route; "updated since the last digest" reads sent_at
digests = Table(
    "digests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("route", String(200), nullable=False),
    Column("channel", String(220), nullable=False),
    Column("seq", Integer, nullable=False),              # 1, 2, ... per route and channel
    Column("message_id", Text, nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
    UniqueConstraint("route", "channel", "seq", name="digests_one_per_seq"),
)

#: what a digest said about each finding, so the next one can say "136 -> 300"
digest_items = Table(
    "digest_items", metadata,
    Column("digest_id", Integer, ForeignKey("digests.id"), primary_key=True),
    Column("finding_id", Integer, ForeignKey("findings.id"), primary_key=True),
    Column("change", String(20), nullable=False),        # opened | reopened | updated
    Column("count", Integer, nullable=False),
    Column("distinct_values", Integer, nullable=False),
)


# --- usage statistics (usagewatch/usage/ accumulates them; store/usage.py adds and reads them) ---
#: histogram columns of usage_queries: h00 counts queries under 1 ms, hNN (1..26) those in
#: [2**(NN-1), 2**NN) ms, h27 those of 2**26 ms (18.6 h) or more (usage/aggregate.py BUCKETS)
USAGE_BUCKETS = 28
HIST_COLUMNS = tuple(f"h{i:02d}" for i in range(USAGE_BUCKETS))

#: one row per time bucket, user and query fingerprint: grain "h" (an hour of event time) for
#: recent data, "d" (a UTC day) once retention has rolled the hours up (``usage.hourly_for``).
#: Every value is a sum, so rows are added to (INSERT ... ON CONFLICT DO UPDATE) and rolled up
#: by addition; the cost is not stored but computed from time and bytes when read, so a new
#: price applies to all of history alike. ``user`` is "" when the log names none.
usage_queries = Table(
    "usage_queries", metadata,
    Column("grain", String(1), primary_key=True),
    Column("bucket", UTCDateTime, primary_key=True),
    Column("user", String(200), primary_key=True),
    Column("fingerprint", String(64), primary_key=True),
    Column("queries", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("timed", BigInteger, nullable=False),        # queries whose duration is known
    Column("duration_ms", Float, nullable=False),
    Column("max_ms", Float, nullable=False),            # the slowest query (merged by max, not added)
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    *(Column(name, Integer, nullable=False) for name in HIST_COLUMNS),
)
Index("usage_queries_user", usage_queries.c.user)  # first seen: one user's earliest row
Index("usage_queries_fingerprint", usage_queries.c.fingerprint)  # who runs a fingerprint; shapes still used

#: queries per time bucket, table read and user (a query reading three tables counts for each)
usage_tables = Table(
    "usage_tables", metadata,
    Column("grain", String(1), primary_key=True),
    Column("bucket", UTCDateTime, primary_key=True),
    Column("table", String(300), primary_key=True),
    Column("user", String(200), primary_key=True),
    Column("queries", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
)

#: what a fingerprint looks like (its normalized SQL), for reports; deleted with its last usage row
usage_shapes = Table(
    "usage_shapes", metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("normalized_sql", Text, nullable=False),
    Column("kind", String(40), nullable=False),
)
