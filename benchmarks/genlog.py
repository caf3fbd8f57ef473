"""A seeded generator of realistic warehouse query logs, at any size, for benchmarks (issue 7).

    python benchmarks/genlog.py --queries 1000000 --format postgres-csvlog --seed 1 --out big.csv
        [--unique-fraction 0.02] [--all-unique] [--rate 500]

Formats: ``postgres-csvlog``, ``postgres-jsonlog``, ``postgres-stderr`` (``log_line_prefix`` =
``STDERR_PREFIX``) and ``mysql-slow`` (MySQL 8.0 with ``long_query_time=0`` and
``log_slow_extra=ON``). The same seed gives the same sequence of queries (users, SQL, literals,
times, durations, errors) in every format: the workload is drawn from one ``random.Random(seed)``
and the writers never draw from it. That is what lets ``compare.py`` give pgBadger the PostgreSQL
log and pt-query-digest the MySQL slow log of one workload.

Why the logs look the way they do:

* PostgreSQL as configured for query analysis (what pgBadger asks for):
  ``log_min_duration_statement = 0``, ``log_connections = on``, ``log_disconnections = on``,
  ``lc_messages = 'C'``. A simple-protocol query is ONE record ``duration: X ms  statement: SQL``;
  an extended-protocol one (JDBC, DBeaver, an API service) is ``parse`` (when the statement is
  prepared), ``bind`` and ``execute`` records, the last two with ``DETAIL:  parameters: $1 = '42'``.
  Only the execute is an execution: pgBadger, pt-query-digest and usagewatch all count it once.
  A failing query has no duration record, only ``ERROR`` with the statement text, which pgBadger
  counts as an error, not a query (usagewatch counts it as a failed query).
* MySQL 8.0 slow log: ``# Time:`` (every entry), ``# User@Host: u[u] @  [ip]  Id: n``,
  ``# Query_time`` with the ``log_slow_extra`` fields (``Errno`` marks failed statements),
  ``use db;`` when the database written last changes, ``SET timestamp=start;``, the statement.
* The workload: ~30 warehouse tables, 2,000 users with a Zipf-like activity, service accounts
  (``bi_tool``, ``looker``, ``etl``, ``dbt``, ``reporting_api``) doing much of the work, ~300
  query shapes with a heavy-tailed popularity, each run with fresh literal values; multi-line
  templates; ``--unique-fraction`` of queries with a shape never seen before (random column
  subsets, predicates and joins, plus a unique alias so the *normalized* shape differs);
  ~1% errors; and the patterns the stock rules look for: loops over ids, dashboards re-running
  identical queries, SELECT *, leading-wildcard LIKE, huge IN lists, ORDER BY without LIMIT,
  cartesian joins, NOT IN subqueries, full scans, functions on filtered columns, open date ranges,
  UNION, long-running queries, bursts of failures, and one usage spike (it needs three days of
  history, so only logs that span more than three days of log time have it: e.g. ``--rate 2``).
* Log time advances by exponential gaps at ``--rate`` queries per second from a fixed start
  (2026-11-02 08:00:00 UTC); a log is ordered by write time, the end of each query.

Memory stays constant: records are written in chunks as they are made. The counts the tools
should report are printed on stderr at the end and saved next to the log in ``OUT.meta.json``.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import re
import string
import sys
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # C-accelerated
from pathlib import Path
from typing import Callable, TextIO

GENERATOR_VERSION = 1
"""Bump when the output for the same arguments changes, so ``compare.py`` regenerates logs."""

FORMATS = ("postgres-csvlog", "postgres-jsonlog", "postgres-stderr", "mysql-slow")
STDERR_PREFIX = "%m [%p] %q%u@%d "
"""The ``log_line_prefix`` of the stderr log; pass it to usagewatch (source option) and pgBadger."""
START = 1793606400  # 2026-11-02 08:00:00 UTC, a Monday
DAY = 86400
HISTORY_DAYS = 90  # date literals fall in the 90 days before START

# --------------------------------------------------------------------------------------------
# The fake warehouse: tables, their columns and the kind of value each holds
# --------------------------------------------------------------------------------------------

LISTS: dict[str, tuple[str, ...]] = {
    "order_status": ("pending", "paid", "shipped", "delivered", "cancelled", "refunded"),
    "pay_status": ("authorized", "captured", "failed", "refunded"),
    "pay_method": ("card", "paypal", "bank_transfer", "gift_card", "apple_pay"),
    "sub_status": ("trial", "active", "past_due", "cancelled"),
    "ticket_status": ("open", "pending", "solved", "closed"),
    "priority": ("low", "normal", "high", "urgent"),
    "countries": ("US", "DE", "FR", "GB", "NL", "ES", "IT", "SE", "PL", "BR", "CA", "JP", "AU", "IN"),
    "segments": ("consumer", "smb", "mid_market", "enterprise"),
    "currencies": ("USD", "EUR", "GBP", "JPY", "BRL"),
    "regions": ("north", "south", "east", "west", "central"),
    "carriers": ("ups", "fedex", "dhl", "usps", "postnl"),
    "devices": ("desktop", "mobile", "tablet"),
    "platforms": ("ios", "android", "web"),
    "channels": ("search", "social", "email", "display", "affiliate"),
    "event_types": ("page_view", "add_to_cart", "checkout_start", "purchase", "signup", "login",
                    "search", "wishlist_add", "coupon_apply", "logout"),
    "pages": ("checkout", "cart", "search", "product", "login", "account", "orders", "help",
              "promo", "category", "wishlist", "compare", "gift", "returns"),
    "reasons": ("damaged", "wrong_size", "late", "not_as_described", "changed_mind"),
    "plans": ("basic", "plus", "pro", "team", "enterprise"),
    "names": ("Smith", "Garcia", "Muller", "Rossi", "Kowalski", "Tanaka", "Dubois", "Silva",
              "O''Brien", "Jensen", "Novak", "Haddad"),
    "departments": ("sales", "marketing", "finance", "support", "engineering", "operations"),
    "codes": ("WELCOME10", "SPRING24", "VIP", "FREESHIP", "BLACKFRIDAY", "LOYAL5"),
}

# column kinds: pk, fk:<table>, ts, date, money, int:<lo>:<hi>, cat:<list>, text:<list>, email, url, bool
TABLES: dict[str, tuple[int, tuple[tuple[str, str], ...]]] = {
    "customers": (2_000_000, (("id", "pk"), ("email", "email"), ("last_name", "text:names"),
                              ("country", "cat:countries"), ("segment", "cat:segments"),
                              ("created_at", "ts"), ("lifetime_value", "money"))),
    "addresses": (2_500_000, (("id", "pk"), ("customer_id", "fk:customers"), ("city", "text:names"),
                              ("postcode", "int:1000:99999"), ("country", "cat:countries"))),
    "orders": (40_000_000, (("id", "pk"), ("customer_id", "fk:customers"), ("store_id", "fk:stores"),
                            ("status", "cat:order_status"), ("total", "money"),
                            ("currency", "cat:currencies"), ("created_at", "ts"), ("shipped_at", "ts"))),
    "order_items": (120_000_000, (("id", "pk"), ("order_id", "fk:orders"), ("product_id", "fk:products"),
                                  ("quantity", "int:1:12"), ("unit_price", "money"), ("discount", "money"))),
    "products": (250_000, (("id", "pk"), ("sku", "int:100000:999999"), ("category_id", "fk:categories"),
                           ("supplier_id", "fk:suppliers"), ("price", "money"), ("active", "bool"),
                           ("created_at", "ts"))),
    "categories": (800, (("id", "pk"), ("parent_id", "fk:categories"), ("department", "cat:departments"))),
    "suppliers": (3_000, (("id", "pk"), ("country", "cat:countries"), ("rating", "int:1:5"),
                          ("created_at", "ts"))),
    "stores": (400, (("id", "pk"), ("region", "cat:regions"), ("country", "cat:countries"),
                     ("opened_at", "ts"))),
    "warehouses": (40, (("id", "pk"), ("region", "cat:regions"), ("country", "cat:countries"))),
    "inventory": (5_000_000, (("id", "pk"), ("product_id", "fk:products"), ("warehouse_id", "fk:warehouses"),
                              ("quantity", "int:0:5000"), ("updated_at", "ts"))),
    "shipments": (35_000_000, (("id", "pk"), ("order_id", "fk:orders"), ("carrier", "cat:carriers"),
                               ("shipped_at", "ts"), ("delivered_at", "ts"), ("weight_kg", "money"))),
    "payments": (42_000_000, (("id", "pk"), ("order_id", "fk:orders"), ("method", "cat:pay_method"),
                              ("amount", "money"), ("status", "cat:pay_status"), ("paid_at", "ts"))),
    "refunds": (900_000, (("id", "pk"), ("payment_id", "fk:payments"), ("amount", "money"),
                          ("reason", "cat:reasons"), ("created_at", "ts"))),
    "invoices": (6_000_000, (("id", "pk"), ("customer_id", "fk:customers"), ("amount", "money"),
                             ("due_date", "ts"), ("status", "cat:pay_status"))),
    "events": (3_000_000_000, (("id", "pk"), ("customer_id", "fk:customers"), ("event_type", "cat:event_types"),
                               ("event_time", "ts"), ("page_url", "url"), ("device", "cat:devices"),
                               ("session_id", "fk:web_sessions"))),
    "page_views": (1_500_000_000, (("id", "pk"), ("visitor_id", "fk:customers"), ("page_url", "url"),
                                   ("referrer", "url"), ("viewed_at", "ts"), ("time_on_page_ms", "int:10:600000"))),
    "app_events": (900_000_000, (("id", "pk"), ("customer_id", "fk:customers"), ("event_type", "cat:event_types"),
                                 ("created_at", "ts"), ("platform", "cat:platforms"))),
    "web_sessions": (200_000_000, (("id", "pk"), ("customer_id", "fk:customers"), ("started_at", "ts"),
                                   ("ended_at", "ts"), ("device", "cat:devices"))),
    "campaigns": (5_000, (("id", "pk"), ("channel", "cat:channels"), ("budget", "money"), ("started_at", "ts"))),
    "ad_clicks": (80_000_000, (("id", "pk"), ("campaign_id", "fk:campaigns"), ("clicked_at", "ts"),
                               ("cost", "money"), ("country", "cat:countries"))),
    "fact_sales": (600_000_000, (("id", "pk"), ("date_key", "int:20240101:20261101"), ("store_id", "fk:stores"),
                                 ("product_id", "fk:products"), ("units", "int:1:50"), ("revenue", "money"),
                                 ("cost", "money"))),
    "fact_inventory_daily": (400_000_000, (("id", "pk"), ("date_key", "int:20240101:20261101"),
                                           ("product_id", "fk:products"), ("warehouse_id", "fk:warehouses"),
                                           ("on_hand", "int:0:5000"))),
    "dim_date": (4_000, (("id", "pk"), ("date_key", "int:20200101:20301231"), ("cal_year", "int:2020:2030"),
                         ("cal_month", "int:1:12"), ("iso_week", "int:1:53"))),
    "employees": (4_000, (("id", "pk"), ("department", "cat:departments"), ("hired_at", "ts"),
                          ("salary", "money"))),
    "support_tickets": (3_000_000, (("id", "pk"), ("customer_id", "fk:customers"), ("priority", "cat:priority"),
                                    ("status", "cat:ticket_status"), ("created_at", "ts"), ("closed_at", "ts"))),
    "subscriptions": (700_000, (("id", "pk"), ("customer_id", "fk:customers"), ("plan", "cat:plans"),
                                ("status", "cat:sub_status"), ("started_at", "ts"), ("cancelled_at", "ts"))),
    "coupons": (20_000, (("id", "pk"), ("code", "cat:codes"), ("discount_pct", "int:5:50"),
                         ("valid_until", "ts"))),
    "reviews": (9_000_000, (("id", "pk"), ("product_id", "fk:products"), ("customer_id", "fk:customers"),
                            ("rating", "int:1:5"), ("created_at", "ts"))),
    "returns": (1_200_000, (("id", "pk"), ("order_item_id", "fk:order_items"), ("reason", "cat:reasons"),
                            ("created_at", "ts"))),
    "currency_rates": (20_000, (("id", "pk"), ("currency", "cat:currencies"), ("rate_date", "ts"),
                                ("rate", "money"))),
}
LARGE = ("events", "page_views", "app_events", "fact_sales", "fact_inventory_daily")
"""Tables the stock rules call large (``fact_*``, ``events``, ``*_events``, ``page_views``)."""

# --------------------------------------------------------------------------------------------
# Templates: SQL with {kind:args} placeholders, compiled once into text parts + value makers
# --------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([a-z+]+)(?::([^}]*))?\}")
Maker = Callable[[random.Random, list[int]], tuple[str, str]]
"""(rng, state) -> (inline SQL literal, bind parameter text). ``state[0]`` carries the last
``{date}`` (a day number) to the ``{date+}`` after it, so ranges are never inverted."""


def _day_text(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(START - day * DAY))


_DAYS = [_day_text(d) for d in range(HISTORY_DAYS + 40)]  # day n = n days before START


def _maker(kind: str, arg: str | None) -> tuple[Maker, bool]:
    """The value maker of one placeholder, and whether it stays inline in extended-protocol SQL
    (IN lists: drivers and people send them as literals, and a list of $n would change the shape
    with its length)."""
    if kind == "id":
        n = TABLES[arg or "orders"][0]

        def make_id(rng: random.Random, st: list[int]) -> tuple[str, str]:
            s = str(int(rng.random() * n) + 1)
            return s, s
        return make_id, False
    if kind == "int":
        lo, hi = (int(x) for x in (arg or "1:100").split(":"))

        def make_int(rng: random.Random, st: list[int]) -> tuple[str, str]:
            s = str(rng.randint(lo, hi))
            return s, s
        return make_int, False
    if kind == "money":
        lo, hi = (float(x) for x in (arg or "1:2000").split(":"))

        def make_money(rng: random.Random, st: list[int]) -> tuple[str, str]:
            s = f"{lo + rng.random() * (hi - lo):.2f}"
            return s, s
        return make_money, False
    if kind == "date":
        def make_date(rng: random.Random, st: list[int]) -> tuple[str, str]:
            d = int(rng.random() * HISTORY_DAYS) + 1
            st[0] = d
            s = _DAYS[d]
            return f"'{s}'", s
        return make_date, False
    if kind == "date+":
        def make_date_after(rng: random.Random, st: list[int]) -> tuple[str, str]:
            d = max(0, st[0] - rng.choice((1, 1, 1, 7, 7, 30)))
            s = _DAYS[d]
            return f"'{s}'", s
        return make_date_after, False
    if kind in ("str", "wild", "prefix"):
        values = LISTS[arg or "countries"]
        fmt = {"str": "{}", "wild": "%{}%", "prefix": "{}%"}[kind]
        texts = [fmt.format(v) for v in values]
        params = [t.replace("''", "'") for t in texts]

        def make_str(rng: random.Random, st: list[int]) -> tuple[str, str]:
            i = int(rng.random() * len(texts))
            return f"'{texts[i]}'", params[i]
        return make_str, False
    if kind == "email":
        def make_email(rng: random.Random, st: list[int]) -> tuple[str, str]:
            s = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LISTS['names']).lower().replace(chr(39), '')}" \
                f"{rng.randint(1, 999)}@example.com"
            return f"'{s}'", s
        return make_email, False
    if kind == "bool":
        def make_bool(rng: random.Random, st: list[int]) -> tuple[str, str]:
            return ("true", "t") if rng.random() < 0.8 else ("false", "f")
        return make_bool, False
    if kind == "in":
        table, lo, hi = (arg or "orders:2:40").split(":")
        n, a, b = TABLES[table][0], int(lo), int(hi)

        def make_in(rng: random.Random, st: list[int]) -> tuple[str, str]:
            k = rng.randint(a, b)
            r = rng.random
            s = ", ".join([str(int(r() * n) + 1) for _ in range(k)])
            return s, s
        return make_in, True
    raise ValueError(f"unknown placeholder kind {kind!r}")


@dataclass(eq=False)
class Template:
    """One query shape: text parts around value slots, who runs it and how long it takes."""

    text: str
    audience: str  # analyst | bi | etl | api | habit
    kind: str  # SELECT | INSERT | UPDATE | DELETE (the command tag)
    tables: tuple[str, ...]
    mu: float  # log of the median duration in ms
    sigma: float = 1.0
    rows: int = 1  # typical rows returned
    users: list[User] = field(default_factory=list)  # habit templates: the users who run them
    parts: list[str] = field(default_factory=list, repr=False)
    makers: list[Maker] = field(default_factory=list, repr=False)
    inline: list[bool] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        pos = 0
        for m in _PLACEHOLDER.finditer(self.text):
            self.parts.append(self.text[pos:m.start()])
            mk, inl = _maker(m.group(1), m.group(2))
            self.makers.append(mk)
            self.inline.append(inl)
            pos = m.end()
        self.parts.append(self.text[pos:])

    def render(self, rng: random.Random, extended: bool) -> tuple[str, str | None, tuple[str, ...]]:
        """(inline SQL, extended-protocol SQL with $n or None, bind values)."""
        parts = self.parts
        st = [1]
        if not extended:
            out = [parts[0]]
            for i, mk in enumerate(self.makers):
                out.append(mk(rng, st)[0])
                out.append(parts[i + 1])
            return "".join(out), None, ()
        out, ext, params = [parts[0]], [parts[0]], []
        for i, mk in enumerate(self.makers):
            lit, par = mk(rng, st)
            out.append(lit)
            if self.inline[i]:
                ext.append(lit)
            else:
                params.append(par)
                ext.append(f"${len(params)}")
            out.append(parts[i + 1])
            ext.append(parts[i + 1])
        return "".join(out), "".join(ext), tuple(params)


def _multiline(sql: str, indent: str) -> str:
    """Lay a one-line SELECT out over lines the way people and BI tools write it."""
    for kw in (" FROM ", " JOIN ", " LEFT JOIN ", " WHERE ", " GROUP BY ", " ORDER BY ", " LIMIT ", " HAVING "):
        sql = sql.replace(kw, "\n" + indent + kw.strip() + " ")
    return sql.replace(" AND ", "\n" + indent + "  AND ")


# --------------------------------------------------------------------------------------------
# Procedural query shapes
# --------------------------------------------------------------------------------------------


def _cols(table: str) -> tuple[tuple[str, str], ...]:
    return TABLES[table][1]


def _value(kind: str) -> str:
    """The placeholder for a literal compared with a column of ``kind``."""
    if kind == "pk":
        return "{id:orders}"
    if kind.startswith("fk:"):
        return "{id:" + kind[3:] + "}"
    if kind == "ts":
        return "{date}"
    if kind == "money":
        return "{money}"
    if kind.startswith("int:"):
        return "{" + kind + "}"
    if kind.startswith(("cat:", "text:")):
        return "{str:" + kind.split(":", 1)[1] + "}"
    if kind == "email":
        return "{email}"
    if kind == "url":
        return "{prefix:pages}"
    return "{bool}"


def _of(table: str, prefix: str) -> list[tuple[str, str]]:
    return [c for c in _cols(table) if c[1].startswith(prefix)]


def _pick(rng: random.Random, items: list[tuple[str, str]], lo: int, hi: int) -> list[tuple[str, str]]:
    k = min(len(items), rng.randint(lo, hi))
    return rng.sample(items, k)


def _build_shape(rng: random.Random) -> tuple[str, str, str, tuple[str, ...], float, int]:
    """One random catalog shape: (text, audience, command tag, tables, mu, rows)."""
    names = list(TABLES)
    t = rng.choice(names)
    cols = list(_cols(t))
    non_pk = [c for c in cols if c[1] != "pk"]
    ts_cols = _of(t, "ts")
    cats = _of(t, "cat:")
    nums = [c for c in cols if c[1] == "money" or c[1].startswith("int:")]
    fks = _of(t, "fk:")
    big = t in LARGE
    r = rng.random()
    sel = ", ".join(c for c, _ in _pick(rng, non_pk, 2, 6))
    if r < 0.13 and not big:  # point lookup
        return (f"SELECT id, {sel} FROM {t} WHERE id = {{id:{t}}}", rng.choice(("analyst", "analyst", "api", "bi")),
                "SELECT", (t,), math.log(0.4), 1)
    if r < 0.28 and fks:  # by foreign key, newest first
        fk, kind = rng.choice(fks)
        where = f"{fk} = {_value(kind)}"
        order = ""
        if ts_cols:
            tc = rng.choice(ts_cols)[0]
            if rng.random() < 0.6:
                where += f" AND {tc} >= {{date}} AND {tc} < {{date+}}"
            order = f" ORDER BY {tc} DESC"
        return (f"SELECT {sel} FROM {t} WHERE {where}{order} LIMIT {{int:10:200}}",
                rng.choice(("analyst", "api", "bi", "analyst")), "SELECT", (t,), math.log(3 if big else 1.2), 25)
    if r < 0.48 and cats and nums and ts_cols:  # aggregate over a period
        cat = rng.choice(cats)[0]
        num = rng.choice(nums)[0]
        tc = rng.choice(ts_cols)[0]
        fn = rng.choice(("sum", "avg", "max", "min"))
        extra = ""
        others = [c for c in cats if c[0] != cat]
        if others and rng.random() < 0.5:
            oc, ok = rng.choice(others)
            extra = f" AND {oc} = {_value(ok)}"
        return (f"SELECT {cat}, count(*) AS n, {fn}({num}) AS {fn}_{num} FROM {t} "
                f"WHERE {tc} >= {{date}} AND {tc} < {{date+}}{extra} GROUP BY {cat} ORDER BY n DESC",
                rng.choice(("analyst", "bi", "bi", "analyst")), "SELECT", (t,), math.log(400 if big else 40), 8)
    if r < 0.68 and fks:  # join to a referenced table
        fk, kind = rng.choice(fks)
        ref = kind[3:]
        if ref == t:
            return _build_shape(rng)
        a_cols = ", ".join(f"a.{c}" for c, _ in _pick(rng, non_pk, 1, 4))
        ref_cols = [c for c in _cols(ref) if c[1] != "pk"]
        b_cols = ", ".join(f"b.{c}" for c, _ in _pick(rng, ref_cols, 1, 3))
        conds = []
        if ts_cols:
            tc = rng.choice(ts_cols)[0]
            conds.append(f"a.{tc} >= {{date}} AND a.{tc} < {{date+}}")
        rcats = [c for c in ref_cols if c[1].startswith("cat:")]
        if rcats:
            rc, rk = rng.choice(rcats)
            conds.append(f"b.{rc} = {_value(rk)}")
        if not conds:
            conds.append(f"a.{fk} = {_value(kind)}")
        limit = " LIMIT {int:100:5000}" if rng.random() < 0.5 else ""
        return (f"SELECT {a_cols}, {b_cols} FROM {t} a JOIN {ref} b ON b.id = a.{fk} "
                f"WHERE {' AND '.join(conds)}{limit}", rng.choice(("analyst", "bi")), "SELECT", (t, ref),
                math.log(900 if big else 60), 200)
    if r < 0.75:  # IN list of ids
        key, kind = rng.choice(fks) if fks and rng.random() < 0.5 else ("id", f"fk:{t}")
        return (f"SELECT {sel} FROM {t} WHERE {key} IN ({{in:{kind[3:]}:2:60}})", rng.choice(("analyst", "analyst", "api")),
                "SELECT", (t,), math.log(2), 20)
    if r < 0.80 and ts_cols:  # daily series
        tc = rng.choice(ts_cols)[0]
        agg = f"sum({rng.choice(nums)[0]})" if nums else "count(DISTINCT id)"
        return (f"SELECT date({tc}) AS day, count(*) AS n, {agg} AS total FROM {t} "
                f"WHERE {tc} >= {{date}} AND {tc} < {{date+}} GROUP BY date({tc}) ORDER BY day",
                rng.choice(("bi", "analyst")), "SELECT", (t,), math.log(700 if big else 50), 30)
    if r < 0.85 and fks and ts_cols:  # CTE, always laid out over lines
        fk, kind = rng.choice(fks)
        tc = rng.choice(ts_cols)[0]
        num = rng.choice(nums)[0] if nums else "id"
        return (f"WITH recent AS (\n    SELECT {fk}, count(*) AS n, sum({num}) AS total\n      FROM {t}\n"
                f"     WHERE {tc} >= {{date}} AND {tc} < {{date+}}\n     GROUP BY {fk}\n)\n"
                f"SELECT {fk}, n, total\n  FROM recent\n WHERE n > {{int:1:20}}\n ORDER BY total DESC\n"
                f" LIMIT {{int:10:100}}", rng.choice(("analyst", "bi")), "SELECT", (t,),
                math.log(1200 if big else 90), 50)
    if r < 0.90 and not big:  # ETL: insert one row
        ins = [c for c in non_pk if not c[1].startswith("text:")]
        chosen = _pick(rng, ins, max(2, len(ins) - 2), len(ins))
        return (f"INSERT INTO {t} ({', '.join(c for c, _ in chosen)}) VALUES "
                f"({', '.join(_value(k) for _, k in chosen)})", "etl", "INSERT", (t,), math.log(0.8), 0)
    if r < 0.94 and cats and not big:  # ETL: update by id
        c, k = rng.choice(cats)
        return (f"UPDATE {t} SET {c} = {_value(k)} WHERE id = {{id:{t}}}", "etl", "UPDATE", (t,), math.log(0.9), 0)
    if r < 0.96 and ts_cols and not big:  # ETL: purge old rows
        tc = rng.choice(ts_cols)[0]
        return (f"DELETE FROM {t} WHERE {tc} < {{date}}", "etl", "DELETE", (t,), math.log(300), 0)
    if fks:  # EXISTS semi-join
        fk, kind = rng.choice(fks)
        ref = kind[3:]
        rc = [c for c in _cols(ref) if c[1].startswith("cat:")]
        cond = f" AND r.{rc[0][0]} = {_value(rc[0][1])}" if rc else ""
        return (f"SELECT r.id FROM {ref} r WHERE EXISTS (SELECT 1 FROM {t} x WHERE x.{fk} = r.id){cond} "
                f"LIMIT {{int:10:500}}", "analyst", "SELECT", (ref, t), math.log(200), 50)
    return _build_shape(rng)


# The shapes the stock rules look for; each is run by a few "habit" users.
# (name, weight relative to an average catalog shape, text, command tag, tables, mu, sigma, rows)
PATTERNS: tuple[tuple[str, float, str, str, tuple[str, ...], float, float, int], ...] = (
    ("select-star-events", 1.0, "SELECT * FROM events WHERE customer_id = {id:customers} "
     "AND event_time >= {date} AND event_time < {date+}", "SELECT", ("events",), math.log(800), 1.0, 40),
    ("select-star-page-views", 0.6, "SELECT *\n  FROM page_views\n WHERE viewed_at >= {date}\n"
     "   AND viewed_at < {date+}\n LIMIT {int:50:500}", "SELECT", ("page_views",), math.log(300), 1.0, 200),
    ("leading-wildcard", 0.8, "SELECT id, page_url, viewed_at FROM page_views WHERE page_url LIKE {wild:pages} "
     "AND viewed_at >= {date} AND viewed_at < {date+}", "SELECT", ("page_views",), math.log(5000), 0.8, 300),
    ("leading-wildcard-events", 0.5, "SELECT customer_id, count(*) AS n FROM app_events "
     "WHERE event_type LIKE {wild:event_types} GROUP BY customer_id", "SELECT", ("app_events",),
     math.log(9000), 0.8, 1000),
    ("huge-in-list", 0.05, "SELECT id, status, total FROM orders WHERE id IN ({in:orders:1000:2500})",
     "SELECT", ("orders",), math.log(150), 0.6, 1500),
    ("order-by-without-limit", 0.3, "SELECT date_key, store_id, product_id, revenue FROM fact_sales "
     "ORDER BY revenue DESC", "SELECT", ("fact_sales",), math.log(60000), 0.5, 100000),
    ("cartesian-join", 0.3, "SELECT o.id, c.email FROM orders o, customers c WHERE o.total > {money:500:5000}",
     "SELECT", ("orders", "customers"), math.log(20000), 1.0, 50000),
    ("cartesian-three", 0.2, "SELECT s.region, p.category_id, sum(f.revenue) AS revenue\n"
     "  FROM fact_sales f, stores s, products p\n WHERE f.date_key >= {int:20260101:20261101}\n"
     "   AND s.region = {str:regions}\n GROUP BY s.region, p.category_id", "SELECT",
     ("fact_sales", "stores", "products"), math.log(40000), 0.7, 200),
    ("not-in-subquery", 0.5, "SELECT id, email FROM customers WHERE country = {str:countries} "
     "AND id NOT IN (SELECT customer_id FROM orders WHERE created_at >= {date})", "SELECT",
     ("customers", "orders"), math.log(3000), 0.8, 500),
    ("full-scan", 0.4, "SELECT count(*) FROM events", "SELECT", ("events",), math.log(30000), 0.5, 1),
    ("full-scan-group", 0.4, "SELECT event_type, count(*) AS n FROM app_events GROUP BY event_type",
     "SELECT", ("app_events",), math.log(20000), 0.5, 10),
    ("function-on-column", 0.6, "SELECT count(*) FROM events WHERE date(event_time) = {date}", "SELECT",
     ("events",), math.log(15000), 0.6, 1),
    ("function-on-column-lower", 0.4, "SELECT id, viewed_at FROM page_views WHERE lower(page_url) = {str:pages}",
     "SELECT", ("page_views",), math.log(12000), 0.6, 40),
    ("unbounded-date-range", 0.7, "SELECT event_type, count(*) AS n FROM events WHERE event_time >= {date} "
     "GROUP BY event_type", "SELECT", ("events",), math.log(9000), 0.7, 10),
    ("union", 0.5, "SELECT email FROM customers WHERE country = {str:countries}\nUNION\n"
     "SELECT c.email FROM customers c JOIN subscriptions s ON s.customer_id = c.id WHERE s.status = {str:sub_status}",
     "SELECT", ("customers", "subscriptions"), math.log(2500), 0.8, 3000),
    ("long-running", 0.15, "SELECT s.region, c.segment, sum(f.revenue) AS revenue, sum(f.cost) AS cost\n"
     "  FROM fact_sales f\n  JOIN stores s ON s.id = f.store_id\n  JOIN products p ON p.id = f.product_id\n"
     "  JOIN customers c ON c.country = s.country\n WHERE f.date_key >= {int:20240101:20250101}\n"
     "   AND f.date_key < {int:20260101:20261101}\n GROUP BY s.region, c.segment", "SELECT",
     ("fact_sales", "stores", "products", "customers"), math.log(540_000), 0.3, 20),
)

FIRST_NAMES = (
    "alice", "bob", "carla", "dmitri", "emma", "farid", "grace", "hiro", "ines", "jonas", "kim", "lena",
    "marco", "nadia", "oscar", "priya", "quinn", "rosa", "sam", "tariq", "uma", "victor", "wen", "xavier",
    "yara", "zoe", "anton", "bea", "chen", "dana", "elif", "femi", "gus", "hana", "ivan", "jade", "kofi",
    "lars", "mia", "nils", "olga", "paul", "rahul", "sara", "tom", "ulla", "vera", "will", "yusuf", "zara",
    "amir", "bianca", "cyril", "delia", "eric", "fiona", "goran", "helen", "igor", "julia", "karl", "luis",
    "maya", "noah", "omar", "petra", "raj", "sofia", "timo", "ugo", "vlad", "wanda", "yosef", "zeno",
    "arjun", "bruno", "clara", "diego", "eva", "felix", "gina", "hugo", "iris", "jan", "kira", "leo",
    "mona", "nina", "otto", "pia", "rene", "sven", "tara", "ursula", "vik", "wim", "yoko", "zhen",
)

# --------------------------------------------------------------------------------------------
# Users and sessions
# --------------------------------------------------------------------------------------------

APPS = (  # (application_name, protocol) for people: simple, extended unnamed, extended named
    ("psql", "simple"), ("DBeaver 24.2.0 - SQLEditor", "unnamed"), ("Jupyter", "simple"),
    ("DataGrip 2024.3", "unnamed"), ("pgAdmin 4 - CONN", "simple"),
)


@dataclass(eq=False)
class User:
    """A database user; the protocol follows the client, which is what decides whether its
    queries are logged as one ``statement:`` or as parse/bind/execute with bind values."""

    name: str
    app: str
    protocol: str  # simple | unnamed (extended, unnamed statements) | named (JDBC server-prepared)
    database: str
    ip: str
    session_len: tuple[int, int]  # queries per session
    session: Session | None = None
    left: int = 0


@dataclass(eq=False)
class Session:
    """One connection: PostgreSQL logs connect/disconnect and numbers its lines per session, named
    prepared statements live per session, and MySQL's ``Id:`` is the connection's."""

    user: User
    pid: int
    sid: str  # PostgreSQL session id: start time and pid in hex
    started: float
    start_text: str
    port: int
    backend: int
    thread: int  # MySQL connection id
    line: int = 0
    lxid: int = 0
    named: dict[int, str] = field(default_factory=dict)  # template id -> prepared statement name


@dataclass(eq=False, slots=True)
class Query:
    """One execution, everything every format needs to write it."""

    t: float  # log (write) time = end of the execution, epoch seconds
    dur: float  # ms
    session: Session
    sql: str  # with literals inline: simple protocol, errors, MySQL
    esql: str | None  # extended protocol text with $n, None for the simple protocol
    params: tuple[str, ...]
    stmt: str  # prepared statement name: <unnamed> or S_n
    parse: bool  # log a parse record first (unnamed: every time; named: first use in the session)
    pdur: float
    bdur: float
    tag: str  # command tag: SELECT, INSERT, ...
    rows: int
    examined: int
    error: Error | None = None


@dataclass(eq=False, slots=True)
class Error:
    """A failure as each server reports it (PostgreSQL SQLSTATE + message, MySQL errno)."""

    sqlstate: str
    message: str
    pos: int | None  # PostgreSQL cursor position (1-based), None when it has none
    mysql_errno: int
    ps: str  # PostgreSQL's command tag while failing


def _typo(name: str) -> str:
    """A stable misspelling of a table name (two letters swapped, or one dropped)."""
    if len(name) > 4 and name[2] != name[3]:
        return name[:2] + name[3] + name[2] + name[4:]
    return name[:-1]


def failing(rng: random.Random, sql: str, tables: tuple[str, ...], tag: str) -> tuple[str, Error]:
    """(failing SQL, Error): a misspelled table, a typo'd keyword, or a statement timeout."""
    r = rng.random()
    if r < 0.5 and tables:
        t = tables[0]
        m = re.search(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+" + re.escape(t) + r"\b", sql)
        if m:
            i = m.end() - len(t)
            wrong = _typo(t)
            bad = sql[:i] + wrong + sql[m.end():]
            return bad, Error("42P01", f'relation "{wrong}" does not exist', i + 1, 1146, tag)
    if r < 0.8 and sql.startswith(("SELECT", "WITH")):
        word = sql.split(None, 1)[0]
        wrong = word[:-1]
        bad = wrong + sql[len(word):]
        return bad, Error("42601", f'syntax error at or near "{wrong}"', 1, 1064, "idle")
    return sql, Error("57014", "canceling statement due to statement timeout", None, 3024, tag)


# --------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------


def _zipf_cum(n: int, s: float) -> list[float]:
    acc, out = 0.0, []
    for k in range(1, n + 1):
        acc += 1.0 / k ** s
        out.append(acc)
    return out


@dataclass
class Counts:
    """What was written, so the tools' counts can be checked against it."""

    queries: int = 0
    errors: int = 0
    extended: int = 0
    unique_shapes: int = 0
    sessions: int = 0
    multi_line: int = 0
    bursts: dict[str, int] = field(default_factory=dict)
    patterns: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class Burst:
    """A run of related queries by one user, spread over log time (what the windowed rules
    look for): a loop over ids, a refreshing dashboard, a user stuck on an error, a spike."""

    kind: str  # ids | same | fail | spike
    user: User
    left: int
    gap: float  # mean seconds between runs
    template: Template | None = None
    fixed: tuple[str, str | None, tuple[str, ...], Error | None] | None = None


class Writer:
    """What a format writer implements; the workload calls these in log order."""

    def connect(self, s: Session, t: float) -> None: ...

    def disconnect(self, s: Session, t: float) -> None: ...

    def query(self, q: Query) -> None: ...

    def close(self) -> None: ...


class Workload:
    """Draws users, shapes, values, times and failures from one seeded RNG."""

    def __init__(self, seed: int, rate: float, unique_fraction: float, all_unique: bool) -> None:
        self.rng = rng = random.Random(seed)
        self.rate = rate
        self.unique_fraction = 1.0 if all_unique else unique_fraction
        self.all_unique = all_unique
        self.counts = Counts()
        # users: service accounts, then ~2,000 analysts with a Zipf-like activity
        octets = iter(rng.sample(range(2, 250 * 250), 2100))

        def ip() -> str:
            o = next(octets)
            return f"10.{20 + o // 250 // 250}.{o // 250 % 250}.{o % 250 + 2}"

        self.bi = [User("bi_tool", "Metabase", "named", "warehouse", ip(), (500, 5000)),
                   User("looker", "Looker", "simple", "warehouse", ip(), (200, 2000))]
        self.etl = [User("etl", "airflow", "simple", "warehouse", ip(), (1000, 10000)),
                    User("dbt", "dbt", "simple", "warehouse", ip(), (300, 3000))]
        self.api = [User("reporting_api", "reporting-api", "unnamed", "warehouse", ip(), (100, 1000))]
        names: list[str] = []
        taken: set[str] = set()
        while len(names) < 2000:
            n = f"{rng.choice(FIRST_NAMES)}_{rng.choice(string.ascii_lowercase)}"
            if n in taken:
                n = f"{n}{rng.randint(2, 9)}"
            if n not in taken:
                taken.add(n)
                names.append(n)
        self.analysts = []
        for n in names:
            app, proto = rng.choice(APPS)
            db = "analytics" if rng.random() < 0.15 else "warehouse"
            self.analysts.append(User(n, app, proto, db, ip(), (5, 300)))
        self.analyst_cum = _zipf_cum(len(self.analysts), 0.9)
        # shapes: procedural catalog + the rule patterns
        seen: set[str] = set()
        shapes: list[Template] = []
        while len(shapes) < 285:
            text, aud, tag, tables, mu, rows = _build_shape(rng)
            if text in seen:
                continue
            seen.add(text)
            if "\n" not in text and tag == "SELECT" and rng.random() < 0.3:
                text = _multiline(text, rng.choice(("  ", "    ", "\t")))
            shapes.append(Template(text, aud, tag, tables, mu, 1.0, rows))
        rng.shuffle(shapes)
        weights = [1.0 / (k + 1) ** 0.9 for k in range(len(shapes))]
        mean_w = sum(weights) / len(weights)
        habit_pool = self.analysts[20:400]
        self.patterns: list[tuple[str, Template]] = []
        for name, rel, text, tag, tables, mu, sigma, rows in PATTERNS:
            tpl = Template(text, "habit", tag, tables, mu, sigma, rows)
            tpl.users = rng.sample(habit_pool, 3)
            shapes.append(tpl)
            weights.append(rel * mean_w * 0.6)
            self.patterns.append((name, tpl))
            self.counts.patterns[name] = 0
        self.pattern_name = {id(t): n for n, t in self.patterns}
        self.templates = shapes
        self.template_cum = []
        acc = 0.0
        for w in weights:
            acc += w
            self.template_cum.append(acc)
        self.lookups = [t for t in shapes if t.audience != "habit" and t.kind == "SELECT" and "{id:" in t.text
                        and "{in:" not in t.text]
        self.selects = [t for t in shapes if t.audience != "habit" and t.kind == "SELECT"]
        self.spike_user = self.analysts[30]
        self.spike_at = START + 3 * DAY + 3600.0
        self.spiked = False
        self._pid = 20000
        self._thread = 10
        self._unique = 0
        self._tid = {id(t): i for i, t in enumerate(shapes)}

    # -- choices --

    def _analyst(self) -> User:
        rng = self.rng
        return self.analysts[bisect.bisect(self.analyst_cum, rng.random() * self.analyst_cum[-1])]

    def _user_for(self, tpl: Template) -> User:
        rng = self.rng
        aud = tpl.audience
        if aud == "analyst":
            return self._analyst()
        if aud == "bi":
            return self.bi[0] if rng.random() < 0.6 else self.bi[1]
        if aud == "etl":
            return self.etl[0] if rng.random() < 0.6 else self.etl[1]
        if aud == "api":
            return self.api[0]
        return rng.choice(tpl.users)

    def _template(self) -> Template:
        cum = self.template_cum
        return self.templates[bisect.bisect(cum, self.rng.random() * cum[-1])]

    def _unique_template(self) -> Template:
        """A shape nobody ran before: random table(s), columns, predicates, and a unique alias."""
        rng = self.rng
        self._unique += 1
        tag = f"u{self._unique:x}"
        t = rng.choice(list(TABLES))
        cols = [c for c in _cols(t) if c[1] != "pk"]
        picked = _pick(rng, cols, 2, 6)
        sel = [c for c, _ in picked]
        sel[0] = f"{sel[0]} AS {sel[0]}_{tag}"
        tables = (t,)
        src = t
        fks = _of(t, "fk:")
        if fks and rng.random() < 0.3:
            fk, kind = rng.choice(fks)
            ref = kind[3:]
            if ref != t:
                rcols = [c for c in _cols(ref) if c[1] != "pk"]
                sel = [f"a.{c}" for c in sel]
                sel += [f"b.{c}" for c, _ in _pick(rng, rcols, 1, 3)]
                src = f"{t} a JOIN {ref} b ON b.id = a.{fk}"
                tables = (t, ref)
        qual = "a." if len(tables) > 1 else ""
        conds = []
        for c, k in _pick(rng, cols, 1, 3):
            if k == "ts":
                conds.append(f"{qual}{c} >= {{date}} AND {qual}{c} < {{date+}}")
            elif k.startswith("cat:") and rng.random() < 0.3:
                conds.append(f"{qual}{c} IN ({_value(k)}, {_value(k)})")
            elif k == "money" or k.startswith("int:"):
                conds.append(f"{qual}{c} {rng.choice(('>', '<', '>=', '<=', '<>'))} {_value(k)}")
            else:
                conds.append(f"{qual}{c} = {_value(k)}")
        text = f"SELECT {', '.join(sel)} FROM {src} WHERE {' AND '.join(conds)}"
        if rng.random() < 0.7:
            text += f" ORDER BY {rng.randint(1, len(sel))} LIMIT {{int:10:1000}}"
        mu = math.log(2000 if t in LARGE else 20)
        return Template(text, "analyst", "SELECT", tables, mu, 1.2, 50)

    # -- sessions --

    def _session(self, user: User, t: float, out: Writer) -> Session:
        s = user.session
        if s is not None and user.left > 0:
            user.left -= 1
            return s
        rng = self.rng
        if s is not None:
            out.disconnect(s, t)
        self._pid += rng.randint(1, 40)
        self._thread += 1
        sec = int(t)
        s = Session(user, self._pid, f"{sec:x}.{self._pid:x}", t,
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(sec)), rng.randint(32768, 60999),
                    rng.randint(3, 199), self._thread)
        user.session = s
        user.left = rng.randint(*user.session_len) - 1
        self.counts.sessions += 1
        out.connect(s, t)
        return s

    # -- one query --

    def _run(self, out: Writer, t: float, user: User, tpl: Template,
             fixed: tuple[str, str | None, tuple[str, ...], Error | None] | None = None,
             fail: bool = False) -> None:
        rng = self.rng
        c = self.counts
        s = self._session(user, t, out)
        extended = user.protocol != "simple"
        if fixed is not None:
            sql, esql, params, error = fixed
        else:
            sql, esql, params = tpl.render(rng, extended)
            error = None
            if fail:
                sql, error = failing(rng, sql, tpl.tables, tpl.kind)
        if error is not None:
            esql, params = None, ()
            c.errors += 1
        stmt, parse = "<unnamed>", True
        if esql is not None:
            c.extended += 1
            if user.protocol == "named":
                key = self._tid.get(id(tpl), -1)
                name = s.named.get(key)
                parse = name is None
                if name is None:
                    name = s.named[key] = f"S_{len(s.named) + 1}"
                stmt = name
        dur = rng.lognormvariate(tpl.mu, tpl.sigma)
        if error is not None and error.sqlstate == "57014":
            dur = 30000.0
        rows = 0 if tpl.kind != "SELECT" or error is not None else max(0, int(tpl.rows * rng.random() * 2))
        examined = rows * rng.randint(1, 50) + (1 if tpl.kind in ("INSERT", "UPDATE") else 0)
        pdur = 0.02 + rng.random() * 0.3
        bdur = 0.01 + rng.random() * 0.1
        if "\n" in sql:
            c.multi_line += 1
        c.queries += 1
        name = self.pattern_name.get(id(tpl))
        if name is not None:
            c.patterns[name] += 1
        out.query(Query(t, dur, s, sql, esql, params, stmt, parse, pdur, bdur, tpl.kind, rows, examined, error))

    # -- the loop --

    def run(self, n: int, out: Writer) -> Counts:
        """Write ``n`` queries (and the connections around them) to ``out``."""
        rng = self.rng
        rate = self.rate
        heap: list[tuple[int, int, Burst]] = []
        seq = 0
        t = float(START)
        expo = rng.expovariate
        rnd = rng.random
        uf = self.unique_fraction
        plain = not self.all_unique
        for i in range(n):
            t += expo(rate)
            if heap and heap[0][0] <= i:
                _, _, b = heapq.heappop(heap)
                self._burst_step(out, t, b)
                if b.left > 0:
                    seq += 1
                    heapq.heappush(heap, (i + max(1, int(b.gap * rate * (0.5 + rnd()))), seq, b))
                continue
            if rnd() < uf:
                tpl = self._unique_template()
                self.counts.unique_shapes += 1
                self._run(out, t, self._analyst(), tpl)
                continue
            tpl = self._template()
            user = self._user_for(tpl)
            self._run(out, t, user, tpl, fail=rnd() < 0.0085)
            # maybe start a burst (per query, so the burst share does not depend on --rate)
            r = rnd()
            b = None
            if r < 1 / 5000 and self.lookups:
                who = self._analyst() if rnd() < 0.7 else rng.choice((self.etl[0], self.api[0]))
                b = Burst("ids", who, rng.randint(25, 125), rng.choice((0.3, 1.0, 3.0, 10.0)), rng.choice(self.lookups))
            elif r < 1 / 5000 + 1 / 6000:
                who = rng.choice(self.bi) if rnd() < 0.6 else self._analyst()
                tp = rng.choice(self.selects)
                fixed = (*tp.render(rng, who.protocol != "simple"), None)
                b = Burst("same", who, rng.randint(22, 70), rng.choice((5.0, 15.0, 30.0)), tp, fixed)
            elif r < 1 / 5000 + 1 / 6000 + 1 / 10000:
                who = self._analyst()
                tp = rng.choice(self.selects)
                sql, _, _ = tp.render(rng, False)
                bad, err = failing(rng, sql, tp.tables, tp.kind)
                b = Burst("fail", who, rng.randint(10, 18), rng.choice((5.0, 15.0, 30.0)), tp, (bad, None, (), err))
            if plain and not self.spiked and t >= self.spike_at:
                self.spiked = True
                count = max(400, int(rate * 3600 * 0.02))
                b2 = Burst("spike", self.spike_user, count, 3600.0 / count)
                seq += 1
                heapq.heappush(heap, (i + 1, seq, b2))
                self.counts.bursts["spike"] = self.counts.bursts.get("spike", 0) + 1
            if b is not None:
                self.counts.bursts[b.kind] = self.counts.bursts.get(b.kind, 0) + 1
                seq += 1
                heapq.heappush(heap, (i + 1, seq, b))
        return self.counts

    def _burst_step(self, out: Writer, t: float, b: Burst) -> None:
        b.left -= 1
        if b.kind == "spike":  # a script running many reports: any analyst shape, by popularity
            tpl = self._template()
            while tpl.audience == "habit" or tpl.kind != "SELECT":
                tpl = self._template()
            self._run(out, t, b.user, tpl)
            return
        assert b.template is not None
        self._run(out, t, b.user, b.template, b.fixed)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


