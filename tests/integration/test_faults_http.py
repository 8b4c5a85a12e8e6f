"""Issue 3, reliable delivery: what the relay does with each kind of receiver failure.

Real PostgreSQL, a real relay (in-process), real HTTP servers on 127.0.0.1. Waits are conditions
with deadlines (the receiver's ``wait_until``, or a SQL count polled until it holds); timing
assertions are lower bounds the code guarantees, or upper bounds generous enough for a loaded
2-core machine. ``pytest -s`` shows what each test measured.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import anyio
import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from outbox.receiver import Received, Receiver, Reply
from relay.signing import generate_secret
from tests.support import lsdb

pytestmark = pytest.mark.anyio


def delivery_of(conn: Any, webhook_id: int) -> dict[str, Any]:
    rows = conn.execute("select * from outbox.delivery where webhook_id = %s", (webhook_id,)).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def attempts_of(conn: Any, delivery_id: int) -> list[dict[str, Any]]:
    return conn.execute(
        "select * from outbox.attempt where delivery_id = %s order by attempt", (delivery_id,)
    ).fetchall()


FINISHED = "select count(*) from outbox.delivery where webhook_id = %s and state <> 'pending'"


async def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (a receiver started and stopped)."""
    receiver = await Receiver().start()
    port = int(receiver.url.rsplit(":", 1)[1])
    await receiver.stop()
    return port


def stalling(gate: anyio.Event, seconds: float) -> Any:
    """A receiver that answers only after ``seconds`` (or when ``gate`` opens at the test's end)."""

    async def respond(_: Received) -> Reply:
        with anyio.move_on_after(seconds):
            await gate.wait()
        return Reply()

    return respond


async def test_receiver_down_then_up_all_delivered(conn, project, events, start_relay, sql_wait):
    port = await closed_port()
    hook = lsdb.webhook(conn, f"http://127.0.0.1:{port}/hook", project_id=project)
    schedule = (0, 0.3, 0.5, 1, 1, 1, 1, 1, 1, 1)
    async with start_relay(retry_schedule=schedule):
        sent = events(20)
        # every delivery has failed at least once against the closed port
        await sql_wait(
            "select count(distinct delivery_id) from outbox.attempt where error_class = 'connect'",
            until=lambda n: n == len(sent),
        )
        async with Receiver(port=port) as receiver:
            up = time.perf_counter()
            await sql_wait(
                "select count(*) from outbox.delivery where webhook_id = %s and state = 'delivered'",
                (hook,),
                until=lambda n: n == len(sent),
                what="every delivery delivered after the receiver came back",
            )
            recovered = time.perf_counter() - up
    failed = conn.execute("select count(*) from outbox.attempt where error_class = 'connect'").fetchone()[
        "count"
    ]
    received = {r.json["tasks"][0]["data"]["n"] for r in receiver.requests}
    print(
        f"\nreceiver down then up: {len(sent)} events, {failed} refused attempts while down, "
        f"{len(received)} delivered, {len(receiver.requests) - len(received)} duplicates, "
        f"all delivered {recovered:.2f}s after the receiver came back"
    )
    assert received == set(sent)
    assert recovered < 5.0  # the next scheduled attempts are at most 1 s away


