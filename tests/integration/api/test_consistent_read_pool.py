"""consistent_read (REPEATABLE READ, READ ONLY) must not leak its isolation level or read-only flag
into the pooled connection's later transactions."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import text

from outbox.admin import deliveries, webhooks
from outbox.admin.database import create_engine
from outbox.admin.errors import NotFound
from outbox.admin.models import WebhookCreate

pytestmark = pytest.mark.anyio


async def _session_state(engine):
    async with webhooks.transaction(engine) as conn:
        iso = (await conn.execute(text("show transaction_isolation"))).scalar_one()
        ro = (await conn.execute(text("show transaction_read_only"))).scalar_one()
        pid = (await conn.execute(text("select pg_backend_pid()"))).scalar_one()
    return iso, ro, pid


@pytest.mark.parametrize("how", ["found", "not_found", "wait", "cancelled_wait"])
async def test_a_consistent_read_leaves_the_pooled_connection_as_it_found_it(database_url, seeded, how):
    seeded.execute(
        "insert into outbox.webhook (organization_id, project_id, url) values (1, 1, 'http://127.0.0.1:9/')"
    )
    [hook] = seeded.execute("select id from outbox.webhook").fetchall()
    engine = create_engine(database_url, pool_size=1)
    try:
        delivery_id = await webhooks.send_test(engine, hook["id"])
        iso0, ro0, pid0 = await _session_state(engine)
        assert (iso0, ro0) == ("read committed", "off")
        if how == "found":
            await deliveries.get_delivery(engine, delivery_id)
        elif how == "not_found":
            with pytest.raises(NotFound):
                await deliveries.get_delivery(engine, 10**9)
        elif how == "wait":
            # a live relay, so that the wait polls (several consistent reads) instead of answering at once
            seeded.execute(
                "insert into outbox.relay (id, hostname, pid, version, started_at, heartbeat_at, waiting, busy)"
                " values (gen_random_uuid(), 'h', 1, 'v', now(), now() + interval '1 hour', false, '{}')"
            )
            await deliveries.wait_for_outcome(engine, delivery_id, 0.2)
        else:
            with anyio.move_on_after(0.01):
                while True:
                    await deliveries.get_delivery(engine, delivery_id)
        iso, ro, pid = await _session_state(engine)
        if how != "cancelled_wait":  # a cancelled query closes its connection (psycopg)
            assert pid == pid0  # the same pooled connection
        assert (iso, ro) == ("read committed", "off"), how
        # and a write through the same engine works
        made = await webhooks.create(
            engine, WebhookCreate(url="http://127.0.0.1:9/x", project=1), max_per_organization=100
        )
        assert made.id
    finally:
        await engine.dispose()


async def test_a_consistent_read_on_a_stopped_database_is_unavailable_not_a_500(own_postgres):
    """A pooled connection whose server has stopped: the read's error is one the API answers 503."""
    from sqlalchemy.exc import DBAPIError

    from outbox.admin import database

    engine = create_engine(own_postgres.url, pool_size=1)
    try:
        with pytest.raises(NotFound):
            await deliveries.get_delivery(engine, 1)  # one pooled connection
        own_postgres.stop()
        for read in (
            lambda: deliveries.get_delivery(engine, 1),
            lambda: deliveries.wait_for_outcome(engine, 1, 1.0),
        ):
            with pytest.raises(DBAPIError) as raised:
                await read()
            assert database.unavailable(raised.value) == database.UNAVAILABLE
    finally:
        await engine.dispose()
