"""A relay with a backlog: more changes queued than one routing takes (Label Studio writing hard,
or the relay back after a while). Every batch is routed, every delivery made once, and the relay's
and the webhook's caps hold throughout.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from outbox.receiver import Received, Receiver, Reply
from relay.relay import ROUTE_LIMIT
from tests.support import lsdb
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

CONCURRENCY = 4  # the relay's places
WEBHOOK_CAP = 3  # each webhook's max_concurrency
TASKS = ROUTE_LIMIT + ROUTE_LIMIT // 5  # one full batch and part of the next


@pytest.fixture
def project(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.project(conn, 1, 1)
    lsdb.continue_ids(conn, 100)
    conn.execute("delete from outbox.change")
    return conn


def queue_backlog(conn: Any) -> None:
    """TASKS single-task imports, each its own transaction."""
    conn.execute(
        f"do $$ begin for n in 1..{TASKS} loop"
        " insert into task (data, project_id) values (jsonb_build_object('n', n), 1); commit;"
        " end loop; end $$"
    )
    assert conn.execute("select count(distinct xid) as n from outbox.change").fetchone()["n"] == TASKS


async def test_a_backlog_beyond_one_routing_is_delivered_once_within_every_cap(project, start_relay):
    conn = project
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def respond(request: Received) -> Reply:
        in_flight[request.path] += 1
        in_flight["all"] += 1
        for key in (request.path, "all"):
            peak[key] = max(peak[key], in_flight[key])
        try:
            await anyio.sleep(0.002)
        finally:
            in_flight[request.path] -= 1
            in_flight["all"] -= 1
        return Reply()

    async with Receiver(respond) as receiver:
        for name in ("a", "b"):
            lsdb.webhook(conn, f"{receiver.url}/{name}", project_id=1, max_concurrency=WEBHOOK_CAP)
        queue_backlog(conn)
        async with start_relay(concurrency=CONCURRENCY):
            await eventually(
                lambda: len(receiver.requests) >= 2 * TASKS or None,
                timeout=20,
                what="every task delivered",
                last=lambda: (
                    f"{len(receiver.requests)} arrived; "
                    + repr(
                        conn.execute(
                            "select state, count(*), min(lease_until) from outbox.delivery group by 1"
                        ).fetchall()
                    )
                    + repr(conn.execute("select count(*) from outbox.change").fetchall())
                ),
            )
    assert peak["all"] <= CONCURRENCY and peak["/a"] <= WEBHOOK_CAP and peak["/b"] <= WEBHOOK_CAP, peak
    delivered = conn.execute(
        "select count(*) as n, count(distinct event_id) as events from outbox.delivery where state = 'delivered'"
    ).fetchone()
    assert delivered == {"n": 2 * TASKS, "events": TASKS}
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2 * TASKS == len(receiver.requests)