class Clock:
    """Timestamp texts, formatted once per second of log time (strftime is the slow part)."""

    def __init__(self) -> None:
        self._sec = -1
        self._base = ""
        self._iso = ""

    def _set(self, sec: int) -> None:
        self._sec = sec
        tm = time.gmtime(sec)
        self._base = time.strftime("%Y-%m-%d %H:%M:%S", tm)
        self._iso = time.strftime("%Y-%m-%dT%H:%M:%S", tm)

    def pg(self, t: float) -> str:
        """``%m``: 2026-11-02 08:00:00.123 UTC"""
        sec = int(t)
        if sec != self._sec:
            self._set(sec)
        return f"{self._base}.{int((t - sec) * 1000):03d} UTC"

    def iso(self, t: float) -> str:
        """MySQL 8: 2026-11-02T08:00:00.123456Z"""
        sec = int(t)
        if sec != self._sec:
            self._set(sec)
        return f"{self._iso}.{int((t - sec) * 1e6):06d}Z"


def _session_time(seconds: float) -> str:
    """PostgreSQL's ``session time: 0:01:02.345``."""
    ms = int(seconds * 1000)
    h, rem = divmod(ms, 3600_000)
    m, rem = divmod(rem, 60_000)
    return f"{h}:{m:02d}:{rem // 1000:02d}.{rem % 1000:03d}"


