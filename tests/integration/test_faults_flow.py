"""Issue 3, reliable delivery: how the relay shares its work out — a stalling endpoint beside a
healthy one, per-webhook concurrency caps and rate limits, ordered webhooks, endpoint health, and
leases left by a relay that died.

Real PostgreSQL, relays in-process, real HTTP receivers on 127.0.0.1. ``pytest -s`` shows what each
test measured.
"""

from __future__ import annotations

import re
import statistics
import time

import anyio
import pytest

from outbox.receiver import Received, Receiver, Reply
from tests.support import lsdb

pytestmark = pytest.mark.anyio

DELIVERED = "select count(*) from outbox.delivery where webhook_id = %s and state = 'delivered'"
FINISHED = "select count(*) from outbox.delivery where webhook_id = %s and state <> 'pending'"


def number(request: Received) -> int:
    """The ``n`` of the task a TASKS_CREATED request is about."""
    return int(request.json["tasks"][0]["data"]["n"])


async def test_stalling_endpoint_does_not_slow_a_healthy_one(conn, project, events, start_relay):
    gate = anyio.Event()

    async def stall(_: Received) -> Reply:
        with anyio.move_on_after(5):  # sleeps past its 1 s timeout
            await gate.wait()
        return Reply()

    async with Receiver(stall) as stalled, Receiver() as healthy:
        try:
            lsdb.webhook(conn, stalled.url + "/stall", project_id=project, timeout=1)
            lsdb.webhook(conn, healthy.url + "/ok", project_id=project)
            async with start_relay(concurrency=16):
                # the stalling webhook first takes all it may (max_concurrency 8 of the relay's 16)
                events(10)
                await stalled.wait_for(8)
                await healthy.wait_for(10)
                latencies = []
                for n in range(11, 41):
                    committed = time.perf_counter()
                    events(1, start=n)
                    (*_, last) = await healthy.wait_for(n)
                    latencies.append(last.received_at - committed)
                stalled_requests = len(stalled.requests)
        finally:
            gate.set()
    latencies.sort()
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(
        f"\nstalling endpoint (5 s, timeout 1 s) beside a healthy one: {len(latencies)} events measured, "
        f"healthy latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
        f"the stalling endpoint got {stalled_requests} requests meanwhile"
    )
    assert [number(r) for r in healthy.requests][10:] == list(range(11, 41))
    assert p95 < 1.0


async def test_max_concurrency_holds_across_relays(conn, project, events, start_relay, sql_wait):
    in_flight = peak = 0

    async def slow(_: Received) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await anyio.sleep(0.1)  # a slow receiver, not a wait
        finally:
            in_flight -= 1
        return Reply()

    async with Receiver(slow) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, max_concurrency=2)
        sent = events(20)  # all due at once
        started = time.perf_counter()
        async with start_relay(), start_relay():
            await sql_wait(DELIVERED, (hook,), until=lambda n: n == len(sent))
        took = time.perf_counter() - started
    print(
        f"\nmax_concurrency 2, two relays, {len(sent)} events of 0.1 s each: peak {peak} concurrent, {took:.2f} s"
    )
    assert sorted(number(r) for r in receiver.requests) == sent
    assert peak == 2


async def test_a_vanished_relays_requests_in_flight_count_only_as_long_as_its_leases_would(
    conn, project, events, start_relay, sql_wait
):
    """Other relays' requests in flight come from what each published with its last claim
    (outbox.relay.busy): a relay killed while it had a webhook's every place keeps them only for
    as long as the leases it took then would last (the webhook's timeout + the lease margin)."""
    async with Receiver() as receiver:
        full = lsdb.webhook(conn, receiver.url + "/full", project_id=project, max_concurrency=2)
        stale = lsdb.webhook(conn, receiver.url + "/stale", project_id=project, max_concurrency=2)
        for hook, published in ((full, "now()"), (stale, "now() - interval '1 hour'")):
            conn.execute(
                "insert into outbox.relay (id, hostname, pid, version, busy, busy_at)"
                f" values (gen_random_uuid(), 'gone', 1, 't', jsonb_build_object(%s::text, 2), {published})",
                (hook,),
            )
        sent = events(3)
        async with start_relay():
            await sql_wait(DELIVERED, (stale,), until=lambda n: n == len(sent))
            # the claims that delivered every event to `stale` skipped `full`, whose places the
            # vanished relay still holds
            assert conn.execute(DELIVERED, (full,)).fetchone()["count"] == 0
            conn.execute(
                "update outbox.relay set busy_at = now() - interval '1 hour' where hostname = 'gone'"
            )
            await sql_wait(DELIVERED, (full,), until=lambda n: n == len(sent))
    assert sorted(r.path for r in receiver.requests) == ["/full"] * 3 + ["/stale"] * 3


