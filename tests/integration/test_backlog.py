"""A relay with a backlog: more changes queued than one routing takes (Label Studio writing hard,
or the relay back after a while). Every batch is routed, every delivery made once, and the relay's
and the webhook's caps hold throughout.
"""

from __future__ import annotations

import time
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
# two full batches and part of a third: the second and third routings take long enough for the
# first batch's deliveries to be claimed beside them (checked)
TASKS = 2 * ROUTE_LIMIT + ROUTE_LIMIT // 5


@pytest.fixture
def project(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.project(conn, 1, 1)
    lsdb.continue_ids(conn, 100)
    conn.execute("delete from outbox.change")
    return conn


def claim_connections(conn: Any) -> int:
    """The relay's connections for claims beside a routing."""
    row = conn.execute(
        "select count(*) as n from pg_stat_activity where application_name = 'outbox-relay-claim'"
    ).fetchone()
    return int(row["n"])


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


LEASE = relay_settings().webhook_timeout + LEASE_MARGIN
BUSY = ("active", "idle in transaction")  # a connection in the middle of a transaction


def expire_lost_leases(conn: Any) -> None:
    """Let the time pass, in SQL, for leases taken over 3 s ago (every request here takes
    milliseconds): those of a claim whose COMMIT was answered to a connection that died. PostgreSQL
    reports a session idle just before it sends that answer."""
    conn.execute(
        "update outbox.delivery set lease_until = now() where state = 'pending'"
        " and lease_until > now() and lease_until < now() + make_interval(secs => %s)",
        (LEASE - 3,),
    )


def backlog_state(conn: Any) -> str:
    deliveries = conn.execute(
        "select state, count(*), count(lease_until) as leased, min(lease_until) - now() as lease"
        " from outbox.delivery group by 1"
    ).fetchall()
    changes = conn.execute("select count(*) as n from outbox.change").fetchone()["n"]
    return f"deliveries {deliveries!r}, {changes} change(s) queued"


def kill(conn: Any, purpose: str, states: tuple[str, ...]) -> int:
    """Terminate the relay's ``purpose`` connections in one of ``states``; how many."""
    row = conn.execute(
        "select count(*) filter (where pg_terminate_backend(pid)) as n from pg_stat_activity"
        " where application_name = %s and state = any(%s)",
        (f"outbox-relay-{purpose}", list(states)),
    ).fetchone()
    return int(row["n"])


async def drain_while(conn: Any, receiver: Receiver, tasks: int, start_relay: Any, attack: Any) -> None:
    """Run a relay until ``tasks`` deliveries arrived, calling ``attack()`` every 5 ms."""

    def delivered() -> bool:
        attack()
        expire_lost_leases(conn)
        return len(receiver.requests) >= tasks

    async with start_relay(concurrency=CONCURRENCY):
        await eventually(
            delivered,
            timeout=30,
            interval=0.005,
            what="every task delivered",
            last=lambda: f"{len(receiver.requests)} arrived; {backlog_state(conn)}",
        )


def delivered_once(conn: Any, receiver: Receiver, tasks: int) -> None:
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == tasks == len(receiver.requests)
    states = conn.execute("select state, count(*) as n from outbox.delivery group by 1").fetchall()
    assert states == [{"state": "delivered", "n": tasks}]


async def test_claims_beside_a_routing_survive_their_connection_being_killed(project, start_relay):
    """The claim connection dies between claims, again and again: the routing is never held up by
    it, nothing is sent twice, nothing is lost."""
    conn = project
    tasks = TASKS
    killed = 0

    def attack() -> None:
        nonlocal killed
        killed += kill(conn, "claim", ("idle",))

    async with Receiver() as receiver:
        lsdb.webhook(conn, f"{receiver.url}/a", project_id=1, max_concurrency=WEBHOOK_CAP)
        queue_backlog(conn, tasks)
        await drain_while(conn, receiver, tasks, start_relay, attack)
    assert killed >= 1, "the claim connection was never there to be killed"
    delivered_once(conn, receiver, tasks)


async def test_a_routing_that_fails_while_claims_run_beside_it(project, start_relay):
    """The routing's connection dies while a backlog is routed and claims run beside it: the
    routing is retried, the claims' deliveries are sent, nothing twice, nothing lost, and the relay
    carries on (its routing error is the pipeline's to handle, not the claims' task group's)."""
    conn = project
    tasks = 3 * ROUTE_LIMIT + ROUTE_LIMIT // 5
    killed: list[float] = []

    def attack() -> None:
        ready = claim_connections(conn) and len(killed) < 2
        if ready and (not killed or time.monotonic() - killed[-1] > 0.5) and kill(conn, "pipeline", BUSY):
            killed.append(time.monotonic())

    async with Receiver() as receiver:
        lsdb.webhook(conn, f"{receiver.url}/a", project_id=1, max_concurrency=WEBHOOK_CAP)
        queue_backlog(conn, tasks)
        await drain_while(conn, receiver, tasks, start_relay, attack)
    assert killed, "the routing was never caught in the middle"
    delivered_once(conn, receiver, tasks)