def _params_detail(params: tuple[str, ...]) -> str:
    return "parameters: " + ", ".join(f"${i} = '" + p.replace("'", "''") + "'" for i, p in enumerate(params, 1))


class _Buffered(Writer):
    def __init__(self, f: TextIO) -> None:
        self.f = f
        self.buf: list[str] = []
        self.clock = Clock()
        self.records = 0

    def emit(self, text: str) -> None:
        self.buf.append(text)
        self.records += 1
        if len(self.buf) >= 4096:
            self.f.write("".join(self.buf))
            self.buf.clear()

    def close(self) -> None:
        self.f.write("".join(self.buf))
        self.buf.clear()


class PostgresWriter(_Buffered):
    """The PostgreSQL message sequence; subclasses lay out one record (csv, json, stderr)."""

    def record(self, s: Session, t: float, ps: str, vxid: str, severity: str, state: str, message: str,
               detail: str | None = None, query: str | None = None, pos: int | None = None,
               stage: int = 2) -> None:
        """``stage``: 0 = connection received (no user yet), 1 = authorized (no application yet),
        2 = an ordinary backend record."""
        raise NotImplementedError

    def connect(self, s: Session, t: float) -> None:
        u = s.user
        s.line += 1
        self.record(s, t, "", "", "LOG", "00000", f"connection received: host={u.ip} port={s.port}", stage=0)
        s.line += 1
        s.lxid += 1
        self.record(s, t, "authentication", f"{s.backend}/{s.lxid}", "LOG", "00000",
                    f"connection authorized: user={u.name} database={u.database} application_name={u.app}", stage=1)

    def disconnect(self, s: Session, t: float) -> None:
        u = s.user
        s.line += 1
        self.record(s, t, "idle", "", "LOG", "00000", f"disconnection: session time: {_session_time(t - s.started)} "
                    f"user={u.name} database={u.database} host={u.ip} port={s.port}")

    def query(self, q: Query) -> None:
        s = q.session
        s.lxid += 1
        vxid = f"{s.backend}/{s.lxid}"
        t = q.t
        e = q.error
        if e is not None:
            s.line += 1
            self.record(s, t, e.ps, vxid, "ERROR", e.sqlstate, e.message, None, q.sql, e.pos)
            return
        if q.esql is None:
            s.line += 1
            self.record(s, t, q.tag, vxid, "LOG", "00000", f"duration: {q.dur:.3f} ms  statement: {q.sql}")
            return
        detail = _params_detail(q.params) if q.params else None
        if q.parse:
            s.line += 1
            self.record(s, t, "PARSE", vxid, "LOG", "00000", f"duration: {q.pdur:.3f} ms  parse {q.stmt}: {q.esql}")
        s.line += 1
        self.record(s, t, "BIND", vxid, "LOG", "00000", f"duration: {q.bdur:.3f} ms  bind {q.stmt}: {q.esql}", detail)
        s.line += 1
        self.record(s, t, q.tag, vxid, "LOG", "00000", f"duration: {q.dur:.3f} ms  execute {q.stmt}: {q.esql}",
                    detail)


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class CsvlogWriter(PostgresWriter):
    """PostgreSQL 15 csvlog (26 columns)."""

    def record(self, s: Session, t: float, ps: str, vxid: str, severity: str, state: str, message: str,
               detail: str | None = None, query: str | None = None, pos: int | None = None,
               stage: int = 2) -> None:
        u = s.user
        who = "," if stage == 0 else f'"{u.name}","{u.database}"'
        app = "" if stage < 2 else u.app
        backend = "not initialized" if stage == 0 else "client backend"
        self.emit(
            f"{self.clock.pg(t)},{who},{s.pid},\"{u.ip}:{s.port}\",{s.sid},{s.line},\"{ps}\",{s.start_text},"
            f"{vxid},0,{severity},{state},{_csv(message)},{_csv(detail) if detail else ''},,,,,"
            f"{_csv(query) if query else ''},{'' if pos is None else pos},,\"{app}\",\"{backend}\",,0\n")


