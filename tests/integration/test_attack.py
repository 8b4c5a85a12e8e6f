"""Attacks on the hardening (issue 9): inputs, orders and sizes its own tests were not written for.

Each test names the hardening item it holds the relay to. Real PostgreSQL, real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql as pgsql

from outbox import db
from outbox.receiver import Received, Receiver, Reply
from tests.integration.test_hardening_routing import _big_tasks, settled
from tests.support import lsdb

pytestmark = pytest.mark.anyio

KiB = 1024


@pytest.fixture
def project7(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.continue_ids(conn, 100)
    conn.execute("insert into project (id, organization_id) values (7, 1)")
    conn.execute("delete from outbox.change")
    return conn


def task_numbers(receiver: Any) -> list[int]:
    return sorted(t["data"]["n"] for r in receiver.requests for t in r.json.get("tasks", []))


def not_delivered(conn: Any) -> list[Any]:
    return conn.execute(
        "select d.state, a.error_class, a.error from outbox.delivery d"
        " left join outbox.attempt a on a.delivery_id = d.id where d.state <> 'delivered'"
    ).fetchall()


async def test_comment_authors_count_towards_a_chunks_size(project7, receiver, start_relay):
    """Issue 9 item 2: a task's body holds its comment authors, but the size estimate (then ``row_sizes``) only counted data
    and meta. Six 10 KiB tasks with 1,000 commenters each, 64 KiB limit: the estimate puts five in
    one chunk, whose real body (~90 KiB) the sender then refuses as too_large: five tasks that each
    fit are dead together instead of arriving."""
    conn = project7
    lsdb.webhook(conn, receiver.url, project_id=7)
    conn.execute(
        "insert into htx_user (id, email) select i, 'u' || i || '@example.com'"
        " from generate_series(100000, 100999) i"
    )
    with conn.transaction():  # one import, its tasks already commented when the relay routes it
        _big_tasks(conn, 7, [10] * 6)
        conn.execute(
            "insert into task_comment_authors (task_id, user_id)"
            " select t.id, u.id from task t cross join htx_user u where u.id >= 100000"
        )
    async with start_relay(max_body_bytes=64 * KiB, webhook_batch_size=100):
        await settled(conn)
    assert not_delivered(conn) == []
    assert task_numbers(receiver) == list(range(1, 7))
    assert all(len(r.body) <= 64 * KiB for r in receiver.requests)


@pytest.mark.xfail(strict=True, reason="sizes are estimated at routing time only (not fixed)")
async def test_a_task_that_grows_before_its_body_is_built_costs_no_other_task(
    project7, receiver, start_relay, sql_wait
):
    """Issue 9 item 2: chunks are sized when routed, bodies built after the settle delay (100 ms
    by default). A task of an import updated in between (40 KiB instead of 10) makes its chunk's
    body larger than OUTBOX_MAX_BODY_BYTES: the chunk is built anyway and refused by the sender,
    so the other tasks of that chunk, which fit, are dead with it."""
    conn = project7
    lsdb.webhook(conn, receiver.url, project_id=7)
    async with start_relay(max_body_bytes=64 * KiB, webhook_batch_size=100, settle_ms=2000):
        # counters that disagree with the (no) annotations: the rows never look settled, so the
        # build waits the whole settle delay (settled rows are built at once)
        conn.execute(
            "insert into task (data, project_id, inner_id, total_annotations)"
            " select jsonb_build_object('text', repeat('x', 10 * 1024), 'n', n), 7, n, 1"
            " from generate_series(1, 6) n"
        )
        await sql_wait("select count(*) > 0 as ok from outbox.payload where built_at is null")
        conn.execute(
            "update task set data = jsonb_set(data, '{text}', to_jsonb(repeat('y', 40 * 1024)))"
            " where (data->>'n')::int = 1"
        )
        await settled(conn, timeout=30)
    assert not_delivered(conn) == []
    assert task_numbers(receiver) == list(range(1, 7))


async def test_a_project_over_the_limit_does_not_split_an_import_into_a_dead_chunk_per_task(
    project7, receiver, start_relay
):
    """Issue 9 item 2: when the project object alone is over OUTBOX_MAX_BODY_BYTES, no chunk of its
    import can be sent. Cutting by bytes then makes one chunk per task, each dead with an error
    blaming that task ("row N"), and 50 payloads, deliveries and attempts for one import of 50."""
    conn = project7
    conn.execute("update project set label_config = repeat('x', 80 * 1024) where id = 7")
    conn.execute("delete from outbox.change")
    lsdb.webhook(conn, receiver.url, project_id=7)
    async with start_relay(max_body_bytes=64 * KiB, webhook_batch_size=100):
        _big_tasks(conn, 7, [1] * 50)
        await settled(conn)
    dead = not_delivered(conn)
    assert len(dead) == 1, f"{len(dead)} dead deliveries for one import of 50 tasks"
    assert dead[0]["error_class"] == "too_large" and "(row" not in dead[0]["error"]
    assert "the project 7 alone" in dead[0]["error"]


async def test_each_change_is_sized_with_its_own_project(project7, receiver, start_relay):
    """take_changes estimates each project's size once and joins it to that project's changes:
    routed in one batch, an import into a project whose object alone is over the limit dies as
    one chunk, and an import into a small project is delivered whole (neither takes the other's
    size)."""
    conn = project7
    conn.execute("insert into project (id, organization_id) values (8, 1)")
    conn.execute("update project set label_config = repeat('x', 80 * 1024) where id = 7")
    lsdb.webhook(conn, receiver.url, project_id=7)
    lsdb.webhook(conn, receiver.url, project_id=8)
    conn.execute("delete from outbox.change")
    _big_tasks(conn, 7, [1] * 5)  # queued before the relay starts: one routing batch
    _big_tasks(conn, 8, [1] * 5)
    async with start_relay(max_body_bytes=64 * KiB, webhook_batch_size=100):
        await settled(conn)
    dead = not_delivered(conn)
    assert len(dead) == 1, dead
    assert dead[0]["error_class"] == "too_large" and "the project 7 alone" in dead[0]["error"]
    assert len(receiver.requests) == 1
    assert receiver.requests[0].json["project"]["id"] == 8
    assert task_numbers(receiver) == [1, 2, 3, 4, 5]


async def test_a_delete_over_the_limit_is_never_built(project7, receiver, start_relay):
    """Issue 9 item 2 ("never built; the relay's memory stays bounded"): TASKS_DELETED is not
    split (Label Studio lists every id in one body) and not sized either, so a delete of 8,000
    tasks under a 64 KiB limit is built (~100 KiB, stored in outbox.payload) and only then
    refused by the sender. Unbounded: a Data Manager delete of millions of tasks builds a body of
    tens of MiB in the relay whatever OUTBOX_MAX_BODY_BYTES says."""
    conn = project7
    _big_tasks(conn, 7, [0] * 8000)
    conn.execute("delete from outbox.change")
    lsdb.webhook(conn, receiver.url, project_id=7)
    async with start_relay(max_body_bytes=64 * KiB):
        conn.execute("delete from task where project_id = 7")
        await settled(conn)
    payload = conn.execute("select body is null as unbuilt, error from outbox.payload").fetchone()
    assert payload["unbuilt"] and "OUTBOX_MAX_BODY_BYTES" in payload["error"]


async def test_a_body_too_large_to_build_still_reaches_webhooks_without_payload(
    project7, receiver, start_relay
):
    """Issue 9 item 2: an annotation of a task over the limit, for a webhook with the payload and
    one without: the first delivery is dead (too_large), the second gets its {"action"} body."""
    conn = project7
    full = lsdb.webhook(conn, f"{receiver.url}/full", project_id=7)
    bare = lsdb.webhook(conn, f"{receiver.url}/bare", project_id=7, send_payload=False)
    _big_tasks(conn, 7, [80])
    conn.execute("delete from outbox.change")
    async with start_relay(max_body_bytes=64 * KiB):
        conn.execute("insert into task_completion (task_id, project_id, result) select id, 7, '[]' from task")
        await settled(conn)
    assert [(r.path, r.json) for r in receiver.requests] == [("/bare", {"action": "ANNOTATION_CREATED"})]
    states = {
        r["webhook_id"]: r["state"] for r in conn.execute("select webhook_id, state from outbox.delivery")
    }
    assert states == {full: "dead", bare: "delivered"}


@pytest.mark.parametrize(
    ("table", "waiting"),
    [("outbox.change", "outbox-relay-pipeline"), ("outbox.attempt", "outbox-relay-recorder")],
    ids=["routing-blocked", "recording-blocked"],
)
async def test_one_sigterm_stops_a_relay_whose_statements_wait_on_a_lock(
    database_url, conn, project7, receiver, spawn_relay, sql_wait, table, waiting
):
    """Issue 9 item 4: a session (an operator's psql, a migration) holds a lock the relay's next
    statement waits for, routing's or the recorder's, with a result to record; one SIGTERM
    still stops the relay within OUTBOX_SHUTDOWN_GRACE (2 s here), with exit status 0."""
    lsdb.webhook(conn, receiver.url, project_id=7)
    relay = spawn_relay(database_url)
    await relay.registered()
    with db.connect_sync(database_url, autocommit=False) as blocker:
        schema, name = table.split(".")
        blocker.execute(
            pgsql.SQL("lock table {} in access exclusive mode").format(pgsql.Identifier(schema, name))
        )
        if table == "outbox.attempt":
            conn.execute("insert into task (data, project_id) values ('{}', 7)")
            await receiver.wait_until(lambda requests: len(requests) == 1)
        await sql_wait(
            "select count(*) > 0 as ok from pg_stat_activity"
            " where application_name = %s and wait_event_type = 'Lock'",
            (waiting,),
        )
        relay.signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = await relay.exited(15)
        took = time.monotonic() - signalled
        blocker.rollback()
    print(f"\n{table} locked: stopped {took:.2f} s after SIGTERM")
    assert status == 0, relay.output()
    assert took < 2 + 5, relay.output()  # the grace, and generous room for a loaded machine
    assert "Traceback" not in relay.output(tail=None)


async def test_a_webhook_deleted_while_its_request_is_in_flight_costs_nothing_else(
    project7, start_relay, caplog
):
    """Issue 9 item 3: a webhook is deleted (its deliveries with it) while its request is in
    flight; the result then has no row to land on. The recorder goes on: the next event reaches
    the other webhook, and nothing is logged as refused."""
    conn = project7
    release = anyio.Event()

    async def respond(request: Received) -> Reply:
        if request.path == "/doomed":
            await release.wait()
        return Reply()

    async with Receiver(respond) as receiver:
        doomed = lsdb.webhook(conn, f"{receiver.url}/doomed", project_id=7)
        lsdb.webhook(conn, f"{receiver.url}/other", project_id=7)
        async with start_relay():
            conn.execute("insert into task (data, project_id) values ('{\"n\": 1}', 7)")
            await receiver.wait_until(lambda requests: {r.path for r in requests} == {"/doomed", "/other"})
            conn.execute("delete from outbox.webhook where id = %s", (doomed,))
            release.set()
            conn.execute("insert into task (data, project_id) values ('{\"n\": 2}', 7)")
            await settled(conn)
            await receiver.wait_until(lambda requests: len(requests) == 3)
    assert [r.path for r in receiver.requests].count("/other") == 2
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_claim_of_more_bodies_than_the_cache_holds_sends_every_one(
    project7, receiver, start_relay, monkeypatch, sql_wait
):
    """Issue 9 item 2: a claim puts the bodies it fetched into the body cache and the dispatch then
    reads them back from it; when one claim fetches more than the cache holds (64 MiB, eight bodies of
    8 MiB: a webhook's default max_concurrency; 1 MiB here) the first ones are evicted before they are sent, and their attempts fail as
    ``payload_missing``. Happens when many built chunks fall due together: a receiver back from
    an outage (its retries are made due at once) or a relay restarted over a backlog."""
    conn = project7
    monkeypatch.setattr("relay.relay.BODY_CACHE_BYTES", 1024 * KiB)
    webhook = lsdb.webhook(conn, "http://127.0.0.1:9/", project_id=7)  # nothing listens: retries
    # 8 chunks (a webhook's max_concurrency) of ~200 KiB under a 256 KiB limit: 1.6 MiB
    _big_tasks(conn, 7, [200] * 8)
    async with start_relay(max_body_bytes=256 * KiB, retry_schedule=(0, 3600)):
        await sql_wait("select count(*) from outbox.delivery where attempts = 1", until=lambda n: n == 8)
    conn.execute("update outbox.webhook set url = %s where id = %s", (receiver.url, webhook))
    conn.execute("update outbox.delivery set next_attempt_at = now()")  # the backlog is due
    async with start_relay(max_body_bytes=256 * KiB, retry_schedule=(0, 0, 3600)):
        await settled(conn)
    errors = [
        r["error_class"] for r in conn.execute("select error_class from outbox.attempt where attempt = 2")
    ]
    assert errors == [None] * 8
    assert task_numbers(receiver) == list(range(1, 9))


@pytest.mark.parametrize("rate_limit", [3e9, 1e308, float("inf"), float("nan")])
async def test_a_webhook_with_a_huge_rate_limit_stops_no_other_webhook(
    project7, receiver, start_relay, rate_limit
):
    """Issue 9 item 3: the claim turns a webhook's tokens into an integer (and adds elapsed seconds
    times the rate), so a rate of 3e9 or 1e308 made the one claim statement, for every webhook,
    fail with "out of range" forever (NaN and infinity passed `rate_limit > 0` too). The database
    now refuses such a rate (0009: 0.01 to 10,000 a second, the API's limits), and the claim
    still bounds whatever rate it reads, the highest allowed included."""
    conn = project7
    with pytest.raises(psycopg.errors.CheckViolation, match="webhook_rate_limit_range"):
        lsdb.webhook(conn, f"{receiver.url}/refused", project_id=7, rate_limit=rate_limit)
    lsdb.webhook(conn, f"{receiver.url}/huge", project_id=7, rate_limit=10_000)
    lsdb.webhook(conn, f"{receiver.url}/plain", project_id=7)
    async with start_relay():
        conn.execute("insert into task (data, project_id) values ('{\"n\": 1}', 7)")
        await settled(conn)
    assert sorted(r.path for r in receiver.requests) == ["/huge", "/plain"]


@pytest.mark.parametrize("column", ["previous_secret_expires_at", "disabled_at", "created_at"])
async def test_the_database_refuses_an_infinite_timestamp_that_would_break_every_listing(
    project7, receiver, outbox_cli, column
):
    """Issue 9 item 8 (what SQL lets in): a timestamp column set to 'infinity' by SQL, which
    Python's datetime cannot hold, made every listing (CLI and API) of every webhook fail with "The
    database refused a value of this request." Now the database refuses it (0004), and the listing
    works."""
    conn = project7
    webhook = lsdb.webhook(conn, receiver.url, project_id=7)
    with pytest.raises(psycopg.errors.CheckViolation, match="webhook_timestamps_finite"):
        conn.execute(
            pgsql.SQL("update outbox.webhook set {} = 'infinity' where id = %s").format(
                pgsql.Identifier(column)
            ),
            (webhook,),
        )
    listed = await outbox_cli("webhooks", "list")
    output = (listed.stdout + listed.stderr).decode()
    assert listed.returncode == 0 and "Traceback" not in output, output


@pytest.mark.parametrize("schedule", [[[0, 0], [0, 0]], [0, None, 5]], ids=["two-dimensional", "null-step"])
async def test_the_database_refuses_a_retry_schedule_no_relay_could_use_up(project7, schedule):
    """Issue 9 item 3: the schema's check (1 to 50 steps, none negative) let a 2-D array (or a NULL
    step) through; the relay read it as lists of lists, every decision failed, and each attempt was
    an `internal` error retried after 60 s forever. Now the database refuses it (0004)."""
    with pytest.raises(psycopg.errors.CheckViolation, match="webhook_retry_schedule"):
        lsdb.webhook(project7, "http://127.0.0.1:9/", project_id=7, retry_schedule=schedule)


async def test_a_webhook_switched_to_send_payload_with_deliveries_waiting_still_gets_them(
    project7, receiver, start_relay, sql_wait
):
    """Issue 9 item 1: events routed while a webhook had send_payload off have no payload built;
    the webhook is then switched on (an edit while its receiver was down). The claim waited for a
    payload that will never exist: pending forever (and, for an ordered webhook, every later
    delivery of the project behind it). Now dead at once, saying why; the next event arrives."""
    conn = project7
    webhook = lsdb.webhook(conn, "http://127.0.0.1:9/", project_id=7, send_payload=False)
    async with start_relay(retry_schedule=(0, 3600)):
        conn.execute("insert into task (data, project_id) values ('{}', 7)")
        await sql_wait("select count(*) from outbox.attempt", until=lambda n: n == 1)
    conn.execute(
        "update outbox.webhook set url = %s, send_payload = true where id = %s", (receiver.url, webhook)
    )
    conn.execute("update outbox.delivery set next_attempt_at = now()")
    async with start_relay(retry_schedule=(0, 0, 3600)):
        await settled(conn, timeout=10)
        conn.execute("insert into task (data, project_id) values ('{}', 7)")
        await settled(conn, timeout=10)
    assert [r.action for r in receiver.requests] == ["TASKS_CREATED"]
    assert receiver.requests[0].json["tasks"][0]["id"] > 0  # the next event, with its payload
    last = conn.execute("select error_class, error from outbox.attempt where attempt = 2").fetchone()
    assert last["error_class"] == "payload_missing" and "send_payload" in last["error"]


async def test_relays_started_and_stopped_in_a_loop_lose_nothing(project7, receiver, start_relay, caplog):
    """Issue 9 items 1 and 4: a relay stopped and started again ten times while tasks are
    created, two relays overlapping each time: every task arrives, and nothing is logged as an
    error."""
    conn = project7
    lsdb.webhook(conn, receiver.url, project_id=7)
    for n in range(1, 11):
        async with start_relay():
            conn.execute("insert into task (data, project_id) values (jsonb_build_object('n', %s), 7)", (n,))
            async with start_relay():
                conn.execute(
                    "insert into task (data, project_id) values (jsonb_build_object('n', %s), 7)", (100 + n,)
                )
    async with start_relay():
        await settled(conn)
    assert sorted(set(task_numbers(receiver))) == sorted([*range(1, 11), *range(101, 111)])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
