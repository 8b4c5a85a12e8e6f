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
from relay.relay import LEASE_MARGIN, ROUTE_LIMIT
from tests.conftest import relay_settings
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


def claim_connections(conn: Any, *, kill_idle: bool = False) -> int:
    """The relay's connections for claims beside a routing; ``kill_idle``: terminate the idle
    ones (between two claims: never one whose COMMIT may be unanswered)."""
    row = conn.execute(
        "select count(*) as n, count(*) filter (where %s and pg_terminate_backend(pid)) as killed"
        " from pg_stat_activity where application_name = 'outbox-relay-claim' and (not %s or state = 'idle')",
        (kill_idle, kill_idle),
    ).fetchone()
    return int(row["killed"] if kill_idle else row["n"])


def queue_backlog(conn: Any, tasks: int = TASKS) -> None:
    """``tasks`` single-task imports, each its own transaction."""
    conn.execute(
        f"do $$ begin for n in 1..{tasks} loop"
        " insert into task (data, project_id) values (jsonb_build_object('n', n), 1); commit;"
        " end loop; end $$"
    )
    assert conn.execute("select count(distinct xid) as n from outbox.change").fetchone()["n"] == tasks


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
            # what the first batch routed was claimed beside the routing of the rest
            assert claim_connections(conn) == 1
    assert peak["all"] <= CONCURRENCY and peak["/a"] <= WEBHOOK_CAP and peak["/b"] <= WEBHOOK_CAP, peak
    delivered = conn.execute(
        "select count(*) as n, count(distinct event_id) as events from outbox.delivery where state = 'delivered'"
    ).fetchone()
    assert delivered == {"n": 2 * TASKS, "events": TASKS}
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2 * TASKS == len(receiver.requests)


async def test_claims_beside_a_routing_survive_their_connection_being_killed(project, start_relay):
    """The claim connection dies between claims: the routing is never held up by it, nothing is
    sent twice, and nothing is lost. PostgreSQL reports a session idle just before it sends the
    COMMIT's answer, so a claim may be committed and its answer lost with the connection: those
    deliveries stay leased, unsent, until their lease expires, which here passes in SQL."""
    conn = project
    tasks = 2 * ROUTE_LIMIT + ROUTE_LIMIT // 5  # two routings with claims beside them
    lease = relay_settings().webhook_timeout + LEASE_MARGIN
    async with Receiver() as receiver:
        lsdb.webhook(conn, f"{receiver.url}/a", project_id=1, max_concurrency=WEBHOOK_CAP)
        queue_backlog(conn, tasks)
        killed = 0

        def delivered() -> bool:
            nonlocal killed
            killed += claim_connections(conn, kill_idle=True)
            # a lease taken over 3 s ago was lost with its answer (every request here takes ms)
            conn.execute(
                "update outbox.delivery set lease_until = now() where state = 'pending'"
                " and lease_until > now() and lease_until < now() + make_interval(secs => %s)",
                (lease - 3,),
            )
            return len(receiver.requests) >= tasks

        async with start_relay(concurrency=CONCURRENCY):
            await eventually(
                delivered,
                timeout=30,
                interval=0.005,
                what="every task delivered",
                last=lambda: (
                    f"{len(receiver.requests)} arrived, {killed} claim connection(s) killed; "
                    + repr(
                        conn.execute(
                            "select state, count(*), count(lease_until) as leased, min(lease_until) - now() as lease"
                            " from outbox.delivery group by 1"
                        ).fetchall()
                    )
                    + repr(conn.execute("select count(*) from outbox.change").fetchall())
                ),
            )
    assert killed >= 1, "the claim connection was never there to be killed"
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == tasks == len(receiver.requests)
    states = conn.execute("select state, count(*) as n from outbox.delivery group by 1").fetchall()
    assert states == [{"state": "delivered", "n": tasks}]