class JsonlogWriter(PostgresWriter):
    """PostgreSQL 15 jsonlog: keys in the server's order, empty ones left out."""

    def record(self, s: Session, t: float, ps: str, vxid: str, severity: str, state: str, message: str,
               detail: str | None = None, query: str | None = None, pos: int | None = None,
               stage: int = 2) -> None:
        u = s.user
        out = [f'{{"timestamp":"{self.clock.pg(t)}",']
        if stage:
            out.append(f'"user":"{u.name}","dbname":"{u.database}",')
        out.append(f'"pid":{s.pid},"remote_host":"{u.ip}","remote_port":{s.port},"session_id":"{s.sid}",'
                   f'"line_num":{s.line},"ps":"{ps}","session_start":"{s.start_text}",')
        if vxid:
            out.append(f'"vxid":"{vxid}",')
        out.append(f'"txid":0,"error_severity":"{severity}",')
        if state != "00000":
            out.append(f'"state_code":"{state}",')
        out.append(f'"message":{encode_basestring(message)},')
        if detail:
            out.append(f'"detail":{encode_basestring(detail)},')
        if query:
            out.append(f'"statement":{encode_basestring(query)},')
        if pos is not None:
            out.append(f'"cursor_position":{pos},')
        if stage == 2:
            out.append(f'"application_name":"{u.app}",')
        out.append('"backend_type":"not initialized","query_id":0}\n' if stage == 0
                   else '"backend_type":"client backend","query_id":0}\n')
        self.emit("".join(out))


