"""The "136-query story" as a real workload on a real MariaDB, for tests and the sample logs.

The MySQL twin of ``tests/helpers/workload.py``. ``run_workload(server)`` creates a database
(``warehouse``, or ``warehouse_N`` when the server already has one), a small schema, the users below
(empty passwords, SELECT on the database), then drives one PyMySQL connection per user, statements
interleaved round-robin in a fixed order: deterministic, timestamps and thread ids aside.

=========  =====================================================================  ==========
user       what it runs                                                            statements
=========  =====================================================================  ==========
kim        ``SELECT id, amount, created_at FROM orders WHERE company_id = N``      136
           with 136 different N, values inlined; keyword case, line breaks, a
           comment and spacing vary between runs. THE pattern to find.
bi_tool    a server-side prepared statement: ``PREPARE bi FROM '... WHERE          41
           o.customer_id = ? ...'`` once, then ``EXECUTE bi USING N`` with 40
           different N. PyMySQL has no binary-protocol prepared statements (it
           interpolates parameters client-side, which would look like plain SQL),
           so the statement is prepared and executed with SQL. The general log
           shows ``Query PREPARE``/``Prepare`` and, per run, ``Query EXECUTE``
           plus ``Execute <SELECT with the value>``; the slow log shows the
           PREPARE and 40 SELECTs with the values.
dash       one identical dashboard query, 25 times.                                25
lee        ``SELECT name, country FROM companies WHERE id = N``, 10 different N.    10
ann        ``SELECT sum(amount) FROM orders WHERE customer_id = N``, 19 diff. N.    19
sam        noise: 6 distinct queries, one multi-line with a blank line and a        9
           quoted newline; then three failures: a missing table (1146), a syntax
           error (1064), an unknown column (1054). MariaDB logs failed
           statements in both logs like the others (neither log says they failed).
ops        noise: ``BEGIN``, an UPDATE, ``COMMIT`` (PyMySQL's begin/commit), then a   4
           ``USE`` query; also a ``select_db`` (COM_INIT_DB: an ``Init DB`` line in
           the general log, not an execution).
=========  =====================================================================  ==========

Besides these, PyMySQL sends ``SET NAMES utf8mb4`` on every new connection: one more execution per
user, counted in ``WorkloadResult.driver``. Setup statements run as ``root`` and are counted in
``setup_statements``. ``expected_runs()`` is the number of query events each user must get from
either log (statements + driver statements).

``python -m tests.helpers.mysql_workload OUTDIR`` starts a throwaway server like the
``mariadb_server`` fixture, runs the workload, flushes the logs and copies them to
``OUTDIR/mysql-slow.log`` and ``OUTDIR/mysql-general.log``. That is how ``usagewatch/samples/``
got its MariaDB logs.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.mariadb import MariaDB, remove_server, start_server

USERS = ("kim", "bi_tool", "dash", "lee", "ann", "sam", "ops")
DRIVER_STATEMENTS = ("SET NAMES utf8mb4",)  # what PyMySQL sends on connect

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
BI_SELECT = "SELECT o.id, o.amount, o.created_at FROM orders o WHERE o.customer_id = ? ORDER BY o.created_at"
BI_PREPARE = f"PREPARE bi FROM '{BI_SELECT}'"
BI_EXECUTE = "EXECUTE bi USING {v}"
DASH_SQL = ("SELECT DATE_FORMAT(created_at, '%Y-%m') AS month, count(*), sum(amount) FROM orders "
            "WHERE created_at >= DATE '2026-01-01' GROUP BY 1 ORDER BY 1")
LEE_SQL = "SELECT name, country FROM companies WHERE id = {v}"
ANN_SQL = "SELECT sum(amount) FROM orders WHERE customer_id = {v}"
MULTILINE_SQL = ("SELECT id, name\nFROM companies\n\nWHERE name <> 'first line\nsecond line'\n"
                 "  AND country = 'NO'")
SAM_QUERIES = (
    "SELECT count(*) FROM companies",
    "SELECT country, count(*) FROM companies GROUP BY country ORDER BY 2 DESC",
    MULTILINE_SQL,
    "SELECT c.name, sum(o.amount) FROM companies c JOIN orders o ON o.company_id = c.id "
    "GROUP BY c.name ORDER BY 2 DESC LIMIT 5",
    "SELECT 'it''s a quote' AS s, `id` FROM companies LIMIT 1",
    "SELECT VERSION()",
)
SAM_FAILURES = (  # (sql, MySQL error number)
    ("SELECT * FROM no_such_table WHERE id = 1", 1146),
    ("SELEC id FROM companies", 1064),
    ("SELECT no_such_column FROM orders LIMIT 1", 1054),
)
OPS_UPDATE = "UPDATE orders SET amount = amount + 0 WHERE id = 42"


def expected_runs() -> Counter[str]:
    """Query events per user that either log must give (the table above, plus the driver's
    statements), from the workload's own constants."""
    own = Counter({
        "kim": len(KIM_IDS), "bi_tool": 1 + len(BI_CUSTOMERS), "dash": DASH_RUNS, "lee": len(LEE_IDS),
        "ann": len(ANN_CUSTOMERS), "sam": len(SAM_QUERIES) + len(SAM_FAILURES), "ops": 4,
    })
    return own + Counter({u: len(DRIVER_STATEMENTS) for u in USERS})


