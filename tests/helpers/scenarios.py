"""Scenarios for the stock rules: small real workloads, one that must fire a rule and one near miss.

Every scenario runs on a real PostgreSQL (the cluster of ``tests.helpers.postgres``) in a database of
its own, copied from a template that holds a small warehouse schema:

==================  =========================================================  ==========
table               what it is                                                 "large"?
==================  =========================================================  ==========
``page_views``      web analytics events: user_id, url, country, viewed_at      yes
``sales_fact``      one row per sale: customer_id, region, amount, sold_at      yes
``customers``       300 customers: name, region, signup_at                      no
``churned``         customer ids that left, one of them NULL (the NOT IN trap)  no
==================  =========================================================  ==========

"Large" means: matched by the placeholder ``large_tables`` / ``filter.tables`` globs of the shipped
stock rules (``page_views``, ``*_fact``), so the tests run the rule files exactly as shipped. The
rows are few (a scan takes milliseconds): the rules look at a query's shape and at the log, not at
the table's real size.

``drive(cluster, scenario)`` runs a scenario's executions in order (one connection per user, so
psycopg's extended protocol and its prepared statements after 5 runs show up as in real life),
between two marker queries, and returns the bytes of the csvlog written between the markers: the
scenario's own records and nobody else's, even on a cluster that other tests use too.

A scenario whose rule needs time spread (hours, days) that a live server cannot produce in seconds
carries ``params``: test-local overrides of the rule's params (seconds instead of hours) applied
to a copy of the rule file; the shipped file keeps its production defaults. Nothing here writes a
log by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.postgres import PgCluster

TEMPLATE_DB = "uw_scenario_template"
LARGE_TABLES = ("page_views", "sales_fact")

SCHEMA = (
    "CREATE TABLE page_views (id serial PRIMARY KEY, user_id int NOT NULL, url text NOT NULL,"
    " country text NOT NULL, viewed_at timestamptz NOT NULL)",
    "CREATE TABLE sales_fact (id serial PRIMARY KEY, customer_id int, region text NOT NULL,"
    " amount numeric(12,2) NOT NULL, sold_at timestamptz NOT NULL)",
    "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text NOT NULL,"
    " signup_at timestamptz NOT NULL)",
    "CREATE TABLE churned (customer_id int)",
    "INSERT INTO customers SELECT i, 'Customer ' || i, (ARRAY['north','south','east','west'])[1 + i % 4],"
    " TIMESTAMPTZ '2025-01-01 00:00:00+00' + i * INTERVAL '1 day' FROM generate_series(1, 300) AS i",
    "INSERT INTO page_views (user_id, url, country, viewed_at)"
    " SELECT 1 + i % 300, (ARRAY['/home','/pricing','/checkout/cart','/checkout/pay','/blog/sql'])[1 + i % 5]"
    " || '?ref=' || (i % 17), (ARRAY['NO','SE','DE','FR'])[1 + i % 4],"
    " TIMESTAMPTZ '2026-01-01 00:00:00+00' + (i % 120) * INTERVAL '1 day' + (i % 24) * INTERVAL '1 hour'"
    " FROM generate_series(1, 3000) AS i",
    "INSERT INTO sales_fact (customer_id, region, amount, sold_at)"
    " SELECT 1 + (i * 7) % 300, (ARRAY['north','south','east','west'])[1 + i % 4], (i % 997) + 0.5,"
    " TIMESTAMPTZ '2026-01-01 00:00:00+00' + (i % 120) * INTERVAL '1 day' FROM generate_series(1, 3000) AS i",
    # 1..20 left; and one row whose customer_id was never filled in: NOT IN (...) now matches nothing
    "INSERT INTO churned SELECT i FROM generate_series(1, 20) AS i",
    "INSERT INTO churned VALUES (NULL)",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC",
)


@dataclass(frozen=True)
class Run:
    """One execution: ``sql`` (with ``params`` bound by psycopg when given) by ``user``.

    ``error`` is the SQLSTATE the execution must fail with (None: it must succeed); ``pause`` is
    slept before it (real time, for rules about rates)."""

    user: str
    sql: str
    params: tuple[Any, ...] | None = None
    error: str | None = None
    pause: float = 0.0


@dataclass(frozen=True)
class Expect:
    """A finding the scenario must produce: its user and run count (``count`` may be a (lo, hi)
    range for rules whose count depends on where real time falls into buckets)."""

    user: str
    count: int | tuple[int, int]

    def matches(self, user: str, count: int) -> bool:
        if user != self.user:
            return False
        if isinstance(self.count, tuple):
            return self.count[0] <= count <= self.count[1]
        return count == self.count


@dataclass
class Scenario:
    rule: str
    outcome: str  # "fires" or "near-miss"
    story: str
    runs: Callable[[], list[Run]]
    expect: list[Expect] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # test-local overrides (see module doc)

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.outcome}"

    @property
    def users(self) -> list[str]:
        return sorted({r.user for r in self.runs()})


# --------------------------------------------------------------------------------------------------
# driving


def prepare(cluster: PgCluster) -> None:
    """Create the template database once per cluster (idempotent)."""
    with cluster.connect() as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_DB,)).fetchone():
            return
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")  # type: ignore[arg-type]
    with cluster.connect(dbname=TEMPLATE_DB) as conn:
        for sql in SCHEMA:
            conn.execute(sql)  # type: ignore[arg-type]


def _csvlog(cluster: PgCluster) -> Path:
    (path,) = cluster.log_files("csvlog")  # rotation is off: one file
    return path


def _record_start(path: Path, needle: str, after: int, timeout: float = 10.0) -> int:
    """Offset of the first csvlog record at or after ``after`` that contains ``needle``.

    A csv record starts at a line start, and the fields before the message never hold a newline,
    so the record starts after the last newline before the needle."""
    data, deadline = needle.encode(), time.monotonic() + timeout
    while True:
        with open(path, "rb") as f:
            f.seek(after)
            chunk = f.read()
        i = chunk.find(data)
        if i >= 0:
            return after + chunk.rfind(b"\n", 0, i) + 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"{needle!r} did not reach {path} within {timeout}s")
        time.sleep(0.02)


def _execute(conn: Any, run: Run) -> None:
    if run.error is None:
        conn.execute(run.sql, run.params)
        return
    try:
        conn.execute(run.sql, run.params)
    except Exception as exc:  # noqa: BLE001 - the failure is the point
        got = getattr(exc, "sqlstate", None)
        if got != run.error:
            raise AssertionError(f"{run.sql!r}: expected SQLSTATE {run.error}, got {got}") from exc
        return
    raise AssertionError(f"{run.sql!r} should have failed with {run.error}")


def drive(cluster: PgCluster, scenario: Scenario, database: str) -> bytes:
    """Run ``scenario`` in a fresh ``database`` (a copy of the template); its csvlog bytes."""
    prepare(cluster)
    runs = scenario.runs()
    for user in sorted({r.user for r in runs}):
        cluster.create_role(user)
    cluster.execute(f"CREATE DATABASE {database} TEMPLATE {TEMPLATE_DB}")
    log = _csvlog(cluster)
    begin, end = f"usagewatch-scenario-begin:{database}", f"usagewatch-scenario-end:{database}"
    offset = log.stat().st_size
    with cluster.connect(dbname=database) as conn:
        conn.execute(f"SELECT '{begin}'")  # type: ignore[arg-type]
    start = _record_start(log, begin, offset)
    conns: dict[str, Any] = {}
    try:
        for run in runs:
            if run.pause:
                time.sleep(run.pause)
            if run.user not in conns:
                conns[run.user] = cluster.connect(user=run.user, dbname=database, application_name="scenario")
            _execute(conns[run.user], run)
    finally:
        for conn in conns.values():
            conn.close()
    with cluster.connect(dbname=database) as conn:
        conn.execute(f"SELECT '{end}'")  # type: ignore[arg-type]
    stop = _record_start(log, end, start)
    with open(log, "rb") as f:
        f.seek(start)
        return f.read(stop - start)


# --------------------------------------------------------------------------------------------------
# the scenarios: for every stock rule, one that fires and one near miss


def _times(n: int, user: str, sql: str, **kw: Any) -> list[Run]:
    return [Run(user, sql, **kw) for _ in range(n)]


def _each(values: list[Any], user: str, template: str, **kw: Any) -> list[Run]:
    return [Run(user, template.format(v=v), **kw) for v in values]


REGIONS = ["north", "south", "east", "west"]
CUSTOMER_SUM = "SELECT sum(amount) FROM sales_fact WHERE customer_id = {v}"
TOP_CUSTOMERS = ("SELECT customer_id, sum(amount) AS total FROM sales_fact WHERE region = 'north' "
                 "GROUP BY customer_id ORDER BY total DESC LIMIT 10")

SELECT_STAR = "SELECT * FROM page_views WHERE country = '{v}' LIMIT 50"
SELECT_COLUMNS = "SELECT user_id, url, viewed_at FROM page_views WHERE country = '{v}' LIMIT 50"

FULL_SCAN = "SELECT count(*), sum(amount) FROM sales_fact"
FULL_SCAN_FIXED = ("SELECT count(*), sum(amount) FROM sales_fact "
                   "WHERE sold_at >= '2026-03-01' AND sold_at < '2026-04-01'")

CARTESIAN = ("SELECT c.name, sum(s.amount) FROM customers c, sales_fact s "
             "WHERE s.amount > {v} GROUP BY c.name")
JOINED = ("SELECT c.name, sum(s.amount) FROM customers c JOIN sales_fact s ON s.customer_id = c.id "
          "WHERE s.amount > {v} GROUP BY c.name")
JOINED_OLD_STYLE = ("SELECT c.name, sum(s.amount) FROM customers c, sales_fact s "
                    "WHERE s.customer_id = c.id AND s.amount > {v} GROUP BY c.name")

SORT_ALL = "SELECT user_id, url, viewed_at FROM page_views ORDER BY viewed_at DESC"
SORT_TOP = "SELECT user_id, url, viewed_at FROM page_views ORDER BY viewed_at DESC LIMIT 20"
SORT_DAY = ("SELECT user_id, url, viewed_at FROM page_views "
            "WHERE viewed_at >= '2026-03-01' AND viewed_at < '2026-03-02' ORDER BY viewed_at")
SORT_SMALL = "SELECT id, name FROM customers ORDER BY name"

LIKE_ANYWHERE = "SELECT user_id, url FROM page_views WHERE url LIKE '%{v}%'"
LIKE_PREFIX = "SELECT user_id, url FROM page_views WHERE url LIKE '/{v}%'"
LIKE_SMALL = "SELECT id, name FROM customers WHERE name ILIKE '%{v}%'"
SEARCH_TERMS = ["checkout", "pricing", "blog", "home", "pay"]

FUNC_ON_COLUMN = "SELECT count(*), sum(amount) FROM sales_fact WHERE date(sold_at) = '{v}'"
BARE_COLUMN = ("SELECT count(*), sum(amount) FROM sales_fact "
               "WHERE sold_at >= '{v}' AND sold_at < DATE '{v}' + 1")
FUNC_IN_SELECT = ("SELECT date(sold_at), count(*) FROM sales_fact "
                  "WHERE sold_at >= '{v}' AND sold_at < DATE '{v}' + 7 GROUP BY 1")
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]

NOT_IN = "SELECT id, name FROM customers WHERE id NOT IN (SELECT customer_id FROM churned)"
NOT_EXISTS = ("SELECT c.id, c.name FROM customers c "
              "WHERE NOT EXISTS (SELECT 1 FROM churned x WHERE x.customer_id = c.id)")
NOT_IN_LITERALS = "SELECT id, name FROM customers WHERE id NOT IN (1, 2, 3)"

HUGE_IN_MIN = 1000  # the shipped huge-in-list.yaml's in_list_min


def in_list(n: int) -> str:
    ids = ", ".join(str(1 + (i * 7) % 100_000) for i in range(n))
    return f"SELECT customer_id, sum(amount) FROM sales_fact WHERE customer_id IN ({ids}) GROUP BY customer_id"


UNION = ("SELECT customer_id, amount FROM sales_fact WHERE region = '{v}' "
         "UNION SELECT customer_id, amount FROM sales_fact WHERE region = 'west'")
UNION_ALL = ("SELECT customer_id, amount FROM sales_fact WHERE region = '{v}' "
             "UNION ALL SELECT customer_id, amount FROM sales_fact WHERE region = 'west'")

OPEN_RANGE = "SELECT region, sum(amount) FROM sales_fact WHERE sold_at >= '{v}' GROUP BY region"
CLOSED_RANGE = ("SELECT region, sum(amount) FROM sales_fact "
                "WHERE sold_at >= '{v}' AND sold_at < '2026-04-01' GROUP BY region")
OPEN_RANGE_SMALL = "SELECT region, count(*) FROM customers WHERE signup_at >= '{v}' GROUP BY region"
STARTS = ["2026-01-01", "2026-02-01", "2026-03-01"]

MISSING_TABLE = "SELECT region, sum(amount) FROM sales_facts WHERE region = '{v}' GROUP BY region"
MISSING_COLUMN = "SELECT regoin, sum(amount) FROM sales_fact GROUP BY regoin"
FIXED = "SELECT region, sum(amount) FROM sales_fact WHERE region = '{v}' GROUP BY region"

SLOW = "SELECT pg_sleep({v}), count(*) FROM sales_fact WHERE region = 'north'"
SLOW_SECONDS = 0.4  # > the 300ms min_duration of the test-local copy of long-running-queries
SLOW_FAILING = "SELECT pg_sleep(0.4), amount / 0 FROM sales_fact LIMIT 1"  # sleeps, then fails

ORDER_LOOKUP = "SELECT id, amount FROM sales_fact WHERE customer_id = {v}"


def _failures(n: int, user: str) -> list[Run]:
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(Run(user, MISSING_TABLE.format(v=REGIONS[i % 4]), error="42P01"))
        else:
            out.append(Run(user, MISSING_COLUMN, error="42703"))
    return out


def _spike_history(users: list[str], seconds: float, every: float) -> list[Run]:
    """``users`` each run one lookup every ``every`` seconds for ``seconds`` (the baseline)."""
    out: list[Run] = []
    for k in range(int(seconds / every)):
        for j, user in enumerate(users):
            out.append(Run(user, ORDER_LOOKUP.format(v=1 + k), pause=every if j == 0 else 0.0))
    return out


# test-local copies for rules about time spans (the shipped files keep production defaults)
LONG_RUNNING_PARAMS = {"match": {"min_duration": "300ms"}}
SPIKE_PARAMS = {"window": "2s", "baseline": "20s", "min_history": "4s", "factor": 5, "min_runs": 30}
SPIKE_BURST = 80


SCENARIOS: list[Scenario] = [
    # ---- the two original rules ------------------------------------------------------------------
    Scenario("same-query-different-ids", "fires",
             "20 lookups of one customer's total, each with another customer_id",
             lambda: _each(list(range(1, 21)), "ida", CUSTOMER_SUM), [Expect("ida", 20)]),
    Scenario("same-query-different-ids", "near-miss",
             "19 different customer_ids (one short), and a colleague's 25 runs of one id",
             lambda: _each(list(range(1, 20)), "ida", CUSTOMER_SUM) + _times(25, "ole", CUSTOMER_SUM.format(v=7))),
    Scenario("same-query-repeated", "fires",
             "the same top-10 query, same values, 20 times (psycopg prepares it after 5)",
             lambda: _times(20, "dash", TOP_CUSTOMERS), [Expect("dash", 20)]),
    Scenario("same-query-repeated", "near-miss",
             "19 identical runs; and 20 runs of one shape with 20 different values",
             lambda: _times(19, "dash", TOP_CUSTOMERS) + _each(list(range(1, 21)), "ida", CUSTOMER_SUM)),
    # ---- query shapes ----------------------------------------------------------------------------
    Scenario("select-star-on-large-table", "fires",
             "SELECT * on page_views three times (different countries)",
             lambda: _each(["NO", "SE", "DE"], "sara", SELECT_STAR), [Expect("sara", 3)]),
    Scenario("select-star-on-large-table", "near-miss",
             "named columns on page_views; SELECT * on the small customers table; SELECT * on "
             "page_views only twice",
             lambda: (_each(["NO", "SE", "DE"], "sara", SELECT_COLUMNS)
                      + _times(3, "sara", "SELECT * FROM customers WHERE region = 'north'")
                      + _each(["FR", "NO"], "tom", SELECT_STAR))),
    Scenario("full-scan-of-large-table", "fires",
             "a total over the whole sales_fact, twice",
             lambda: _times(2, "finn", FULL_SCAN), [Expect("finn", 2)]),
    Scenario("full-scan-of-large-table", "near-miss",
             "the same total for one month; an unfiltered count of the small customers table",
             lambda: _times(2, "finn", FULL_SCAN_FIXED) + [Run("finn", "SELECT count(*) FROM customers")]),
    Scenario("cartesian-join", "fires",
             "customers, sales_fact with no condition relating them",
             lambda: [Run("carl", CARTESIAN.format(v=900))], [Expect("carl", 1)]),
    Scenario("cartesian-join", "near-miss",
             "the same report with JOIN ... ON, and with the join condition in WHERE",
             lambda: [Run("carl", JOINED.format(v=900)), Run("carl", JOINED_OLD_STYLE.format(v=900))]),
    Scenario("order-by-without-limit", "fires",
             "all of page_views sorted, no LIMIT, three times",
             lambda: _times(3, "olga", SORT_ALL), [Expect("olga", 3)]),
    Scenario("order-by-without-limit", "near-miss",
             "the top 20; one day sorted; the small customers table sorted (three times each)",
             lambda: _times(3, "olga", SORT_TOP) + _times(3, "olga", SORT_DAY) + _times(3, "olga", SORT_SMALL)),
    Scenario("leading-wildcard-like", "fires",
             "five '%term%' searches of page_views.url",
             lambda: _each(SEARCH_TERMS, "lily", LIKE_ANYWHERE), [Expect("lily", 5)]),
    Scenario("leading-wildcard-like", "near-miss",
             "five prefix searches of page_views; five '%term%' searches of the small customers",
             lambda: _each(SEARCH_TERMS, "lily", LIKE_PREFIX) + _each(["son", "er", "1", "2", "3"], "lily", LIKE_SMALL)),
    Scenario("function-on-filtered-column", "fires",
             "date(sold_at) = day, for three days",
             lambda: _each(DAYS, "fred", FUNC_ON_COLUMN), [Expect("fred", 3)]),
    Scenario("function-on-filtered-column", "near-miss",
             "the bare column compared with a range; date() in the SELECT list only",
             lambda: _each(DAYS, "fred", BARE_COLUMN) + _each(DAYS, "fred", FUNC_IN_SELECT)),
    Scenario("not-in-subquery", "fires",
             "customers NOT IN (SELECT customer_id FROM churned): churned has a NULL, 0 rows back",
             lambda: [Run("nina", NOT_IN)], [Expect("nina", 1)]),
    Scenario("not-in-subquery", "near-miss",
             "the NOT EXISTS rewrite; NOT IN over a literal list",
             lambda: [Run("nina", NOT_EXISTS), Run("nina", NOT_IN_LITERALS)]),
    Scenario("huge-in-list", "fires",
             f"an IN list of {HUGE_IN_MIN} customer ids",
             lambda: [Run("hugo", in_list(HUGE_IN_MIN))], [Expect("hugo", 1)]),
    Scenario("huge-in-list", "near-miss",
             f"IN lists of {HUGE_IN_MIN - 1} and of 136 ids (what batch-ids-into-one-query suggests)",
             lambda: [Run("hugo", in_list(HUGE_IN_MIN - 1)), Run("hugo", in_list(136))]),
    Scenario("union-instead-of-union-all", "fires",
             "UNION of two regions' sales, three times",
             lambda: _each(["north", "south", "east"], "uma", UNION), [Expect("uma", 3)]),
    Scenario("union-instead-of-union-all", "near-miss",
             "UNION ALL three times; another user's UNION only twice",
             lambda: _each(["north", "south", "east"], "uma", UNION_ALL) + _each(["north", "south"], "ulf", UNION)),
    Scenario("unbounded-date-range", "fires",
             "sold_at >= start with no end, three starts",
             lambda: _each(STARTS, "dora", OPEN_RANGE), [Expect("dora", 3)]),
    Scenario("unbounded-date-range", "near-miss",
             "a closed range on sales_fact; an open range on the small customers table",
             lambda: _each(STARTS, "dora", CLOSED_RANGE) + _each(STARTS, "dora", OPEN_RANGE_SMALL)),
    # ---- thresholds ------------------------------------------------------------------------------
    Scenario("repeated-failures", "fires",
             "10 failures in a row (a misspelt table, a misspelt column), then the fix",
             lambda: _failures(10, "stu") + [Run("stu", FIXED.format(v="north"))], [Expect("stu", 10)]),
    Scenario("repeated-failures", "near-miss",
             "9 failures then the fix; a colleague's 12 successful queries",
             lambda: (_failures(9, "stu") + [Run("stu", FIXED.format(v="north"))]
                      + _each(list(range(1, 13)), "kai", CUSTOMER_SUM))),
    Scenario("long-running-queries", "fires",
             f"the same query taking {SLOW_SECONDS}s three times (rule copy: min_duration 300ms)",
             lambda: _each([SLOW_SECONDS] * 3, "lars", SLOW), [Expect("lars", 3)], LONG_RUNNING_PARAMS),
    Scenario("long-running-queries", "near-miss",
             "the same shape three times, only two of them slow; a slow query that failed",
             lambda: (_each([SLOW_SECONDS, 0.01, SLOW_SECONDS], "lars", SLOW)
                      + [Run("lena", SLOW_FAILING, error="22012")]),
             [], LONG_RUNNING_PARAMS),
    # ---- spike -----------------------------------------------------------------------------------
    Scenario("usage-spike", "fires",
             "two users look up one order every 0.5s for 6s; then one of them fires "
             f"{SPIKE_BURST} lookups at once (rule copy: 2s buckets, 20s baseline, 4s history)",
             lambda: (_spike_history(["sven", "stan"], 6.0, 0.5)
                      + _each(list(range(SPIKE_BURST)), "sven", ORDER_LOOKUP)
                      + [Run("stan", ORDER_LOOKUP.format(v=1))]),
             [Expect("sven", (SPIKE_PARAMS["min_runs"], SPIKE_BURST + 12))], SPIKE_PARAMS),
    Scenario("usage-spike", "near-miss",
             f"a new user's first {SPIKE_BURST} queries at once: no history to compare with",
             lambda: _each(list(range(SPIKE_BURST)), "nora", ORDER_LOOKUP), [], SPIKE_PARAMS),
]