class StderrWriter(PostgresWriter):
    """PostgreSQL stderr log with ``log_line_prefix = STDERR_PREFIX`` ('%m [%p] %q%u@%d ')."""

    def record(self, s: Session, t: float, ps: str, vxid: str, severity: str, state: str, message: str,
               detail: str | None = None, query: str | None = None, pos: int | None = None,
               stage: int = 2) -> None:
        u = s.user
        who = "[unknown]@[unknown]" if stage == 0 else f"{u.name}@{u.database}"
        prefix = f"{self.clock.pg(t)} [{s.pid}] {who} "
        if pos is not None:
            message = f"{message} at character {pos}"
        # a newline inside a value is written as newline + TAB (elog.c), so continuation lines
        # can never be mistaken for a new record
        text = f"{prefix}{severity}:  {message.replace(chr(10), chr(10) + chr(9))}\n"
        if detail:
            text += f"{prefix}DETAIL:  {detail.replace(chr(10), chr(10) + chr(9))}\n"
        if query:
            text += f"{prefix}STATEMENT:  {query.replace(chr(10), chr(10) + chr(9))}\n"
        self.emit(text)


class MysqlSlowWriter(_Buffered):
    """MySQL 8.0 slow log, ``long_query_time = 0``, ``log_slow_extra = ON``."""

    BANNER = ("/usr/sbin/mysqld, Version: 8.0.40 (MySQL Community Server - GPL). started with:\n"
              "Tcp port: 3306  Unix socket: /var/run/mysqld/mysqld.sock\n"
              "Time                 Id Command    Argument\n")

    def __init__(self, f: TextIO) -> None:
        super().__init__(f)
        self.f.write(self.BANNER)
        self.db: str | None = None

    def query(self, q: Query) -> None:
        s = q.session
        u = s.user
        e = q.error
        secs = q.dur / 1000.0
        start = q.t - secs
        errno = e.mysql_errno if e is not None else 0
        rows = q.rows
        sent = 60 + rows * 48 if e is None else 80
        use = ""
        if u.database != self.db:
            self.db = u.database
            use = f"use {u.database};\n"
        self.emit(
            f"# Time: {self.clock.iso(q.t)}\n"
            f"# User@Host: {u.name}[{u.name}] @  [{u.ip}]  Id: {s.thread:5d}\n"
            f"# Query_time: {secs:.6f}  Lock_time: {min(secs, 0.000004 + secs * 0.001):.6f} "
            f"Rows_sent: {rows}  Rows_examined: {q.examined} Thread_id: {s.thread} Errno: {errno} Killed: 0 "
            f"Bytes_received: {len(q.sql) + 5} Bytes_sent: {sent} Read_first: {1 if q.examined > rows else 0} "
            f"Read_last: 0 Read_key: {1 if q.examined else 0} Read_next: {q.examined} Read_prev: 0 Read_rnd: 0 "
            f"Read_rnd_next: 0 Sort_merge_passes: 0 Sort_range_count: 0 Sort_rows: 0 Sort_scan_count: 0 "
            f"Created_tmp_disk_tables: 0 Created_tmp_tables: 0 "
            f"Start: {_iso_any(start)} End: {self.clock.iso(q.t)}\n"
            f"{use}SET timestamp={int(start)};\n{q.sql};\n")