@dataclass
class WorkloadResult:
    """What the workload did: per-user statements, driver statements, values sent, failures."""

    database: str
    runs: Counter[str] = field(default_factory=Counter)
    driver: Counter[str] = field(default_factory=Counter)
    values: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    setup_statements: int = 0
    marker: str = ""

    def executions(self) -> Counter[str]:
        return self.runs + self.driver


def _pick_database(server: MariaDB) -> str:
    """A database name not taken yet (2 statements as root: the driver's and SHOW DATABASES)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            names = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    name, n = "warehouse", 1
    while name in names:
        n += 1
        name = f"warehouse_{n}"
    return name


def _setup(server: MariaDB, db: str) -> int:
    """Database, schema, deterministic data (MariaDB's sequence tables) and users. Returns the
    number of statements run (one root connection)."""
    statements = [
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.companies (id int PRIMARY KEY, name varchar(60) NOT NULL, country char(2) NOT NULL)",
        f"CREATE TABLE {db}.customers (id int PRIMARY KEY, company_id int NOT NULL, name varchar(60) NOT NULL)",
        f"CREATE TABLE {db}.orders (id int AUTO_INCREMENT PRIMARY KEY, company_id int NOT NULL,"
        " customer_id int NOT NULL, amount decimal(12,2) NOT NULL, created_at datetime NOT NULL,"
        " KEY (company_id), KEY (customer_id))",
        f"INSERT INTO {db}.companies SELECT seq, CONCAT('Company ', seq), ELT(1 + seq % 4, 'NO', 'SE', 'DE', 'FR')"
        f" FROM {db}.seq_1000_to_2000",
        f"INSERT INTO {db}.customers SELECT seq, 1000 + (seq * 37) % 1000, CONCAT('Customer ', seq) FROM {db}.seq_500_to_1000",
        f"INSERT INTO {db}.orders (company_id, customer_id, amount, created_at)"
        " SELECT 1000 + (seq * 7) % 1000, 500 + (seq * 13) % 500, (seq % 997) + 0.5,"
        f" TIMESTAMP '2026-01-01 00:00:00' + INTERVAL (seq % 300) DAY FROM {db}.seq_1_to_3000",
    ]
    for user in USERS:
        statements.append(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY ''")
        statements.append(f"GRANT SELECT ON {db}.* TO '{user}'@'%'")
    statements.append(f"GRANT UPDATE ON {db}.orders TO 'ops'@'%'")
    server.execute(*statements)
    return len(statements) + len(DRIVER_STATEMENTS)


Step = Callable[[Any], None]


def _sessions(result: WorkloadResult, db: str) -> dict[str, Iterator[Step]]:
    """Per user, a generator of steps; each step runs on the user's connection."""
    runs, values, errors = result.runs, result.values, result.errors

    def run(user: str, sql: str, error: int | None = None) -> Step:
        def step(conn: Any) -> None:
            runs[user] += 1
            with conn.cursor() as cur:
                if error is None:
                    cur.execute(sql)
                    cur.fetchall()
                    return
                errors[user].append(error)
                try:
                    cur.execute(sql)
                except Exception as exc:  # noqa: BLE001 - the failure is the point
                    got = exc.args[0] if exc.args else None
                    if got != error:
                        raise AssertionError(f"{sql!r}: expected error {error}, got {got}") from exc
                    return
                raise AssertionError(f"{sql!r} should have failed with {error}")
        return step

    def kim() -> Iterator[Step]:
        for i, v in enumerate(KIM_IDS):
            values["kim"].append(str(v))
            yield run("kim", KIM_TEMPLATES[i % len(KIM_TEMPLATES)].format(v=v))

    def bi_tool() -> Iterator[Step]:
        yield run("bi_tool", BI_PREPARE)
        for v in BI_CUSTOMERS:
            values["bi_tool"].append(str(v))
            yield run("bi_tool", BI_EXECUTE.format(v=v))

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
        for sql, errno in SAM_FAILURES:
            yield run("sam", sql, error=errno)

    def ops() -> Iterator[Step]:
        def transaction(conn: Any) -> None:  # BEGIN, UPDATE, COMMIT: 3 executions
            runs["ops"] += 3
            conn.begin()
            with conn.cursor() as cur:
                cur.execute(OPS_UPDATE)
            conn.commit()
        yield transaction
        yield lambda conn: conn.select_db(db)  # COM_INIT_DB: not an execution
        yield run("ops", f"USE {db}")

    return {"kim": kim(), "bi_tool": bi_tool(), "dash": dash(), "lee": lee(), "ann": ann(),
            "sam": sam(), "ops": ops()}


def run_workload(server: MariaDB, database: str | None = None) -> WorkloadResult:
    """Run the story on ``server`` (see the module docstring); returns the workload's own tally.

    Ends with a marker query (as root) and waits until it reached both logs.
    """
    db = database or _pick_database(server)
    result = WorkloadResult(database=db)
    result.setup_statements = _setup(server, db) + (0 if database else 1 + len(DRIVER_STATEMENTS))
    conns = {}
    for user in USERS:
        conns[user] = server.connect(user=user, database=db)
        result.driver[user] += len(DRIVER_STATEMENTS)
    try:
        pending = _sessions(result, db)
        while pending:
            for user in list(pending):
                step = next(pending[user], None)
                if step is None:
                    del pending[user]
                else:
                    step(conns[user])
    finally:
        for conn in conns.values():
            # The server writes a slow-log entry after answering: a ping answered on the same thread
            # means the entries of that thread's statements are written.
            conn.ping(reconnect=False)
            conn.close()
    result.marker = f"usagewatch-workload-done:{db}"
    server.execute(f"SELECT '{result.marker}'")
    result.setup_statements += 1 + len(DRIVER_STATEMENTS)
    server.wait_for_logs(result.marker)
    return result


def wait_for_next_second() -> None:
    """Sleep into the next wall-clock second: MariaDB's general log prints the time only when the
    second changes, so a slice of the log that starts now starts with a timestamp."""
    time.sleep(1.02 - (time.time() % 1.0))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.helpers.mysql_workload OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    server = start_server()
    try:
        result = run_workload(server)
        server.flush_logs()
        shutil.copyfile(server.slow_log, out / "mysql-slow.log")
        shutil.copyfile(server.general_log, out / "mysql-general.log")
    finally:
        remove_server(server)
    print(f"database {result.database}: {dict(result.executions())}; logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
