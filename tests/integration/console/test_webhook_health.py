"""``consecutive_failures``: the read-only field Label Studio's newest webhook model has, fed by
the relay's health record of each webhook (outbox.webhook_health), in the API and the console."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.integration.api.conftest import ApiServer
from tests.integration.console.conftest import Browser


def test_consecutive_failures_is_read_only_and_follows_the_health_record(
    console: ApiServer, logged_in: Browser, conn: psycopg.Connection[Any]
):
    with console.client() as api:
        created = api.post(
            "/api/webhooks/",
            json={"url": "http://127.0.0.1:9/hook", "project": 1, "consecutive_failures": 99},
        )
        assert created.status_code == 201 and created.json()["consecutive_failures"] == 0
        webhook_id = created.json()["id"]
        patched = api.patch(f"/api/webhooks/{webhook_id}/", json={"consecutive_failures": 5})
        assert patched.status_code == 200 and patched.json()["consecutive_failures"] == 0
        conn.execute(
            "insert into outbox.webhook_health (webhook_id, consecutive_failures, failing_since, last_failure_at)"
            " values (%s, 7, now(), now())",
            (webhook_id,),
        )
        shown = api.get(f"/api/webhooks/{webhook_id}/").json()
        assert shown["consecutive_failures"] == 7 == shown["health"]["consecutive_failures"]
        assert shown["status"] == "failing"
        assert [w["consecutive_failures"] for w in api.get("/api/webhooks/").json()] == [7]
    page = logged_in.client.get(f"/webhooks/{webhook_id}").text
    assert '<dd id="consecutive-failures" class="bad">7</dd>' in page
    assert '<td class="num bad">7</td>' in logged_in.client.get("/").text
    with console.client() as api:
        resumed = api.post(f"/api/webhooks/{webhook_id}/pause").json()
        assert resumed["consecutive_failures"] == 7  # paused keeps its record...
        assert (
            api.post(f"/api/webhooks/{webhook_id}/resume").json()["consecutive_failures"] == 0
        )  # ...resuming clears it