def _iso_any(t: float) -> str:
    sec = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((t - sec) * 1e6):06d}Z"


WRITERS: dict[str, Callable[[TextIO], Writer]] = {
    "postgres-csvlog": CsvlogWriter,
    "postgres-jsonlog": JsonlogWriter,
    "postgres-stderr": StderrWriter,
    "mysql-slow": MysqlSlowWriter,
}


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


def params_of(args: argparse.Namespace) -> dict[str, object]:
    """The arguments that decide a log's content (``compare.py`` reuses a log when they match)."""
    return {"generator_version": GENERATOR_VERSION, "queries": args.queries, "format": args.format,
            "seed": args.seed, "unique_fraction": args.unique_fraction, "all_unique": args.all_unique,
            "rate": args.rate}


def generate(args: argparse.Namespace) -> dict[str, object]:
    """Write the log and its ``.meta.json``; returns the meta (params, counts, expected counts)."""
    out = Path(args.out)
    t0 = time.perf_counter()
    w = Workload(args.seed, args.rate, args.unique_fraction, args.all_unique)
    with open(out, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
        writer = WRITERS[args.format](f)
        counts = w.run(args.queries, writer)
        writer.close()
        records = getattr(writer, "records", 0)
    c = counts
    meta: dict[str, object] = {
        "params": params_of(args),
        "bytes": out.stat().st_size,
        "records": records,
        "seconds": round(time.perf_counter() - t0, 2),
        "counts": {"queries": c.queries, "errors": c.errors, "extended_protocol": c.extended,
                   "unique_shapes": c.unique_shapes, "multi_line": c.multi_line, "sessions": c.sessions,
                   "bursts": c.bursts, "patterns": c.patterns},
        # what each tool should report for this log
        "expected": {"usagewatch_queries": c.queries, "usagewatch_failed": c.errors,
                     "pgbadger_queries": c.queries - c.errors, "pgbadger_errors": c.errors,
                     "pt_query_digest_queries": c.queries},
    }
    meta_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, required=True, help="number of query executions to write")
    ap.add_argument("--format", choices=FORMATS, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="the log file to write (plus OUT.meta.json)")
    ap.add_argument("--unique-fraction", type=float, default=0.02,
                    help="share of queries with a never-seen shape (default 0.02)")
    ap.add_argument("--all-unique", action="store_true", help="every query a new shape (no bursts, no errors)")
    ap.add_argument("--rate", type=float, default=500.0, help="queries per second of log time (default 500)")
    args = ap.parse_args(argv)
    if args.queries < 0 or args.rate <= 0 or not 0 <= args.unique_fraction <= 1:
        ap.error("--queries >= 0, --rate > 0 and 0 <= --unique-fraction <= 1")
    meta = generate(args)
    c = meta["counts"]
    exp = meta["expected"]
    assert isinstance(c, dict) and isinstance(exp, dict)
    print(f"genlog: {args.format} {args.out}: {c['queries']:,} queries ({c['errors']:,} failed, "
          f"{c['extended_protocol']:,} extended protocol, {c['unique_shapes']:,} unique shapes), "
          f"{meta['records']:,} records, {int(meta['bytes']) / 1e6:.1f} MB in {meta['seconds']} s",  # type: ignore[call-overload]
          file=sys.stderr)
    print(f"genlog: expected counts: usagewatch {exp['usagewatch_queries']:,} queries "
          f"({exp['usagewatch_failed']:,} failed); pgBadger {exp['pgbadger_queries']:,} queries + "
          f"{exp['pgbadger_errors']:,} errors; pt-query-digest {exp['pt_query_digest_queries']:,} queries",
          file=sys.stderr)


if __name__ == "__main__":
    main()
