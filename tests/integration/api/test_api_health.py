"""/healthz, /readyz and /metrics against a real server and database."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.anyio


def _metrics(api) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with api.client(scheme="Bearer") as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_readiness_follows_the_migrations(api, seeded):
    with api.client(token=None) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["migrations"] == "current"
        # the database is shared by the suite: put the row back whatever happens
        row = seeded.execute(
            "delete from outbox.schema_migrations where name = 'capture.sql' returning *"
        ).fetchone()
        try:
            not_ready = client.get("/readyz")
        finally:
            seeded.execute(
                "insert into outbox.schema_migrations (name, kind, checksum, applied_at)"
                " values (%(name)s, %(kind)s, %(checksum)s, %(applied_at)s)",
                row,
            )
    assert not_ready.status_code == 503
    assert not_ready.json() == {
        "status": "not ready", "database": "ok", "migrations": "pending: run `outbox migrate`",
        "pending": ["capture.sql"], "relays": "unknown",
    }  # fmt: skip


async def test_readiness_needs_a_live_relay_when_work_is_queued(api, seeded, start_relay):
    """issue 11: /readyz said "ready" with no relay running and work queued."""
    with api.client(token=None) as client:
        idle = client.get("/readyz")
        assert idle.status_code == 200 and idle.json()["relays"] == "none alive, nothing queued"
        seeded.execute("insert into task (data, project_id) values ('{}', 1)")  # a captured change
        queued = client.get("/readyz")
        assert queued.status_code == 503
        assert queued.json() == {
            "status": "not ready", "database": "ok", "migrations": "current", "pending": [],
            "relays": "none alive with captured changes queued: start `outbox relay` (or `outbox up`)",
        }  # fmt: skip
        # a delivery due on an active webhook is work too (one on a paused webhook waits on purpose)
        seeded.execute("delete from outbox.change")  # routed, as it were
        hook = seeded.execute(
            "insert into outbox.webhook (organization_id, url) values (1, 'http://127.0.0.1:9/') returning id"
        ).fetchone()["id"]
        event = seeded.execute(
            "insert into outbox.event (action, organization_id, chunk_size) values ('PING', 1, 1) returning id"
        ).fetchone()["id"]
        seeded.execute("insert into outbox.delivery (event_id, webhook_id) values (%s, %s)", (event, hook))
        due = client.get("/readyz")
        assert due.status_code == 503 and "due deliveries queued" in due.json()["relays"]
        seeded.execute("update outbox.webhook set is_active = false where id = %s", (hook,))
        assert client.get("/readyz").status_code == 200
        seeded.execute("update outbox.webhook set is_active = true where id = %s", (hook,))
        async with start_relay():
            alive = client.get("/readyz")
    assert alive.status_code == 200 and alive.json()["relays"] == "alive: 1"


def test_readiness_when_the_database_is_unreachable(start_api, seeded):
    from outbox.api import create_app
    from tests.integration.api.conftest import api_settings, serve

    app = create_app(
        api_settings(), "host=127.0.0.1 port=1 dbname=nothing connect_timeout=1", admin_token=None
    )
    with serve(app) as url:
        import httpx

        answer = httpx.get(url + "/readyz", timeout=30)
        assert httpx.get(url + "/healthz").status_code == 200
    assert answer.status_code == 503 and answer.json()["database"].startswith("unreachable")


def test_metrics_read_the_tables(api, seeded):
    with api.client() as client:
        hook = client.post("/api/webhooks/", json={"url": "http://127.0.0.1:9/", "project": 1}).json()
        client.post("/api/webhooks/", json={"url": "http://127.0.0.1:9/", "project": 2, "is_active": False})
        for _ in range(3):
            client.post(f"/api/webhooks/{hook['id']}/test")
    seeded.execute("delete from outbox.change")  # the seeding's own
    seeded.execute("insert into task (data, project_id) values ('{}', 1)")  # a change not yet routed
    delivery = seeded.execute("select min(id) as id from outbox.delivery").fetchone()["id"]
    seeded.execute(
        "update outbox.delivery set state = 'dead', attempts = 8, finished_at = now() where id = %s",
        (delivery,),
    )
    seeded.execute(
        "insert into outbox.attempt (delivery_id, attempt, started_at, duration_ms, status_code, request_headers)"
        " values (%s, 1, now(), 12, 200, '{}'), (%s, 2, now(), 700, 500, '{}')",
        (delivery, delivery),
    )
    seeded.execute(
        "insert into outbox.relay (id, hostname, pid, version) values (gen_random_uuid(), 'h', 1, 'v')"
    )
    found = _metrics(api)
    assert found["outbox_deliveries"] == {
        (("state", "pending"),): 2,
        (("state", "delivered"),): 0,
        (("state", "dead"),): 1,
    }
    assert found["outbox_dead_deliveries"][()] == 1
    assert found["outbox_queue_depth"][()] == 2
    assert found["outbox_oldest_pending_delivery_age_seconds"][()] >= 0
    assert found["outbox_events"] == {(("action", "PING"),): 3}
    assert found["outbox_changes_pending"][()] == 1
    assert found["outbox_relays_alive"][()] == 1
    assert found["outbox_webhooks"][(("status", "paused"),)] == 1
    assert found["outbox_webhooks"][(("status", "active"),)] == 1
    success = (("le", "0.025"), ("outcome", "success"))
    assert found["outbox_attempt_duration_seconds_bucket"][success] == 1
    assert found["outbox_attempt_duration_seconds_bucket"][(("le", "0.5"), ("outcome", "failure"))] == 0
    assert found["outbox_attempt_duration_seconds_bucket"][(("le", "1.0"), ("outcome", "failure"))] == 1
    assert found["outbox_attempt_duration_seconds_count"][(("outcome", "failure"),)] == 1
    assert abs(found["outbox_attempt_duration_seconds_sum"][(("outcome", "failure"),)] - 0.7) < 1e-9