async def test_retry_schedule_attempt_log_and_dead_after_last_attempt(
    conn, project, events, start_relay, sql_wait
):
    secret = generate_secret()
    static = {"Authorization": "Bearer s3cr3t-t0ken", "X-Tenant": "acme-private"}
    answer = b"0123456789abcdef" * 640  # 10 KiB: only the first 4 KiB are kept
    hook = lsdb.webhook(conn, "http://placeholder/", project_id=project, headers=static, secret=secret)
    schedule = (0, 0.2, 0.5)
    async with Receiver(lambda _: Reply(500, body=answer)) as receiver:
        conn.execute("update outbox.webhook set url = %s where id = %s", (receiver.url + "/hook", hook))
        async with start_relay(retry_schedule=schedule):
            events(1)
            await sql_wait(FINISHED, (hook,), until=lambda n: n == 1)
    delivery = delivery_of(conn, hook)
    attempts = attempts_of(conn, delivery["id"])
    gaps = [
        (b["started_at"] - a["started_at"]).total_seconds()
        for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    print(
        f"\nretry schedule {schedule}: {len(attempts)} attempts, gaps {[round(g, 3) for g in gaps]} s, then {delivery['state']}"
    )

    # dead after the last scheduled attempt, and kept with what happened
    assert delivery["state"] == "dead"
    assert delivery["attempts"] == len(schedule) == len(receiver.requests)
    assert delivery["finished_at"] is not None
    assert delivery["last_status"] == 500 and delivery["last_error"] == "HTTP 500"
    assert delivery["lease_until"] is None and delivery["leased_by"] is None
    # each attempt waited at least its scheduled delay (no jitter here)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    for gap, scheduled in zip(gaps, schedule[1:], strict=True):
        assert gap >= scheduled - 0.01
    for attempt in attempts:
        assert attempt["status_code"] == 500
        assert attempt["error_class"] == "http_status"
        assert attempt["response_body"] == answer[:4096].decode()
        logged = attempt["request_headers"]
        assert logged["Authorization"] == "***" and logged["X-Tenant"] == "***"
        assert logged["webhook-id"] == f"msg_{delivery['message_id'].hex}"
        assert logged["webhook-signature"].startswith("v1,")
        text = orjson.dumps(logged).decode()
        for value in (*static.values(), secret, secret.removeprefix("whsec_")):
            assert value not in text
    # the receiver did get the real header values
    assert receiver.requests[0].headers["Authorization"] == static["Authorization"]


async def test_dead_delivery_is_kept_visible_and_redeliverable(
    conn, project, events, start_relay, sql_wait, outbox_cli
):
    answer = {"status": 500}
    async with Receiver(lambda _: Reply(answer["status"])) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
        async with start_relay(retry_schedule=(0, 0.2)):
            events(1)
            await sql_wait(FINISHED, (hook,))
            listed = await outbox_cli("deliveries", "list", str(hook), "--state", "dead", "--json")
            answer["status"] = 200
            delivery = delivery_of(conn, hook)
            retried = await outbox_cli("deliveries", "retry", str(delivery["id"]))
            await sql_wait(
                "select count(*) from outbox.delivery where webhook_id = %s and state = 'delivered'", (hook,)
            )
    assert listed.returncode == 0, listed.stderr.decode()
    (shown,) = orjson.loads(listed.stdout)["results"]
    after = delivery_of(conn, hook)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    print(
        f"\ndead delivery: listed by `outbox deliveries list --state dead` as {shown['state']} after "
        f"{shown['attempts']} attempts ({shown['last_error']}); `retry` made it {after['state']} at attempt "
        f"{after['attempts']}, {len(ids)} webhook-id over {len(receiver.requests)} requests"
    )
    assert (shown["id"], shown["state"], shown["attempts"]) == (delivery["id"], "dead", 2)
    assert retried.returncode == 0, retried.stderr.decode()
    assert after["state"] == "delivered" and after["attempts"] == 3
    assert ids == {f"msg_{delivery['message_id'].hex}"}  # redelivered under the same webhook-id


async def test_retry_after_is_clamped_to_twice_the_delay_and_adds_no_attempt(
    conn, project, events, start_relay, sql_wait
):
    schedule = (0, 0.5, 0.5)
    async with Receiver(lambda _: Reply(429, headers={"Retry-After": "120"})) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
        async with start_relay(retry_schedule=schedule):
            events(1)
            await sql_wait(FINISHED, (hook,), until=lambda n: n == 1, timeout=15)
    delivery = delivery_of(conn, hook)
    arrivals = [r.received_at for r in receiver.requests]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    print(
        f"\n429 Retry-After: 120 with schedule {schedule}: {len(arrivals)} attempts, gaps {[round(g, 3) for g in gaps]} s"
    )
    assert delivery["state"] == "dead"
    assert delivery["attempts"] == len(arrivals) == len(schedule)  # Retry-After adds no attempt
    for gap in gaps:
        assert gap >= 2 * 0.5 - 0.02  # lengthened from 0.5 s ...
        assert gap < 5.0  # ... but to 2x the scheduled delay, not to 120 s


async def test_410_disables_the_webhook_and_re_enabling_resumes(conn, project, events, start_relay, sql_wait):
    answers = {"status": 410}
    async with (
        Receiver(lambda _: Reply(answers["status"], body=b"gone")) as gone,
        Receiver() as healthy,
    ):
        hook = lsdb.webhook(conn, gone.url + "/gone", project_id=project)
        control = lsdb.webhook(conn, healthy.url + "/ok", project_id=project)
        async with start_relay():
            events(1)
            await sql_wait("select not is_active from outbox.webhook where id = %s", (hook,))
            webhook = conn.execute("select * from outbox.webhook where id = %s", (hook,)).fetchone()
            # let the retry fall due, then prove the relay went on claiming without sending it
            await sql_wait(
                "select next_attempt_at < now() from outbox.delivery where webhook_id = %s", (hook,)
            )
            events(1, start=2)
            await healthy.wait_for(2)
            requests_while_disabled = len(gone.requests)
            state_while_disabled = delivery_of(conn, hook)["state"]

            answers["status"] = 200
            conn.execute("update outbox.webhook set is_active = true where id = %s", (hook,))
            await sql_wait(FINISHED, (hook,))
    reenabled = conn.execute("select * from outbox.webhook where id = %s", (hook,)).fetchone()
    print(
        f"\n410: webhook disabled ({webhook['disabled_reason']!r}) after {requests_while_disabled} request; "
        f"its delivery stayed {state_while_disabled} while disabled, then {delivery_of(conn, hook)['state']} "
        f"after re-enabling; control webhook got {len(healthy.requests)}"
    )
    assert "410" in webhook["disabled_reason"] and webhook["disabled_at"] is not None
    assert requests_while_disabled == 1
    assert state_while_disabled == "pending"
    assert (
        reenabled["is_active"] and reenabled["disabled_reason"] is None and reenabled["disabled_at"] is None
    )
    assert delivery_of(conn, hook)["state"] == "delivered"
    assert conn.execute(
        "select array_agg(state) as states from outbox.delivery where webhook_id = %s", (control,)
    ).fetchone()["states"] == ["delivered", "delivered"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_not_followed(conn, project, events, start_relay, sql_wait, status):
    async with Receiver() as target:
        moved = Reply(status, headers={"Location": target.url + "/elsewhere?token=abc"}, body=b"moved")
        async with Receiver(lambda _: moved) as receiver:
            hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
            async with start_relay(retry_schedule=(0, 0.2)):
                events(1)
                await sql_wait(FINISHED, (hook,))
    delivery = delivery_of(conn, hook)
    attempts = attempts_of(conn, delivery["id"])
    print(
        f"\n{status} redirect: {len(attempts)} attempts, {len(target.requests)} requests to the target, {delivery['state']}"
    )
    assert delivery["state"] == "dead" and delivery["last_status"] == status
    assert [a["error_class"] for a in attempts] == ["redirect", "redirect"]
    assert "not followed" in attempts[0]["error"] and "token=abc" not in attempts[0]["error"]
    assert target.requests == []


async def test_connection_refused_is_retried_then_dead(conn, project, events, start_relay, sql_wait):
    port = await closed_port()
    hook = lsdb.webhook(conn, f"http://127.0.0.1:{port}/hook", project_id=project)
    async with start_relay(retry_schedule=(0, 0.2)):
        events(1)
        await sql_wait(FINISHED, (hook,))
    delivery = delivery_of(conn, hook)
    attempts = attempts_of(conn, delivery["id"])
    print(f"\nconnection refused: {len(attempts)} attempts ({attempts[0]['error']!r}), {delivery['state']}")
    assert delivery["state"] == "dead" and delivery["last_status"] is None
    assert [a["error_class"] for a in attempts] == ["connect", "connect"]


async def test_endless_response_body_is_cut_at_4_kib(
    conn, project, events, start_relay, sql_wait, body_server
):
    body_server.chunk = b"y" * 65536  # as fast as the socket takes it, forever
    hook = lsdb.webhook(conn, body_server.url + "/hook", project_id=project)
    async with start_relay(webhook_timeout=5.0):
        events(1)
        await sql_wait(FINISHED, (hook,))
    delivery = delivery_of(conn, hook)
    (attempt,) = attempts_of(conn, delivery["id"])
    print(
        f"\nendless 200 body: {delivery['state']} in {attempt['duration_ms']:.0f} ms, "
        f"{len(attempt['response_body'])} chars kept, server wrote {body_server.sent} bytes before the hang-up"
    )
    assert delivery["state"] == "delivered"
    assert attempt["response_body"] == "y" * 4096
    assert attempt["duration_ms"] < 4000  # the relay hung up; it did not wait for the timeout


@pytest.mark.parametrize("status", [200, 500])
async def test_slow_response_body_is_bounded_by_the_timeout(
    conn, project, events, start_relay, sql_wait, body_server, status
):
    body_server.status = status
    body_server.chunk, body_server.interval = b"z" * 16, 0.1  # 4 KiB would take 26 s
    hook = lsdb.webhook(conn, body_server.url + "/hook", project_id=project, timeout=1)
    async with start_relay(retry_schedule=(0,)):
        events(1)
        await sql_wait(FINISHED, (hook,))
    delivery = delivery_of(conn, hook)
    (attempt,) = attempts_of(conn, delivery["id"])
    print(
        f"\nslow {status} body: {delivery['state']} ({attempt['error_class']}) after {attempt['duration_ms']:.0f} ms "
        f"with timeout 1 s, {len(attempt['response_body'])} chars kept"
    )
    # the status arrived in time and decides; the body is what arrived before the deadline, the
    # sender's short body window (issue 9 item 10) or the timeout, whichever comes first
    assert delivery["state"] == ("delivered" if status == 200 else "dead")
    assert attempt["status_code"] == status
    assert attempt["error_class"] == (None if status == 200 else "http_status")
    assert attempt["duration_ms"] < 3000
    assert attempt["response_body"] and set(attempt["response_body"]) == {"z"}  # what came in time


@pytest.mark.parametrize("where", ["WEBHOOK_TIMEOUT", "webhook.timeout"])
async def test_timeout_bounds_a_request(conn, project, events, start_relay, sql_wait, where):
    gate = anyio.Event()
    async with Receiver(stalling(gate, 10)) as receiver:
        try:
            if where == "WEBHOOK_TIMEOUT":
                hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
                settings = {"webhook_timeout": 0.5}
            else:
                hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, timeout=0.5)
                settings = {"webhook_timeout": 5.0}
            async with start_relay(retry_schedule=(0,), **settings):
                events(1)
                await sql_wait(FINISHED, (hook,))
        finally:
            gate.set()
    delivery = delivery_of(conn, hook)
    (attempt,) = attempts_of(conn, delivery["id"])
    print(
        f"\ntimeout 0.5 s via {where} against a 10 s stall: {attempt['error_class']} after {attempt['duration_ms']:.0f} ms"
    )
    assert delivery["state"] == "dead"
    assert attempt["error_class"] == "timeout" and attempt["status_code"] is None
    assert 450 <= attempt["duration_ms"] < 3000


async def test_body_over_the_size_limit_is_dead_at_once(conn, project, events, start_relay, sql_wait):
    async with Receiver() as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
        async with start_relay(max_body_bytes=8192):
            conn.execute(
                "insert into task (data, project_id) values (jsonb_build_object('blob', repeat('x', 20000)), 1)"
            )
            events(1)
            await sql_wait(FINISHED, (hook,), until=lambda n: n == 2)
    rows = conn.execute(
        "select d.state, d.attempts, a.error_class, a.error from outbox.delivery d "
        "join outbox.attempt a on a.delivery_id = d.id where d.webhook_id = %s order by d.id",
        (hook,),
    ).fetchall()
    print(
        f"\nbody limit 8192 bytes: {[(r['state'], r['attempts'], r['error_class']) for r in rows]}, receiver got {len(receiver.requests)}"
    )
    big, small = rows
    assert (big["state"], big["attempts"], big["error_class"]) == ("dead", 1, "too_large")
    assert "8192" in big["error"]
    assert (small["state"], small["error_class"]) == ("delivered", None)
    assert len(receiver.requests) == 1 and receiver.requests[0].json["tasks"][0]["data"] == {"n": 1}


async def test_metadata_address_is_always_refused(conn, project, events, start_relay, sql_wait):
    hook = lsdb.webhook(conn, "http://169.254.169.254/latest/meta-data/", project_id=project)
    async with start_relay():
        events(1)
        await sql_wait(FINISHED, (hook,))
    delivery = delivery_of(conn, hook)
    (attempt,) = attempts_of(conn, delivery["id"])
    print(
        f"\n169.254.169.254: {delivery['state']} after {delivery['attempts']} attempt ({attempt['error']!r})"
    )
    assert (delivery["state"], delivery["attempts"], attempt["error_class"]) == ("dead", 1, "blocked")


async def test_private_networks_refused_when_configured(conn, project, events, start_relay, sql_wait):
    async with Receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        literal = lsdb.webhook(conn, f"http://127.0.0.1:{port}/literal", project_id=project)
        by_name = lsdb.webhook(conn, f"http://localhost:{port}/by-name", project_id=project)
        async with start_relay(block_private_networks=True):
            events(1)
            await sql_wait(
                "select count(*) from outbox.delivery where state <> 'pending'", until=lambda n: n == 2
            )
    rows = conn.execute(
        "select d.webhook_id, d.state, a.error_class, a.error from outbox.delivery d "
        "join outbox.attempt a on a.delivery_id = d.id order by d.webhook_id"
    ).fetchall()
    print(f"\nblock_private_networks: {[(r['state'], r['error_class'], r['error']) for r in rows]}")
    assert [(r["webhook_id"], r["state"], r["error_class"]) for r in rows] == [
        (literal, "dead", "blocked"),
        (by_name, "dead", "blocked"),  # refused after name resolution, too
    ]
    assert receiver.requests == []


async def test_signatures_verify_with_standardwebhooks(conn, project, events, start_relay):
    secret = generate_secret()
    async with Receiver() as receiver:
        lsdb.webhook(conn, receiver.url + "/hook", project_id=project, secret=secret)
        async with start_relay():
            events(1)
            (request,) = await receiver.wait_for(1)
    payload = Webhook(secret).verify(request.body, request.headers)
    print(
        f"\nsigned: webhook-signature {request.headers['webhook-signature'][:12]}..., verified by standardwebhooks"
    )
    assert payload["action"] == "TASKS_CREATED"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body + b" ", request.headers)  # a byte more


