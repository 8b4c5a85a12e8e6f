"""Issue 9, hardening the relay: recording that no single result can stop, a stop that holds
whatever the database does, a clear word when outbox is not installed, and receivers that come
back getting their waiting deliveries at once.

Real PostgreSQL, real HTTP on 127.0.0.1, relays in-process or as real ``outbox relay`` processes.
``pytest -s`` shows what each test measured.
"""

from __future__ import annotations

import asyncio
import math
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from outbox import db, migrations
from outbox.receiver import Received, Receiver, Reply
from relay import record
from relay.deliveries import Attempt, Claimed, Judged
from relay.errors import ErrorClass
from tests.integration.conftest import RelayProcess, make_events, wait_for_sql
from tests.support import lsdb

pytestmark = pytest.mark.anyio

FINISHED = "select count(*) from outbox.delivery where webhook_id = %s and state <> 'pending'"
DELIVERED = "select count(*) from outbox.delivery where webhook_id = %s and state = 'delivered'"


def number(request: Received) -> int:
    """The ``n`` of the task a TASKS_CREATED request is about."""
    return int(request.json["tasks"][0]["data"]["n"])


def attempts_by_webhook(conn: Any) -> dict[int, int]:
    rows = conn.execute(
        "select d.webhook_id, count(*) as n from outbox.attempt a"
        " join outbox.delivery d on d.id = a.delivery_id group by d.webhook_id"
    ).fetchall()
    return {r["webhook_id"]: r["n"] for r in rows}


# -- item 1: one result must not stop recording ---------------------------------------------


async def test_retry_after_on_an_integer_schedule_beside_a_500_keeps_everything_recorded(
    conn, project, events, start_relay, sql_wait
):
    """Issue 9 item 1: a 429 with ``Retry-After: 7`` on a webhook whose own schedule is integers,
    while another webhook fails with 500 and a third is healthy. The delays of one batch were an
    int and floats, psycopg refused the list, and the recorder retried that batch forever: nothing
    was recorded again and healthy receivers got their events again when the leases expired."""

    def respond(request: Received) -> Reply:
        if request.path == "/throttled":
            return Reply(429, headers={"Retry-After": "7"})
        if request.path == "/failing":
            return Reply(500)
        return Reply()

    async with Receiver(respond) as receiver:
        throttled = lsdb.webhook(
            conn, receiver.url + "/throttled", project_id=project, retry_schedule=[0, 1, 1]
        )
        failing = lsdb.webhook(conn, receiver.url + "/failing", project_id=project)
        healthy = lsdb.webhook(conn, receiver.url + "/healthy", project_id=project)
        count = 10
        async with start_relay(retry_schedule=(0, 0.2, 0.5)):
            events(count)
            for hook in (throttled, failing, healthy):
                await sql_wait(FINISHED, (hook,), until=lambda n: n == count, timeout=30)
        requests = list(receiver.requests)
    by_path = Counter(r.path for r in requests)
    attempts = attempts_by_webhook(conn)
    healthy_ids = Counter(r.headers["webhook-id"] for r in requests if r.path == "/healthy")
    print(f"\nrequests by webhook {dict(by_path)}; attempts recorded by webhook {attempts}")
    assert attempts == {throttled: by_path["/throttled"], failing: by_path["/failing"], healthy: count}
    assert by_path["/throttled"] == by_path["/failing"] == 3 * count  # every attempt, then dead
    assert len(healthy_ids) == count and set(healthy_ids.values()) == {1}  # nothing sent twice
    states = conn.execute(
        "select webhook_id, state, count(*) as n from outbox.delivery group by 1, 2 order by 1"
    ).fetchall()
    assert {(r["webhook_id"], r["state"], r["n"]) for r in states} == {
        (throttled, "dead", count),
        (failing, "dead", count),
        (healthy, "delivered", count),
    }


