"""The API's share of issue 10: `delete_payload` and the opt-in actions, accepted and refused as
every other field (a 400 naming the field, never a traceback)."""

from __future__ import annotations

URL = "http://127.0.0.1:9/hook"


def test_delete_payload_is_ids_by_default_rows_on_request_and_nothing_else(api):
    with api.client() as client:
        created = client.post("/api/webhooks/", json={"url": URL})
        assert created.status_code == 201, created.text
        assert created.json()["delete_payload"] == "ids"
        hook = created.json()["id"]
        patched = client.patch(f"/api/webhooks/{hook}/", json={"delete_payload": "rows"})
        assert patched.status_code == 200 and patched.json()["delete_payload"] == "rows"
        for bad in ("everything", 1, None, ["rows"]):
            refused = client.patch(f"/api/webhooks/{hook}/", json={"delete_payload": bad})
            assert refused.status_code == 400, (bad, refused.text)
            assert "delete_payload" in refused.json()["validation_errors"]
        assert client.get(f"/api/webhooks/{hook}/").json()["delete_payload"] == "rows"


def test_opt_in_actions_can_be_listed_but_are_not_in_label_studios_info(api):
    with api.client() as client:
        created = client.post(
            "/api/webhooks/",
            json={
                "url": URL,
                "send_for_all_actions": False,
                "actions": ["TASK_LABELED", "PREDICTIONS_CREATED"],
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["actions"] == ["TASK_LABELED", "PREDICTIONS_CREATED"]
        info = client.get("/api/webhooks/info/").json()
        assert len(info) == 12 and "TASK_LABELED" not in info