async def test_secret_rotation_signs_with_both_secrets(conn, project, events, start_relay):
    old, new = generate_secret(), generate_secret()
    async with Receiver() as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, secret=old)
        conn.execute("update outbox.webhook set secret = %s where id = %s", (new, hook))
        async with start_relay():
            events(1)
            (during,) = await receiver.wait_for(1)
            # the grace period ends: only the new secret signs
            conn.execute(
                "update outbox.webhook set previous_secret_expires_at = now() - interval '1 second' where id = %s",
                (hook,),
            )
            events(1, start=2)
            after = (await receiver.wait_for(2))[1]
    print(
        f"\nrotation: {len(during.headers['webhook-signature'].split())} signatures during the grace period, "
        f"{len(after.headers['webhook-signature'].split())} after"
    )
    assert len(during.headers["webhook-signature"].split()) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split()) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


async def test_webhook_id_is_stable_across_retries(conn, project, events, start_relay, sql_wait):
    secret = generate_secret()
    seen: Counter[str] = Counter()

    def fail_twice(request: Received) -> Reply:
        seen[request.headers["webhook-id"]] += 1
        return Reply(503 if seen[request.headers["webhook-id"]] <= 2 else 200)

    async with Receiver(fail_twice) as receiver:
        hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project, secret=secret)
        async with start_relay():
            events(3)
            await sql_wait(
                "select count(*) from outbox.delivery where webhook_id = %s and state = 'delivered'",
                (hook,),
                until=lambda n: n == 3,
            )
    ids = {r["message_id"].hex for r in conn.execute("select message_id from outbox.delivery").fetchall()}
    by_id: dict[str, set[bytes]] = {}
    for request in receiver.requests:
        by_id.setdefault(request.headers["webhook-id"], set()).add(request.body)
        Webhook(secret).verify(request.body, request.headers)
    print(f"\nwebhook-id across retries: {len(receiver.requests)} requests, {dict(seen)}")
    assert seen == {f"msg_{i}": 3 for i in ids}
    assert all(len(bodies) == 1 for bodies in by_id.values())  # same id, same body