async def test_rate_limit(conn, project, events, start_relay, sql_wait):
    async with Receiver() as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, rate_limit=5)
        sent = events(15)
        async with start_relay():
            await sql_wait(DELIVERED, (hook,), until=lambda n: n == len(sent), timeout=20)
    arrivals = [r.received_at for r in receiver.requests]
    burst = 5  # a full bucket: max(1, rate) requests at once
    steady = (len(arrivals) - burst) / (arrivals[-1] - arrivals[burst - 1])
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    gaps = [b - a for a, b in zip(arrivals[burst:], arrivals[burst + 1 :], strict=False)]
    print(
        f"\nrate_limit 5/s: {len(arrivals)} requests in {arrivals[-1] - arrivals[0]:.2f} s, "
        f"{steady:.2f} req/s after the burst of {burst}, busiest second {busiest}, "
        f"median gap {statistics.median(gaps):.3f} s"
    )
    assert len(arrivals) == len(sent)
    assert steady <= 5 * 1.3
    assert busiest <= 2 * 5 + 1  # a full bucket plus a second's refill


async def test_rate_limit_holds_across_relays(conn, project, events, start_relay, sql_wait):
    async with Receiver() as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, rate_limit=5)
        sent = events(25)
        async with start_relay(), start_relay():
            await sql_wait(DELIVERED, (hook,), until=lambda n: n == len(sent), timeout=20)
    arrivals = [r.received_at for r in receiver.requests]
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    overall = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    print(
        f"\nrate_limit 5/s, two relays: {len(arrivals)} requests, {overall:.2f} req/s overall, busiest second {busiest}"
    )
    assert busiest <= 2 * 5 + 1


@pytest.mark.parametrize("first", ["succeeds on the third attempt", "dies"])
async def test_ordered_webhook_delivers_in_commit_order(conn, project, events, start_relay, sql_wait, first):
    lsdb.project(conn, 2)
    conn.execute("delete from outbox.change")
    failures = {"left": 2 if first != "dies" else 1000}

    def respond(request: Received) -> Reply:
        if request.json["tasks"][0]["project"] == 1 and number(request) == 1 and failures["left"] > 0:
            failures["left"] -= 1
            return Reply(500)
        return Reply()

    async with Receiver(respond) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", ordered=True)
        one = events(5)
        two = events(3, project_id=2, start=101)
        async with start_relay(retry_schedule=(0, 0.2, 0.5)):
            await sql_wait(FINISHED, (hook,), until=lambda n: n == len(one) + len(two))
    project_one = [(number(r), r.received_at) for r in receiver.requests if number(r) < 100]
    project_two = [(number(r), r.received_at) for r in receiver.requests if number(r) > 100]
    rows = conn.execute(
        "select d.state, d.finished_at, min(a.started_at) as first_started "
        "from outbox.delivery d join outbox.attempt a on a.delivery_id = d.id "
        "where d.project_id = 1 group by d.id order by d.id"
    ).fetchall()
    print(
        f"\nordered webhook, first event {first}: project 1 arrived as {[n for n, _ in project_one]}, "
        f"project 2 as {[n for n, _ in project_two]}; states {[r['state'] for r in rows]}"
    )
    assert [n for n, _ in project_one] == [1, 1, 1] + one[1:]
    assert [n for n, _ in project_two] == two
    assert rows[0]["state"] == ("dead" if first == "dies" else "delivered")
    for earlier, later in zip(rows, rows[1:], strict=False):
        # the next one is sent only once the previous one succeeded or died
        assert later["first_started"] >= earlier["finished_at"]
    # project 1's failing event does not hold project 2 back
    assert project_two[-1][1] < project_one[2][1]


