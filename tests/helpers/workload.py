"""The "136-query story" as a real workload on a real PostgreSQL, for tests and the sample logs.

``run_workload(cluster)`` creates a database (``warehouse``, or ``warehouse_N`` when a shared test
cluster already has one), a small schema and the roles below, then drives these sessions. Each
user has one connection; statements of all users are interleaved round-robin, in a fixed order, so
the workload is deterministic (timestamps and pids aside).

=========  =====================================================================  ==========
user       what it runs                                                            executions
=========  =====================================================================  ==========
kim        ``SELECT id, amount, created_at FROM orders WHERE company_id = N``      136
           with 136 different N, values inlined (simple protocol); keyword case,
           line breaks and a comment vary between runs. THE pattern to find.
bi_tool    ``... FROM orders o WHERE o.customer_id = %s`` with 40 different ids     40
           bound by psycopg (extended protocol: the first 5 as ``<unnamed>``,
           then psycopg prepares ``_pg3_N`` and only binds + executes it).
dash       one identical dashboard query, 25 times (psycopg prepares it after 5).   25
lee        ``SELECT name, country FROM companies WHERE id = N``, 10 different N.    10
ann        ``SELECT sum(amount) FROM orders WHERE customer_id = N``, 19 diff. N.    19
sam        noise: 8 distinct queries, one multi-line with a quoted newline; then    11
           three failures: a missing table (42P01, logged statement + ERROR),
           a syntax error (42601, ERROR only) and a division by zero (22012).
ops        noise: BEGIN / UPDATE / COMMIT (psycopg's implicit transaction), then     4
           an extended-protocol query whose bind fails (22P02, ERROR only).
=========  =====================================================================  ==========

Setup statements run as ``postgres`` in the database (and in ``postgres`` for CREATE DATABASE /
roles); they are counted in ``WorkloadResult.setup_statements`` but not per user. Each
execution is one QueryEvent; the failures are events with ``error_code`` set. The returned
``WorkloadResult`` carries the workload's own tally (``runs``) and the values each user sent, so
tests compare the assembler's output with what was actually executed.

``python -m tests.helpers.workload OUTDIR`` starts a throwaway cluster like the ``pg_cluster``
fixture, runs the workload, stops the cluster (so every record is written) and copies the logs of that one run to
``OUTDIR/postgresql.csv``, ``OUTDIR/postgresql.json`` and ``OUTDIR/postgresql.log`` (stderr, with
``tests.helpers.postgres.STDERR_PREFIX``). That is how ``usagewatch/samples/`` was made.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.postgres import PgCluster, remove_cluster, start_cluster

USERS = ("kim", "bi_tool", "dash", "lee", "ann", "sam", "ops")
APPLICATIONS = {"kim": "psql", "bi_tool": "Metabase", "dash": "Grafana", "lee": "DBeaver",
                "ann": "DBeaver", "sam": "psql", "ops": "cron-job"}

KIM_IDS = [1000 + 7 * i for i in range(136)]
BI_CUSTOMERS = [500 + 11 * i for i in range(40)]
LEE_IDS = [1003 + 5 * i for i in range(10)]
ANN_CUSTOMERS = [700 + 13 * i for i in range(19)]
DASH_RUNS = 25

KIM_TEMPLATES = (
    "SELECT id, amount, created_at FROM orders WHERE company_id = {v}",
    "select id, amount, created_at from orders where company_id = {v}",
    "SELECT id, amount, created_at\n  FROM orders\n WHERE company_id = {v}",
    "/* kim: quarterly check */ SELECT id, amount, created_at FROM orders WHERE company_id = {v}",
    "SELECT  id,  amount,  created_at  FROM  orders  WHERE  company_id  =  {v}  -- next company",
)
BI_SQL = "SELECT o.id, o.amount, o.created_at FROM orders o WHERE o.customer_id = %s ORDER BY o.created_at"
DASH_SQL = ("SELECT date_trunc('month', created_at) AS month, count(*), sum(amount) FROM orders "
            "WHERE created_at >= DATE '2026-01-01' GROUP BY 1 ORDER BY 1")
LEE_SQL = "SELECT name, country FROM companies WHERE id = {v}"
ANN_SQL = "SELECT sum(amount) FROM orders WHERE customer_id = {v}"
MULTILINE_SQL = ("SELECT id, name\nFROM companies\nWHERE name <> 'first line\nsecond line'\n"
                 "  AND country = 'NO'")
SAM_QUERIES = (
    "SELECT count(*) FROM companies",
    "SELECT country, count(*) FROM companies GROUP BY country ORDER BY 2 DESC",
    "SELECT max(amount) FROM orders",
    MULTILINE_SQL,
    "SELECT c.name, sum(o.amount) FROM companies c JOIN orders o ON o.company_id = c.id "
    "GROUP BY c.name ORDER BY 2 DESC LIMIT 5",
    "SELECT 'it''s a quote' AS s, \"id\" FROM companies LIMIT 1",
    "SELECT now()::date - min(created_at)::date FROM orders",
    "SHOW server_version",
)
SAM_FAILURES = (  # (sql, sqlstate)
    ("SELECT * FROM no_such_table WHERE id = 1", "42P01"),
    ("SELEC id FROM companies", "42601"),
    ("SELECT amount / 0 FROM orders LIMIT 1", "22012"),
)


def expected_runs() -> Counter[str]:
    """Executions per user that the workload makes (the table above), from its own constants."""
    return Counter({
        "kim": len(KIM_IDS), "bi_tool": len(BI_CUSTOMERS), "dash": DASH_RUNS, "lee": len(LEE_IDS),
        "ann": len(ANN_CUSTOMERS), "sam": len(SAM_QUERIES) + len(SAM_FAILURES), "ops": 4,
    })


@dataclass
class WorkloadResult:
    """What the workload did: per-user execution tally, values sent, failures, marker."""

    database: str
    runs: Counter[str] = field(default_factory=Counter)
    values: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    setup_statements: int = 0
    marker: str = ""


def _pick_database(cluster: PgCluster) -> str:
    with cluster.connect() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    name, n = "warehouse", 1
    while name in names:
        n += 1
        name = f"warehouse_{n}"
    return name


def _setup(cluster: PgCluster, db: str) -> int:
    """Roles, database, schema and deterministic data. Returns the number of statements run."""
    for user in USERS:
        cluster.create_role(user)
    cluster.execute(f"CREATE DATABASE {db}")
    statements = [
        "CREATE TABLE companies (id int PRIMARY KEY, name text NOT NULL, country text NOT NULL)",
        "CREATE TABLE customers (id int PRIMARY KEY, company_id int NOT NULL, name text NOT NULL)",
        "CREATE TABLE orders (id serial PRIMARY KEY, company_id int NOT NULL, customer_id int NOT NULL,"
        " amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL)",
        "INSERT INTO companies SELECT i, 'Company ' || i, (ARRAY['NO','SE','DE','FR'])[1 + i % 4]"
        " FROM generate_series(1000, 2000) AS i",
        "INSERT INTO customers SELECT i, 1000 + (i * 37) % 1000, 'Customer ' || i"
        " FROM generate_series(500, 1000) AS i",
        "INSERT INTO orders (company_id, customer_id, amount, created_at)"
        " SELECT 1000 + (i * 7) % 1000, 500 + (i * 13) % 500, (i % 997) + 0.5,"
        " TIMESTAMPTZ '2026-01-01 00:00:00+00' + (i % 300) * INTERVAL '1 day'"
        " FROM generate_series(1, 3000) AS i",
        "CREATE INDEX ON orders (company_id)",
        "CREATE INDEX ON orders (customer_id)",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC",
        "GRANT UPDATE ON orders TO ops",
    ]
    with cluster.connect(dbname=db) as conn:
        for sql in statements:
            conn.execute(sql)  # type: ignore[arg-type]
    return len(statements) + 1


Step = Callable[[Any], None]


def _sessions(result: WorkloadResult) -> dict[str, Iterator[Step]]:
    """Per user, a generator of steps; each step runs one execution on the user's connection."""
    runs, values, errors = result.runs, result.values, result.errors

    def run(user: str, sql: str, params: tuple[Any, ...] | None = None, error: str | None = None) -> Step:
        def step(conn: Any) -> None:
            runs[user] += 1
            if error:
                errors[user].append(error)
                try:
                    conn.execute(sql, params)
                except Exception as exc:  # noqa: BLE001 - the failure is the point
                    got = getattr(exc, "sqlstate", None)
                    if got != error:
                        raise AssertionError(f"{sql!r}: expected SQLSTATE {error}, got {got}") from exc
                    return
                raise AssertionError(f"{sql!r} should have failed with {error}")
            conn.execute(sql, params)
        return step

    def kim() -> Iterator[Step]:
        for i, v in enumerate(KIM_IDS):
            values["kim"].append(str(v))
            yield run("kim", KIM_TEMPLATES[i % len(KIM_TEMPLATES)].format(v=v))

    def bi_tool() -> Iterator[Step]:
        for v in BI_CUSTOMERS:
            values["bi_tool"].append(str(v))
            yield run("bi_tool", BI_SQL, (v,))

    def dash() -> Iterator[Step]:
        for _ in range(DASH_RUNS):
            yield run("dash", DASH_SQL)

    def lee() -> Iterator[Step]:
        for v in LEE_IDS:
            values["lee"].append(str(v))
            yield run("lee", LEE_SQL.format(v=v))

    def ann() -> Iterator[Step]:
        for v in ANN_CUSTOMERS:
            values["ann"].append(str(v))
            yield run("ann", ANN_SQL.format(v=v))

    def sam() -> Iterator[Step]:
        for sql in SAM_QUERIES:
            yield run("sam", sql)
        for sql, state in SAM_FAILURES:
            yield run("sam", sql, error=state)

    def ops() -> Iterator[Step]:
        def transaction(conn: Any) -> None:  # BEGIN (implicit), UPDATE, COMMIT: 3 executions
            runs["ops"] += 3
            conn.autocommit = False
            conn.execute("UPDATE orders SET amount = amount + 0 WHERE id = 42")
            conn.commit()
            conn.autocommit = True
        yield transaction
        yield run("ops", "SELECT id FROM orders WHERE id = %s", ("not-a-number",), error="22P02")

    return {"kim": kim(), "bi_tool": bi_tool(), "dash": dash(), "lee": lee(), "ann": ann(),
            "sam": sam(), "ops": ops()}


