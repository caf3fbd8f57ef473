"""How tests/data/store/schema5.db was made: by the release before migrations (commit 9455f2b,
schema_version 5, tables made by ``create_all``), with a few rows in every table.

    git worktree add /tmp/uw5 9455f2b
    PYTHONPATH=/tmp/uw5 python tests/data/store/make_schema5.py /tmp/schema5.db

Kept for the record; the database file, not this script, is what the tests read (this script run
with today's code would make a database at the newest revision instead).
"""

import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from usagewatch.model import FileCursor, FindingUpdate
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dl
from usagewatch.store.tables import SCHEMA_VERSION

assert SCHEMA_VERSION == 5, "run this with the code of the release before migrations (see the docstring)"
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


def at(m):
    return T0 + timedelta(minutes=m)


def upd(user, count, key_fp="f", episode="e1"):
    return FindingUpdate(rule="same-query-different-ids", key=f"user={user} fingerprint={key_fp}", episode=episode,
                         user=user, database="dw", count=count, distinct_values=count, first_seen=at(0), last_seen=at(count),
                         fingerprint=key_fp, sample_sql="SELECT * FROM orders WHERE company_id = 178",
                         normalized_sql="SELECT * FROM orders WHERE company_id = ?", varying=["company_id"],
                         sample_values=["178", "179"], title=f"{user} ran one query {count} times",
                         intervention="Use one query with a list of company IDs.", howto="batch-ids.md",
                         details={"runs_per_hour": count})


path = sys.argv[1]
s = Store(f"sqlite:///{path}", "https://wiki.example.com/howto/")
c1 = FileCursor("warehouse", "/var/log/postgresql/pg.csv", 2049, 131, 4096, "a" * 64, 123456, {"held": {"s1": "SELECT 1"}},
                mark_hash="b" * 64, records=5000, bad={"csv": 2}, last_ts="2024-03-04T11:16:00+00:00")
c2 = FileCursor("warehouse", "/var/log/postgresql/pg.csv.1", 2049, 77, 4096, "c" * 64, 999, {})
windows: dict[tuple[str, str], dict[str, Any] | None] = {("same-query-different-ids", "user=kim fingerprint=f"): {"runs": [1, 2, 3]},
                                                         ("repeated-identical", "user=lee fingerprint=g"): {"n": 7}}
s.commit(Batch([upd("kim", 136), upd("lee", 40, "g")], [c1, c2], windows), now=at(140))
s.commit(Batch([upd("ann", 25, "h")]), now=at(150))
s.transition(1, "acknowledged", "sam", now=at(200))
s.transition(1, "coached", "sam", note="showed her IN lists", now=at(300))
s.transition(2, "resolved", "sam", now=at(310))
s.add_silence("noisy-*", "etl", at(60*24*30), "nightly batch", "sam", now=at(0))
rows = dl.unrouted(s)
for r in rows:
    dl.route(s, r, [dl.Planned("support", "email", "pending"), dl.Planned("team", "email", "queued")], at(160))
d = dl.due(s, at(170))
dl.mark_sent(s, d[0]["id"], "<uw.1@example.com>", at(171))
dl.mark_failed(s, d[1]["id"], "connection refused", None)
q = dl.queued(s, "team", "email")
dl.record_digest(s, "team", "email", 1, "<digest.1@example.com>", at(180),
    [{"finding_id": r["finding_id"], "change": "opened", "count": 10, "distinct_values": 10} for r in q[:2]], [r["id"] for r in q[:2]])
s.close()