async def test_failing_endpoint_is_disabled_and_re_enabling_resets_health(
    conn, project, events, start_relay, sql_wait
):
    answer = {"status": 500}
    async with Receiver(lambda _: Reply(answer["status"])) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
        async with start_relay(
            disable_after="0s", disable_after_attempts=3, retry_schedule=(0, 0.2, 0.2, 0.2, 0.2, 0.2)
        ):
            events(1)
            await sql_wait("select not is_active from outbox.webhook where id = %s", (hook,))
            disabled = conn.execute("select * from outbox.webhook where id = %s", (hook,)).fetchone()
            health = conn.execute(
                "select * from outbox.webhook_health where webhook_id = %s", (hook,)
            ).fetchone()
            requests_until_disabled = len(receiver.requests)

            answer["status"] = 200
            conn.execute("update outbox.webhook set is_active = true where id = %s", (hook,))
            reset = conn.execute(
                "select count(*) from outbox.webhook_health where webhook_id = %s", (hook,)
            ).fetchone()
            await sql_wait(DELIVERED, (hook,))
    healed = conn.execute("select * from outbox.webhook_health where webhook_id = %s", (hook,)).fetchone()
    webhook = conn.execute("select * from outbox.webhook where id = %s", (hook,)).fetchone()
    print(
        f"\nhealth: disabled after {requests_until_disabled} failed requests "
        f"({health['consecutive_failures']} consecutive failures): {disabled['disabled_reason']!r}; "
        f"re-enabled, health rows {reset['count']}, then delivered with {healed['consecutive_failures']} failures"
    )
    assert requests_until_disabled == 3
    assert health["consecutive_failures"] == 3 and health["failing_since"] is not None
    assert re.fullmatch(
        r"failing continuously since \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(3 consecutive failed attempts\)",
        disabled["disabled_reason"],
    )
    assert disabled["disabled_at"] is not None
    assert reset["count"] == 0  # re-enabling forgets the failures
    assert webhook["is_active"] and webhook["disabled_reason"] is None
    assert healed["consecutive_failures"] == 0 and healed["last_success_at"] is not None
    assert healed["failing_since"] is None


async def test_a_success_resets_the_failure_count(conn, project, events, start_relay, sql_wait):
    calls = {"n": 0}

    def fail_twice_then_succeed(_: Received) -> Reply:
        calls["n"] += 1
        return Reply(500 if calls["n"] <= 2 else 200)

    async with Receiver(fail_twice_then_succeed) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
        async with start_relay(disable_after="0s", disable_after_attempts=3):
            events(1)
            await sql_wait(DELIVERED, (hook,))
            events(1, start=2)
            await sql_wait(DELIVERED, (hook,), until=lambda n: n == 2)
    health = conn.execute("select * from outbox.webhook_health where webhook_id = %s", (hook,)).fetchone()
    active = conn.execute("select is_active from outbox.webhook where id = %s", (hook,)).fetchone()[
        "is_active"
    ]
    print(
        f"\n2 failures, then successes: consecutive_failures {health['consecutive_failures']}, active {active}"
    )
    assert len(receiver.requests) == 4
    assert health["consecutive_failures"] == 0 and active


async def test_lease_of_a_dead_relay_is_claimed_again_once_expired(
    conn, project, events, start_relay, sql_wait
):
    async with Receiver() as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, send_payload=False)
        # what a relay that died mid-flight leaves: a pending delivery leased to it for an hour
        event = conn.execute(
            "insert into outbox.event (action, organization_id, project_id, row_ids, chunk_size) "
            "values ('TASKS_CREATED', 1, 1, '{1}', 5000) returning id"
        ).fetchone()["id"]
        leased = conn.execute(
            "insert into outbox.delivery (event_id, webhook_id, project_id, lease_until, leased_by) "
            "values (%s, %s, 1, now() + interval '1 hour', gen_random_uuid()) returning id, message_id",
            (event, hook),
        ).fetchone()
        async with start_relay() as relay:
            # the relay claims this webhook's other deliveries, but not the leased one
            events(1)
            await sql_wait(DELIVERED, (hook,))
            still_leased = conn.execute(
                "select state, attempts from outbox.delivery where id = %s", (leased["id"],)
            ).fetchone()
            # time passes: the lease expires
            conn.execute(
                "update outbox.delivery set lease_until = now() - interval '1 second' where id = %s",
                (leased["id"],),
            )
            await sql_wait(DELIVERED, (hook,), until=lambda n: n == 2)
    (attempt,) = conn.execute(
        "select * from outbox.attempt where delivery_id = %s", (leased["id"],)
    ).fetchall()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    print(
        f"\nlease: while leased {still_leased}; after expiry delivered by relay {attempt['relay_id']}; ids {ids}"
    )
    assert still_leased == {"state": "pending", "attempts": 0}
    assert attempt["relay_id"] == relay.id and attempt["status_code"] == 200
    assert ids.count(f"msg_{leased['message_id'].hex}") == 1
    assert receiver.requests[-1].json == {"action": "TASKS_CREATED"}