def run_workload(cluster: PgCluster, database: str | None = None) -> WorkloadResult:
    """Run the story on ``cluster`` (see the module docstring); returns the workload's own tally.

    Ends with a marker query and waits until it reached both logs, so every execution of the
    workload is in the files when this returns.
    """
    db = database or _pick_database(cluster)
    result = WorkloadResult(database=db)
    result.setup_statements = _setup(cluster, db)
    conns = {u: cluster.connect(user=u, dbname=db, application_name=APPLICATIONS[u]) for u in USERS}
    try:
        pending = _sessions(result)
        while pending:
            for user in list(pending):
                step = next(pending[user], None)
                if step is None:
                    del pending[user]
                else:
                    step(conns[user])
    finally:
        for conn in conns.values():
            conn.close()
    result.marker = f"usagewatch-workload-done:{db}"
    with cluster.connect(dbname=db) as conn:
        conn.execute(f"SELECT '{result.marker}'")  # type: ignore[arg-type]
    result.setup_statements += 1
    cluster.wait_for_log(result.marker)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.helpers.workload OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    cluster = start_cluster()
    try:
        result = run_workload(cluster)
        cluster.stop()
        for kind, name in (("csvlog", "postgresql.csv"), ("jsonlog", "postgresql.json"),
                           ("stderr", "postgresql.log")):
            (src,) = cluster.log_files(kind)
            shutil.copyfile(src, out / name)
    finally:
        remove_cluster(cluster)
    print(f"database {result.database}: {dict(result.runs)}; logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
