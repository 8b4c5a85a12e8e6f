"""Retention: what is past OUTBOX_RETENTION goes, in small batches; pending work never does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outbox import db
from relay import retention
from tests.support import lsdb

pytestmark = pytest.mark.anyio


def make_delivery(conn, *, state: str, age_days: float, event_age_days: float | None = None) -> int:
    event = conn.execute(
        "insert into outbox.event (action, organization_id, project_id, chunk_size, created_at)"
        " values ('TASKS_CREATED', 1, 1, 1, now() - make_interval(days => %s)) returning id",
        (event_age_days if event_age_days is not None else age_days,),
    ).fetchone()["id"]
    conn.execute(
        "insert into outbox.payload (event_id, chunk, ready_at, body, built_at, row_start, row_end)"
        " values (%s, 0, now(), 'x', now(), 0, 1)",
        (event,),
    )
    delivery = conn.execute(
        "insert into outbox.delivery (event_id, webhook_id, state, finished_at)"
        " values (%s, 1, %s, case when %s <> 'pending' then now() - make_interval(days => %s) end) returning id",
        (event, state, state, age_days),
    ).fetchone()["id"]
    conn.execute(
        "insert into outbox.attempt (delivery_id, attempt, started_at, duration_ms, request_headers)"
        " values (%s, 1, now(), 1, '{}')",
        (delivery,),
    )
    return delivery


async def test_prune_keeps_recent_pending_and_young_dead_deliveries(conn, database_url):
    lsdb.organization(conn)  # a webhook's organization must exist
    lsdb.webhook(conn, "http://127.0.0.1:9/")
    old_delivered = [make_delivery(conn, state="delivered", age_days=8) for _ in range(5)]
    recent = make_delivery(conn, state="delivered", age_days=1)
    old_pending = make_delivery(conn, state="pending", age_days=0, event_age_days=20)
    young_dead = make_delivery(conn, state="dead", age_days=10)
    old_dead = make_delivery(conn, state="dead", age_days=31)
    conn.execute(
        "insert into outbox.event (action, organization_id, chunk_size, created_at)"
        " values ('PROJECT_CREATED', 1, 1, now() - interval '8 days')"
    )
    async_conn = await db.connect(database_url, autocommit=True)
    try:
        pruned = await retention.prune(
            async_conn, retention=timedelta(days=7), dead_retention=timedelta(days=30), batch=2
        )
    finally:
        await async_conn.close()
    assert pruned == retention.Pruned(deliveries=6, events=7)
    left = {r["id"] for r in conn.execute("select id from outbox.delivery").fetchall()}
    assert left == {recent, old_pending, young_dead}
    assert not left & set(old_delivered) and old_dead not in left
    assert conn.execute("select count(*) from outbox.attempt").fetchone()["count"] == 3
    assert conn.execute("select count(*) from outbox.payload").fetchone()["count"] == 3
    assert conn.execute("select count(*) from outbox.event").fetchone()["count"] == 3
