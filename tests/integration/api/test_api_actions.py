"""The action registry over the admin API (``/api/actions/``, ``GET /api/webhooks/info/``),
webhooks subscribing to custom actions, and ``POST /api/webhooks/<id>/backfill`` with a real relay
and receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outbox.receiver import Receiver

pytestmark = pytest.mark.anyio

MODEL = {"name": "MODEL_TRAINED", "title": "Model trained", "payload_key": "model", "description": "ML"}


def test_a_registered_action_is_listed_by_info_and_can_be_subscribed_to(api):
    with api.client() as client:
        added = client.post("/api/actions/", json=MODEL)
        assert added.status_code == 201 and added.json()["built_in"] is False
        assert client.post("/api/actions/", json=MODEL).status_code == 409
        info = client.get("/api/webhooks/info/").json()
        assert list(info)[-1] == "MODEL_TRAINED" and list(info)[0] == "PROJECT_CREATED"
        assert info["MODEL_TRAINED"] == {
            "name": "Model trained", "description": "ML", "key": "model", "organization-only": False,
        }  # fmt: skip
        assert "MODEL_TRAINED" in client.get("/api/webhooks/info/?organization-only=false").json()
        assert "MODEL_TRAINED" not in client.get("/api/webhooks/info/?organization-only=true").json()
        hook = client.post(
            "/api/webhooks/",
            json={"url": "https://example.com/h", "project": 1, "send_for_all_actions": False,
                  "actions": ["MODEL_TRAINED", "TASKS_CREATED"]},
        )  # fmt: skip
        assert hook.status_code == 201, hook.text
        unknown = client.post("/api/webhooks/", json={"url": "https://example.com/h", "actions": ["NOPE"]})
        assert unknown.status_code == 400
        assert unknown.json()["validation_errors"] == {"actions": {"0": ['"NOPE" is not a valid choice.']}}
        removing = client.delete("/api/actions/MODEL_TRAINED/")
        assert removing.status_code == 409
        assert f"in use by webhook(s) {hook.json()['id']}" in removing.json()["detail"]
        assert client.delete("/api/actions/TASKS_CREATED/").status_code == 409
        assert client.delete("/api/actions/NOT_THERE/").status_code == 404
        assert client.patch(f"/api/webhooks/{hook.json()['id']}/", json={"actions": []}).status_code == 200
        assert client.delete("/api/actions/MODEL_TRAINED/").status_code == 204
        assert "MODEL_TRAINED" not in client.get("/api/webhooks/info/").json()


def test_organization_only_custom_actions_stay_off_project_webhooks(api):
    with api.client() as client:
        billed = {
            "name": "ORG_BILLED",
            "title": "Billed",
            "payload_key": "invoice",
            "organization_only": True,
        }
        assert client.post("/api/actions/", json=billed).status_code == 201
        refused = client.post(
            "/api/webhooks/", json={"url": "https://example.com/h", "project": 1, "actions": ["ORG_BILLED"]}
        )
        assert refused.status_code == 400
        assert refused.json()["validation_errors"] == {
            "non_field_errors": ["Project webhook can't contain organization-only action."]
        }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "lower"}, "name"),
        ({"name": "PING"}, "name"),
        ({"title": ""}, "title"),
        ({"payload_key": "Bad"}, "payload_key"),
        ({"payload_key": "action"}, "payload_key"),
        ({"payload_key": "project"}, "payload_key"),
        ({"name": "X" * 101}, "name"),
    ],
)
def test_bad_actions_are_refused_by_field(api, change, field):
    with api.client() as client:
        refused = client.post("/api/actions/", json={**MODEL, **change})
    assert refused.status_code == 400, refused.text
    assert field in refused.json()["validation_errors"]


def test_the_registry_needs_the_token(api):
    with api.client(token=None) as client:
        assert client.get("/api/actions/").status_code == 401
        assert client.post("/api/webhooks/1/backfill", json={"action": "TASKS_CREATED"}).status_code == 401
        assert client.get("/api/webhooks/info/").status_code == 200


async def test_backfill_sends_existing_tasks_to_one_webhook_chunked_like_an_import(
    start_api, seeded, start_relay
):
    api = start_api(webhook_batch_size=3)  # the backfill cuts chunks as the API's settings say
    conn = seeded
    conn.execute("insert into task (data, project_id, created_at) select '{}', 1, now() - interval '2 days'"
                 " from generate_series(1, 3)")  # fmt: skip
    conn.execute("insert into task (data, project_id) select '{}', 1 from generate_series(1, 4)")
    conn.execute("insert into task (data, project_id) select '{}', 2 from generate_series(1, 2)")
    conn.execute("delete from outbox.change")  # before the webhooks existed: nobody gets them
    async with Receiver() as receiver:
        with api.client() as client:
            new = client.post("/api/webhooks/", json={"url": receiver.url + "/new"}).json()
            client.post("/api/webhooks/", json={"url": receiver.url + "/other"})
            async with start_relay(webhook_batch_size=3):
                done = client.post(
                    f"/api/webhooks/{new['id']}/backfill",
                    json={"action": "TASKS_CREATED", "project": 1, "since": "2000-01-01T00:00:00Z"},
                )
                assert done.status_code == 201, done.text
                assert done.json() == {
                    "webhook": new["id"], "action": "TASKS_CREATED", "events": 1, "deliveries": 3, "rows": 7,
                }  # fmt: skip
                recent = client.post(
                    f"/api/webhooks/{new['id']}/backfill", json={"action": "TASKS_CREATED", "since": "1 day"}
                )
                assert recent.status_code == 400  # a time is ISO 8601 in the API
                day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
                recent = client.post(
                    f"/api/webhooks/{new['id']}/backfill", json={"action": "TASKS_CREATED", "since": day_ago}
                ).json()
                assert (recent["events"], recent["deliveries"], recent["rows"]) == (2, 3, 6)
                requests = await receiver.wait_for(6)
    assert {r.path for r in requests} == {"/new"}  # the other webhook gets nothing
    sizes = sorted(len(r.json["tasks"]) for r in requests)
    assert sizes == [1, 1, 2, 3, 3, 3]
    first = [r.json for r in requests if len(r.json["tasks"]) == 3]
    assert all(
        list(b) == ["action", "tasks", "project"] and b["project"]["task_number"] in (7, 2) for b in first
    )


def test_backfill_refuses_what_it_cannot_send(api, seeded):
    with api.client() as client:
        project_hook = client.post(
            "/api/webhooks/", json={"url": "https://example.com/p", "project": 1}
        ).json()
        listed = client.post(
            "/api/webhooks/",
            json={
                "url": "https://example.com/l",
                "send_for_all_actions": False,
                "actions": ["ANNOTATION_CREATED"],
            },
        ).json()
        seeded.execute("insert into task (data, project_id) values ('{}', 1)")

        def backfill(webhook: int, **body: Any) -> Any:
            return client.post(f"/api/webhooks/{webhook}/backfill", json={"action": "TASKS_CREATED", **body})

        assert backfill(999).status_code == 404
        wrong = backfill(project_hook["id"], project=2)
        assert wrong.status_code == 400 and "for project 1 only" in wrong.text
        assert "does not take TASKS_CREATED" in backfill(listed["id"]).text
        assert "is not a project of organization 1" in backfill(listed["id"], project=99).text
        unsupported = client.post(
            f"/api/webhooks/{listed['id']}/backfill", json={"action": "PROJECT_UPDATED"}
        )
        assert unsupported.status_code == 400 and "A backfill sends TASKS_CREATED" in unsupported.text