async def test_a_result_the_database_refuses_is_isolated_and_recorded_as_an_internal_error(
    conn, project, events, start_relay, sql_wait
):
    """Issue 9 item 1: a row the database refuses (here a constraint the test adds: any other
    refusal that survives sanitizing behaves the same) is split out of its batch and recorded as an
    internal error; every other result is recorded. The refused one was a 2xx: its delivery is
    delivered, not sent again. Before, the recorder retried the batch forever."""
    conn.execute(
        "alter table outbox.attempt add constraint test_refuses_poison"
        " check (response_body is distinct from 'poison')"
    )
    try:
        poisoned: set[int] = set()

        def respond(request: Received) -> Reply:
            if number(request) == 3 and not poisoned:
                poisoned.add(3)
                return Reply(body=b"poison")
            return Reply()

        async with Receiver(respond) as receiver, Receiver() as other:
            hook = lsdb.webhook(conn, receiver.url + "/hook", project_id=project)
            beside = lsdb.webhook(conn, other.url + "/other", project_id=project)
            count = 20
            async with start_relay():
                events(count)
                await sql_wait(DELIVERED, (hook,), until=lambda n: n == count, timeout=20)
                await sql_wait(DELIVERED, (beside,), until=lambda n: n == count, timeout=20)
        attempts = conn.execute(
            "select d.webhook_id, d.state, a.attempt, a.error_class, a.error, a.status_code,"
            " a.response_body"
            " from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
            " where a.error_class is not null"
        ).fetchall()
    finally:
        conn.execute("alter table outbox.attempt drop constraint if exists test_refuses_poison")
    print(f"\nfailed attempts recorded: {attempts}")
    assert len(attempts) == 1
    [internal] = attempts
    assert internal["webhook_id"] == hook and internal["attempt"] == 1
    assert internal["error_class"] == "internal" and "could not record" in internal["error"]
    assert internal["state"] == "delivered" and internal["status_code"] == 200
    assert internal["response_body"] == ""
    assert sorted(number(r) for r in receiver.requests) == list(range(1, count + 1))
    assert len(other.requests) == count
    assert attempts_by_webhook(conn) == {hook: count, beside: count}


# A retry_schedule with NULL steps (or of two dimensions) is refused by the database since
# sql/0004_webhook_values.sql (tests/integration/test_attack.py), and mended in rows stored before;
# the relay still counts a NULL step as no wait (tests/unit/test_schedule.py).


