"""Routing: the first matching route wins, high severity to on-call at once and the rest to a digest;
no routes means one immediate route to notify.email.to; each (outbox row, route, channel) is one
delivery, never two."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.notify.test_sender import Clock, finding, notify_cfg, sender_for
from usagewatch.notify.routing import choose, delivery_message_id, digest_message_id, route_pending
from usagewatch.store import Batch, Store
from usagewatch.store import deliveries as dq
from usagewatch.store.tables import deliveries


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/uw.db", "https://wiki.example.com/")
    yield s
    s.close()

ROUTES = [
    {"name": "oncall", "match": {"severities": ["high"]}, "email_to": ["oncall@example.com"]},
    {"name": "team", "match": {"rules": ["same-query-*"]}, "email_to": ["team@example.com"], "mode": "digest"},
]


def test_high_severity_goes_to_oncall_at_once_and_the_rest_waits_for_the_digest(store, smtp_server):
    clock = Clock()
    sender = sender_for(store, smtp_server, clock, notify_cfg(smtp_server, routes=ROUTES))
    store.commit(Batch([finding("kim", 136, severity="high"), finding("lee", 40),
                        finding("ann", 30, rule="other-rule")]), now=clock.now)
    assert sender.send_due() == 1
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("oncall@example.com",) and "kim" in mail.message["Subject"]
    rows = [(d["finding_id"], d["route"], d["channel"], d["status"]) for d in dq.listing(store)]
    assert rows == [(1, "oncall", "email", "sent"), (2, "team", "email", "queued")]
    # ann's rule matches no route: recorded on the outbox row, nobody is told
    ann = store.outbox_rows()[2]
    assert ann["status"] == "routed" and "no route matches rule other-rule" in ann["last_error"]
    assert sender.next_due() is None  # queued deliveries wait for the digest job, not the sender


def test_no_routes_means_one_immediate_route_to_notify_email_to(smtp_server):
    cfg = notify_cfg(smtp_server)
    route = choose(cfg, "any-rule", "info")
    assert route is not None
    assert (route.name, route.email_to, route.mode) == ("default", ["support@example.com"], "immediate")


def test_routing_twice_makes_no_second_delivery(store, smtp_server):
    clock = Clock()
    cfg = notify_cfg(smtp_server, routes=ROUTES)
    store.commit(Batch([finding("kim", 136, severity="high")]), now=clock.now)
    row = dq.unrouted(store)[0]
    assert route_pending(store, cfg, clock.now) == 1
    assert route_pending(store, cfg, clock.now) == 0
    # a second router that read the row before the first one marked it routed inserts nothing
    assert dq.route(store, row, [dq.Planned("oncall", "email", "pending")], clock.now) == 0
    assert len(dq.listing(store)) == 1
    # and the database itself refuses a duplicate, whatever the code does
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(deliveries.insert().values(outbox_id=1, finding_id=1, event="opened", route="oncall",
                                                channel="email", status="pending", attempts=0,
                                                next_attempt_at=clock.now, created_at=clock.now))


def test_message_ids_are_stable_and_distinct_per_route_and_channel():
    one = delivery_message_id(7, 3, "oncall", "email", "Usagewatch <uw@Example.com>")
    assert one == delivery_message_id(7, 3, "oncall", "email", "Usagewatch <uw@Example.com>")
    assert one == "<usagewatch.n7.f3.oncall.email@example.com>"
    others = {delivery_message_id(7, 3, "oncall", "webhook:chat", "uw@example.com"),
              delivery_message_id(7, 3, "team", "email", "uw@example.com"),
              delivery_message_id(8, 3, "oncall", "email", "uw@example.com")}
    assert len(others) == 3 and one not in others
    # names that would clean up alike stay apart; header-breaking characters never get in
    assert delivery_message_id(1, 1, "a b", "email", None) != delivery_message_id(1, 1, "a/b", "email", None)
    assert "\n" not in delivery_message_id(1, 1, "x\r\nBcc: y", "email", None)
    assert digest_message_id("team", "email", 2, "uw@example.com") == "<usagewatch.digest2.team.email@example.com>"
