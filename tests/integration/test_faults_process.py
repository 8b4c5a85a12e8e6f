"""Issue 3, reliable delivery: relay processes killed, run side by side, stopped, and a database
restarted under them.

Each relay here is a real ``outbox relay`` process (tests/integration/conftest.py) against a real
PostgreSQL, sending to real receivers on 127.0.0.1. Events are committed from a worker thread so the
receiver (in this event loop) keeps answering meanwhile. ``pytest -s`` shows what each test measured.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from typing import Any

import anyio
import pytest

from outbox import db
from outbox.receiver import Received, Receiver, Reply
from tests.integration.conftest import expire_the_dead_relays_leases, make_events, wait_for_sql
from tests.support import lsdb

pytestmark = pytest.mark.anyio

DELIVERED = "select count(*) from outbox.delivery where state = 'delivered'"


def key(request: Received) -> tuple[str, int]:
    """What a request is about: the webhook (its path) and the event (its task's n)."""
    return request.path, int(request.json["tasks"][0]["data"]["n"])


def message_ids(conn: Any) -> set[str]:
    return {f"msg_{r['message_id'].hex}" for r in conn.execute("select message_id from outbox.delivery")}


def assert_one_id_per_delivery(requests: list[Received]) -> None:
    """Every (webhook, event) arrived under one webhook-id, and every webhook-id means one of them."""
    ids_by_key: dict[tuple[str, int], set[str]] = defaultdict(set)
    keys_by_id: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for request in requests:
        ids_by_key[key(request)].add(request.headers["webhook-id"])
        keys_by_id[request.headers["webhook-id"]].add(key(request))
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    assert all(len(keys) == 1 for keys in keys_by_id.values())


async def test_sigkill_mid_flight_loses_nothing(conn, database_url, project, spawn_relay):
    webhooks, per_webhook = 4, 500
    async with Receiver() as receiver:
        for i in range(webhooks):
            lsdb.webhook(conn, f"{receiver.url}/hook{i}", project_id=project)
        make_events(conn, per_webhook)
        total = webhooks * per_webhook
        first = spawn_relay(database_url, OUTBOX_CONCURRENCY="64")
        dead_id = await first.registered()
        await receiver.wait_for(total // 4, timeout=60)
        first.signal(signal.SIGKILL)
        await first.exited(10)
        received_at_kill = len(receiver.requests)
        delivered_at_kill = conn.execute(DELIVERED).fetchone()["count"]
        in_flight = conn.execute(
            "select count(*) from outbox.delivery where state = 'pending' and leased_by = %s", (dead_id,)
        ).fetchone()["count"]
        # Its leases, and the requests in flight it published with them, would expire
        # WEBHOOK_TIMEOUT + 30 s after the claim; here that time passes in SQL.
        expire_the_dead_relays_leases(conn, dead_id)
        restarted = time.perf_counter()
        second = spawn_relay(database_url, OUTBOX_CONCURRENCY="64")
        await wait_for_sql(conn, DELIVERED, until=lambda n: n == total, timeout=60, what="every delivery")
        finished = time.perf_counter() - restarted
        assert second.proc.poll() is None
    requests = receiver.requests
    counts = Counter(r.headers["webhook-id"] for r in requests)
    duplicates = len(requests) - len(counts)
    print(
        f"\nSIGKILL: {total} deliveries; killed after {received_at_kill} received / {delivered_at_kill} recorded, "
        f"{in_flight} leased by the dead relay; the second relay finished in {finished:.2f} s; "
        f"{len(counts)} distinct delivered, {duplicates} duplicates"
    )
    assert 0 < received_at_kill < total and in_flight > 0
    assert set(counts) == message_ids(conn)  # none lost
    assert duplicates <= in_flight
    assert {key(r) for r in requests} == {
        (f"/hook{i}", n) for i in range(webhooks) for n in range(1, per_webhook + 1)
    }
    assert_one_id_per_delivery(requests)  # a duplicate carries the same webhook-id


@pytest.mark.parametrize("relays", [2, 3])
async def test_relays_side_by_side_deliver_exactly_once(conn, database_url, project, spawn_relay, relays):
    webhooks, per_webhook = 4, 150
    async with Receiver() as receiver:
        for i in range(webhooks):
            lsdb.webhook(conn, f"{receiver.url}/hook{i}", project_id=project, max_concurrency=64)
        processes = [spawn_relay(database_url) for _ in range(relays)]
        for process in processes:
            await process.registered()
        started = time.perf_counter()
        await anyio.to_thread.run_sync(make_events, conn, per_webhook)
        total = webhooks * per_webhook
        await wait_for_sql(conn, DELIVERED, until=lambda n: n == total, timeout=60, what="every delivery")
        took = time.perf_counter() - started
        alive = [p.proc.poll() is None for p in processes]
        for process in processes:
            process.signal(signal.SIGTERM)
        exits = [await p.exited(15) for p in processes]
    requests = receiver.requests
    by_relay = Counter(r["relay_id"] for r in conn.execute("select relay_id from outbox.attempt").fetchall())
    attempts = conn.execute("select count(*) as n, max(attempts) as most from outbox.delivery").fetchone()
    print(
        f"\n{relays} relays: {total} deliveries in {took:.2f} s, {len(requests)} requests received, "
        f"attempts per relay {sorted(by_relay.values(), reverse=True)}, exits {exits}"
    )
    assert alive == [True] * relays and exits == [0] * relays
    assert len(requests) == total  # exactly once: nothing lost ...
    assert len({r.headers["webhook-id"] for r in requests}) == total  # ... nothing twice
    assert {r.headers["webhook-id"] for r in requests} == message_ids(conn)
    assert attempts["n"] == total and attempts["most"] == 1
    assert sum(by_relay.values()) == total and len(by_relay) >= 2  # the work was shared


async def test_sigterm_finishes_in_flight_requests_and_releases_the_rest(
    conn, database_url, project, spawn_relay
):
    gate = anyio.Event()

    async def quick(_: Received) -> Reply:
        await anyio.sleep(0.5)  # a receiver that takes its time, within the grace period
        return Reply()

    async def stuck(_: Received) -> Reply:
        with anyio.move_on_after(30):
            await gate.wait()
        return Reply()

    async with Receiver(quick) as fine, Receiver(stuck) as hanging:
        try:
            quick_hook = lsdb.webhook(conn, fine.url + "/quick", project_id=project, max_concurrency=3)
            stuck_hook = lsdb.webhook(conn, hanging.url + "/stuck", project_id=project, max_concurrency=2)
            make_events(conn, 6)
            relay = spawn_relay(database_url, OUTBOX_SHUTDOWN_GRACE="1.5")
            relay_id = await relay.registered()
            await fine.wait_for(3)
            await hanging.wait_for(2)
            relay.signal(signal.SIGTERM)
            signalled = time.perf_counter()
            status = await relay.exited(15)
            took = time.perf_counter() - signalled
        finally:
            gate.set()
    rows = conn.execute(
        "select webhook_id, state, attempts, lease_until, leased_by from outbox.delivery order by id"
    ).fetchall()
    states = Counter((r["webhook_id"], r["state"], r["attempts"]) for r in rows)
    registered = conn.execute("select count(*) from outbox.relay where id = %s", (relay_id,)).fetchone()[
        "count"
    ]
    print(
        f"\nSIGTERM with 3 requests finishing in 0.5 s and 2 stuck, grace 1.5 s: exit {status} after {took:.2f} s; "
        f"(webhook, state, attempts): {dict(states)}; requests {len(fine.requests)} + {len(hanging.requests)}"
    )
    assert status == 0
    assert took < 1.5 + 5
    assert len(fine.requests) == 3 and len(hanging.requests) == 2  # nothing new claimed after SIGTERM
    assert states[(quick_hook, "delivered", 1)] == 3  # finished within the grace period
    assert states[(quick_hook, "pending", 0)] == 3
    assert states[(stuck_hook, "pending", 0)] == 6  # the 2 cut off and the 4 never claimed
    assert all(r["lease_until"] is None and r["leased_by"] is None for r in rows)  # released
    assert registered == 0


async def test_postgres_restart_under_load(own_postgres, spawn_relay):
    async def a_little_slow(_: Received) -> Reply:
        await anyio.sleep(0.01)  # keeps the relay busy for a couple of seconds
        return Reply()

    async with Receiver(a_little_slow) as receiver:
        with db.connect_sync(own_postgres.url, autocommit=True) as conn:
            lsdb.organization(conn)
            lsdb.project(conn, 1)
            conn.execute("delete from outbox.change")
            lsdb.webhook(conn, receiver.url + "/hook", project_id=1, max_concurrency=4)
            make_events(conn, 400)
        relay = spawn_relay(own_postgres.url, OUTBOX_RETRY_SCHEDULE="0,0.2,0.5,1,1,1,1,1,1,1")
        await relay.registered()
        await receiver.wait_for(100, timeout=30)
        received_before = len(receiver.requests)
        took_restart = await anyio.to_thread.run_sync(own_postgres.restart)
        back = time.perf_counter()
        received_during = len(receiver.requests) - received_before
        with db.connect_sync(own_postgres.url, autocommit=True) as conn:
            # events committed after the restart are captured and delivered too
            make_events(conn, 100, start=401)
            await wait_for_sql(conn, DELIVERED, until=lambda n: n == 500, timeout=60, what="every delivery")
            recovered = time.perf_counter() - back
            ids = message_ids(conn)
        first_after = min((r.received_at for r in receiver.requests if r.received_at > back), default=None)
        assert relay.proc.poll() is None, relay.output()
    requests = receiver.requests
    numbers = Counter(key(r)[1] for r in requests)
    log = relay.output(tail=None)
    print(
        f"\nPostgreSQL restart under load: {received_before} of 400 received before the restart "
        f"({took_restart:.2f} s, {received_during} received meanwhile); first request "
        f"{(first_after - back) if first_after else float('nan'):.2f} s after it was back; all 500 delivered "
        f"{recovered:.2f} s after; {len(requests) - len(numbers)} duplicates; "
        f"relay logged {log.count('lost the database connection')} lost / "
        f"{log.count('database connection restored')} restored connections"
    )
    assert set(numbers) == set(range(1, 501))
    assert {r.headers["webhook-id"] for r in requests} == ids
    assert_one_id_per_delivery(requests)
    assert "database connection restored" in log