async def raw_http_server(response: bytes) -> tuple[asyncio.Server, str]:
    """An HTTP server on 127.0.0.1 that answers every request with the bytes ``response``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            writer.write(response)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_invalid_utf8_from_a_receiver_is_recorded(conn, project, events, start_relay, sql_wait):
    """Issue 9 item 1: a redirect whose Location holds bytes that are not UTF-8 (and a body with
    NUL and invalid UTF-8): the error text reached SQL with a lone surrogate, which psycopg cannot
    encode, and the recorder died with it."""
    response = (
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/\xff\xfe/x\r\nRetry-After: \xb2\r\n"
        b"Content-Length: 6\r\nConnection: close\r\n\r\nab\x00\xffcd"
    )
    server, url = await raw_http_server(response)
    try:
        async with Receiver() as healthy:
            hook = lsdb.webhook(conn, url + "/hook", project_id=project)
            beside = lsdb.webhook(conn, healthy.url + "/ok", project_id=project)
            async with start_relay(retry_schedule=(0, 0.2)):
                events(3)
                await sql_wait(FINISHED, (hook,), until=lambda n: n == 3, timeout=20)
                await sql_wait(DELIVERED, (beside,), until=lambda n: n == 3, timeout=20)
    finally:
        server.close()
        await server.wait_closed()
    rows = conn.execute(
        "select a.error_class, a.error, a.response_body from outbox.attempt a"
        " join outbox.delivery d on d.id = a.delivery_id where d.webhook_id = %s",
        (hook,),
    ).fetchall()
    print(f"\nrecorded: {rows[0]}")
    assert len(rows) == 6
    assert all(r["error_class"] == "redirect" and r["error"].startswith("redirect (302)") for r in rows)
    assert all("\x00" not in r["response_body"] and r["response_body"].startswith("ab") for r in rows)


def leased_deliveries(conn: Any, webhook_id: int, relay_id: uuid.UUID, count: int) -> list[Claimed]:
    """``count`` deliveries to ``webhook_id`` leased by ``relay_id``, as a claim returns them."""
    event = conn.execute(
        "insert into outbox.event (action, organization_id, project_id, chunk_size)"
        " values ('TASKS_CREATED', 1, 1, 1) returning id"
    ).fetchone()["id"]
    rows = conn.execute(
        "insert into outbox.delivery (event_id, chunk, webhook_id, lease_until, leased_by)"
        " select %s, c, %s, now() + interval '1 minute', %s from generate_series(0, %s - 1) c"
        " returning id, message_id, event_id, chunk, webhook_id, attempts",
        (event, webhook_id, relay_id, count),
    ).fetchall()
    return [
        Claimed(
            **row,
            action="TASKS_CREATED",
            url="http://127.0.0.1:9/hook",
            headers={},
            secret=None,
            previous_secret=None,
            send_payload=True,
            timeout=None,
            retry_schedule=None,
        )
        for row in rows
    ]


# what a receiver, a setting or a bug could put into a result
hostile_text = st.text(st.characters(exclude_categories=()), max_size=300) | st.sampled_from(
    ["\x00", "a\x00b", "\udc80\udcff", "\ud800", "\\u0000", "x" * 100_000]
)
hostile_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e300, -1e300, 1e13, float("nan"), float("inf")]
)
hostile_status = st.none() | st.integers(min_value=-(2**70), max_value=2**70)
hostile_result = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["pending", "delivered", "dead"]),
        "delay": st.none() | hostile_float,
        "duration": hostile_float,
        "status": hostile_status,
        "error_class": st.none() | hostile_text,
        "error": st.none() | hostile_text,
        "body": hostile_text,
        "headers": st.dictionaries(hostile_text, hostile_text, max_size=4),
        "disable": st.none() | hostile_text,
        "started_at": st.sampled_from(
            [datetime.now(UTC), datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)]
        ),
    }
)


def make_result(delivery: Claimed, values: dict[str, Any]) -> Judged:
    attempt = Attempt(
        values["status"], values["error_class"], values["error"], values["body"], values["duration"]
    )
    return Judged(
        delivery,
        values["state"],
        values["delay"],
        values["started_at"],
        attempt,
        values["headers"],
        values["disable"],
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(hostile_result, min_size=1, max_size=6))
def test_any_result_values_are_recorded(database_url, project, batch):
    """Issue 9 item 1: whatever the values of a result (NUL and lone surrogates in texts and
    header names, NaN, infinite and huge delays and durations, statuses beyond int4, dates at the
    ends of the calendar), one place makes them fit their columns and the database takes them."""
    relay_id = uuid.uuid4()

    async def write() -> list[dict[str, Any]]:
        with db.connect_sync(database_url, autocommit=True) as sync:
            hook = lsdb.webhook(sync, "http://127.0.0.1:9/hook", project_id=project)
            deliveries = leased_deliveries(sync, hook, relay_id, len(batch))
        conn = await db.connect(database_url, autocommit=True)
        try:
            results = [make_result(d, v) for d, v in zip(deliveries, batch, strict=True)]
            await record.record_results(
                conn,
                results,
                relay_id=relay_id,
                disable_after=timedelta(days=5),
                disable_after_attempts=50,
            )
            found = await conn.execute(
                "select d.state, d.next_attempt_at, a.* from outbox.attempt a"
                " join outbox.delivery d on d.id = a.delivery_id where d.webhook_id = %s order by d.id",
                (hook,),
            )
            return await found.fetchall()
        finally:
            await conn.close()

    rows = anyio.run(write)
    assert len(rows) == len(batch)
    for row, values in zip(rows, batch, strict=True):
        assert row["state"] == values["state"]
        assert math.isfinite(row["duration_ms"]) and row["duration_ms"] >= 0
        assert row["status_code"] is None or 0 <= row["status_code"] < 2**31


@pytest.mark.parametrize(
    ("disable_after", "attempts"), [(timedelta.max, 50), (timedelta(0), 2**70), (timedelta.max, 2**70)]
)
async def test_settings_at_their_extremes_do_not_stop_recording(
    conn, database_url, project, disable_after, attempts
):
    """Issue 9 item 1: OUTBOX_DISABLE_AFTER reaches SQL as an interval subtracted from now(); at
    its largest it made every batch with a failure overflow a timestamp, so none was recorded."""
    relay_id = uuid.uuid4()
    hook = lsdb.webhook(conn, "http://127.0.0.1:9/hook", project_id=project)
    deliveries = leased_deliveries(conn, hook, relay_id, 2)
    attempt = Attempt(500, ErrorClass.HTTP_STATUS, "HTTP 500", "", 1.0)
    results = [Judged(d, "pending", 1.0, datetime.now(UTC), attempt, {}) for d in deliveries]
    async with await db.connect(database_url, autocommit=True) as aconn:
        await record.record_results(
            aconn, results, relay_id=relay_id, disable_after=disable_after, disable_after_attempts=attempts
        )
    count = conn.execute(
        "select count(*) from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
        " where d.webhook_id = %s",
        (hook,),
    ).fetchone()["count"]
    assert count == 2


# -- item 6: one signal stops the relay, whatever the database does --------------------------


async def stop_and_time(relay: RelayProcess) -> float:
    """SIGTERM once; seconds until the process exited (fails if it is still alive after 15 s)."""
    relay.signal(signal.SIGTERM)
    signalled = time.monotonic()
    status = await relay.exited(15)
    took = time.monotonic() - signalled
    assert status == 0, relay.output()
    return took


async def closed_port() -> int:
    receiver = await Receiver().start()
    port = int(receiver.url.rsplit(":", 1)[1])
    await receiver.stop()
    return port


@pytest.fixture
async def unusable_url(
    request: pytest.FixtureRequest, postgres_server: Any, ls_database_url: str
) -> AsyncIterator[tuple[str, str]]:
    """(database URL, what the relay logs about it) for each way a database can be unusable."""
    kind = request.param
    if kind == "nothing listens":
        port = await closed_port()
        yield f"postgresql://postgres:secretpw@127.0.0.1:{port}/postgres", "database unreachable"
    elif kind == "no such role":
        yield (
            make_conninfo(postgres_server.admin_url, user="no_such_role", password="secretpw"),
            ("database unreachable"),
        )
    elif kind == "no such database":
        yield make_conninfo(postgres_server.admin_url, dbname="no_such_database_9"), "database unreachable"
    else:
        yield ls_database_url, "outbox is not installed"


@pytest.mark.parametrize(
    "unusable_url",
    # (a malformed URL never gets this far: `outbox relay` refuses it in one line and exits 2,
    # see tests/acceptance/test_cli_hardening.py)
    ["nothing listens", "no such role", "no such database", "not migrated"],
    indirect=True,
)
async def test_one_sigterm_stops_a_relay_that_cannot_use_its_database(unusable_url, spawn_relay):
    """Issue 9 item 6: a relay whose database is unreachable, refuses it, cannot be parsed or has
    no outbox in it logged ``SIGTERM: stopping`` and went on retrying; one signal now stops it
    within OUTBOX_SHUTDOWN_GRACE (2 s here). Passwords never reach the log."""
    url, said = unusable_url
    relay = spawn_relay(url)
    await relay.logged(re.escape(said))
    took = await stop_and_time(relay)
    log = relay.output(tail=None)
    print(f"\n{said!r}: stopped {took:.2f} s after SIGTERM")
    assert took < 2 + 5  # the grace, and generous room for a loaded machine
    assert "secretpw" not in log
    assert "Traceback" not in log


async def test_one_sigterm_stops_a_relay_whose_database_went_away(own_postgres, spawn_relay):
    """Issue 9 item 6: the database stops under a running relay with results still to record;
    one SIGTERM stops the relay within OUTBOX_SHUTDOWN_GRACE anyway."""
    async with Receiver() as receiver:
        with db.connect_sync(own_postgres.url, autocommit=True) as conn:
            lsdb.organization(conn)
            lsdb.project(conn, 1)
            conn.execute("delete from outbox.change")
            lsdb.webhook(conn, receiver.url + "/hook", project_id=1)
            make_events(conn, 20)
            relay = spawn_relay(own_postgres.url)
            await relay.registered()
            await wait_for_sql(
                conn,
                "select count(*) from outbox.delivery where state = 'delivered'",
                until=lambda n: n == 20,
                timeout=20,
            )
        await anyio.to_thread.run_sync(own_postgres.stop)
        await relay.logged("lost the database connection")
        took = await stop_and_time(relay)
    print(f"\ndatabase gone: stopped {took:.2f} s after SIGTERM")
    assert took < 2 + 5


# -- item 8: a database without outbox -------------------------------------------------------


async def test_a_database_without_outbox_is_named_once_and_the_relay_starts_once_migrated(
    ls_database_url, spawn_relay
):
    """Issue 9 item 8: on a database where ``outbox migrate`` never ran the relay logged ~14
    lines a second, alternating an error and a misleading "connection restored". It now says once
    that outbox is not installed, backs off, and starts working by itself once migrated."""
    relay = spawn_relay(ls_database_url)
    await relay.logged("outbox is not installed")
    # what it logs over a few seconds of waiting (an observation window, not synchronisation)
    await anyio.sleep(3)
    waiting = relay.output(tail=None)
    with db.connect_sync(ls_database_url, autocommit=True) as conn:
        migrations.migrate(conn)
        lsdb.organization(conn)
        lsdb.project(conn, 1)
        conn.execute("delete from outbox.change")
        async with Receiver() as receiver:
            lsdb.webhook(conn, receiver.url + "/hook", project_id=1)
            await relay.registered(timeout=30)
            make_events(conn, 3)
            await receiver.wait_for(3, timeout=30)
    log = relay.output(tail=None)
    lines = [line for line in waiting.splitlines() if "relay" in line or "database" in line]
    print(f"\nwhile not installed: {len(waiting.splitlines())} log lines in ~3 s:\n" + "\n".join(lines))
    assert len(waiting.splitlines()) <= 4  # "starting" and one or two reminders, not a flood
    assert waiting.count("outbox is not installed") <= 2
    assert "outbox migrate" in waiting
    assert "connection restored" not in log
    assert "Traceback" not in log


# -- item 11: a receiver that comes back ----------------------------------------------------


@pytest.mark.parametrize("how", ["unavailable", "down"])
async def test_a_receiver_that_answers_again_gets_its_waiting_deliveries_at_once(
    conn, project, events, start_relay, sql_wait, how
):
    """Issue 9 item 11: with a long retry schedule, deliveries that failed while the receiver was
    unavailable (503) or down (connection refused) waited for their next step (an hour here)
    though the receiver was back; now its first 2xx makes them due at once and none arrives twice.
    A payload the receiver rejects (400) keeps its schedule, and so do other webhooks' retries."""
    failing = True

    def respond(request: Received) -> Reply:
        if number(request) == 1:
            return Reply(400)  # this payload is rejected, whatever state the receiver is in
        return Reply(503) if failing else Reply()

    port = await closed_port()
    receiver = Receiver(respond, port=port)
    if how == "unavailable":
        await receiver.start()
    try:
        url, schedule = f"http://127.0.0.1:{port}", [0, 3600, 3600]
        hook = lsdb.webhook(conn, url + "/hook", project_id=project, retry_schedule=schedule)
        beside = lsdb.webhook(conn, url + "/beside", project_id=project, retry_schedule=schedule)
        async with start_relay():
            down = 5
            events(down)
            await sql_wait(
                "select count(*) from outbox.attempt", until=lambda n: n == 2 * down, what="the failures"
            )
            failing = False
            if how == "down":
                await receiver.start()
            conn.execute("update outbox.webhook set is_active = false where id = %s", (beside,))
            back = time.perf_counter()
            events(1, start=down + 1)
            await sql_wait(DELIVERED, (hook,), until=lambda n: n == down, timeout=15)
            took = time.perf_counter() - back
            rejected = await sql_wait(
                "select attempts from outbox.delivery where webhook_id = %s order by id limit 1",
                (hook,),
                until=lambda n: n == (1 if how == "unavailable" else 2),
                what="the rejected payload's attempts",
            )
    finally:
        await receiver.stop()
    arrived = Counter(number(r) for r in receiver.requests if r.path == "/hook")
    print(
        f"\nreceiver {how} then back: the {down - 1} waiting deliveries delivered {took:.2f} s "
        f"after the new event; the rejected one made {rejected} attempt(s)"
    )
    twice = 2 if how == "unavailable" else 1  # a 503, then the 2xx; refused connections never arrived
    assert arrived == Counter({1: 1, down + 1: 1} | dict.fromkeys(range(2, down + 1), twice))
    waiting = conn.execute(
        "select count(*) from outbox.delivery where state = 'pending'"
        " and next_attempt_at > now() + interval '30 minutes' and webhook_id = %s",
        (beside,),
    ).fetchone()["count"]
    assert waiting == down  # another webhook's retries are not touched
    first = conn.execute(
        "select state, next_attempt_at > now() + interval '30 minutes' as later"
        " from outbox.delivery where webhook_id = %s order by id limit 1",
        (hook,),
    ).fetchone()
    assert first == {"state": "pending", "later": True}  # the rejected payload waits its hour
