"""The webhooks API against a real server and database: what outbox adds to Label Studio's API, and
how it refuses bad input (always a 4xx with a clear message, never a secret or header value)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relay.signing import generate_secret

URL = "http://127.0.0.1:9/hook"


def test_auth_token_or_bearer_and_public_routes(api):
    with api.client(token=None) as anonymous:
        refused = anonymous.get("/api/webhooks/")
        assert refused.status_code == 401
        assert refused.json()["detail"] == "Authentication credentials were not provided."
        assert refused.headers["www-authenticate"].startswith("Token")
        assert anonymous.get("/api/webhooks/info/").status_code == 200
        assert anonymous.get("/healthz").json() == {"status": "UP"}
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/metrics").status_code == 401
    with api.client(token="wrong-token") as wrong:
        assert wrong.get("/api/webhooks/").json()["detail"] == "Invalid token."
    with api.client(scheme="Bearer") as bearer:
        assert bearer.get("/api/webhooks/").status_code == 200
    with api.client(scheme="Basic") as other_scheme:
        assert other_scheme.get("/api/webhooks/").status_code == 401


def test_organization_level_webhooks_can_be_created(api):
    with api.client() as client:
        created = client.post("/api/webhooks/", json={"url": URL, "actions": ["PROJECT_CREATED"]})
        assert created.status_code == 201, created.text
        assert created.json()["project"] is None and created.json()["organization"] == 1
        assert [w["id"] for w in client.get("/api/webhooks/?project=null").json()] == [created.json()["id"]]
        assert client.get("/api/webhooks/?project=1").json() == []


def test_organization_is_the_projects_or_the_one_given(api, seeded):
    seeded.execute("insert into organization (id, title) values (2, 'second')")
    seeded.execute("insert into project (id, title, organization_id) values (3, 'p3', 2)")
    with api.client() as client:
        assert client.post("/api/webhooks/", json={"url": URL, "project": 3}).json()["organization"] == 2
        mismatch = client.post("/api/webhooks/", json={"url": URL, "project": 3, "organization": 1})
        assert mismatch.status_code == 400 and "organization" in mismatch.json()["validation_errors"]
        # two organizations now: an organization-level webhook must name its organization
        ambiguous = client.post("/api/webhooks/", json={"url": URL})
        assert ambiguous.status_code == 400
        assert "several organizations" in ambiguous.json()["validation_errors"]["organization"][0]
        assert client.post("/api/webhooks/", json={"url": URL, "organization": 2}).json()["organization"] == 2
        unknown = client.post("/api/webhooks/", json={"url": URL, "organization": 77})
        assert unknown.json()["validation_errors"] == {
            "organization": ['Invalid pk "77" - object does not exist.']
        }
        assert [w["organization"] for w in client.get("/api/webhooks/?organization=2").json()] == [2, 2]


def test_outbox_fields_defaults_and_updates(api):
    with api.client() as client:
        created = client.post("/api/webhooks/", json={"url": URL, "project": 1}).json()
        assert {k: created[k] for k in ("description", "ordered", "max_concurrency", "rate_limit",
                                        "timeout", "retry_schedule", "secret", "status")} == {
            "description": "", "ordered": False, "max_concurrency": 8, "rate_limit": None,
            "timeout": None, "retry_schedule": None, "secret": None, "status": "active",
        }  # fmt: skip
        assert created["health"]["consecutive_failures"] == 0
        changed = client.patch(f"/api/webhooks/{created['id']}/", json={
            "description": "ml backend", "ordered": True, "max_concurrency": 2, "rate_limit": 5.5,
            "timeout": 30, "retry_schedule": [0, 10, 60],
        }).json()  # fmt: skip
        assert (changed["description"], changed["ordered"], changed["max_concurrency"]) == (
            "ml backend",
            True,
            2,
        )
        assert (changed["rate_limit"], changed["timeout"], changed["retry_schedule"]) == (
            5.5,
            30.0,
            [0, 10, 60],
        )
        assert changed["updated_at"] > created["updated_at"]
        # put: url required, other fields kept; project cannot change
        put = client.put(f"/api/webhooks/{created['id']}/", json={"url": URL + "/2", "project": 2})
        assert put.status_code == 200 and put.json()["project"] == 1 and put.json()["ordered"] is True


def test_patch_without_actions_keeps_them(api):
    with api.client() as client:
        hook = client.post("/api/webhooks/", json={
            "url": URL, "project": 1, "send_for_all_actions": False, "actions": ["TASKS_CREATED", "TASKS_CREATED"],
        }).json()  # fmt: skip
        assert hook["actions"] == ["TASKS_CREATED"]
        patched = client.patch(f"/api/webhooks/{hook['id']}/", json={"url": URL + "/x"}).json()
        assert patched["actions"] == ["TASKS_CREATED"]
        emptied = client.patch(f"/api/webhooks/{hook['id']}/", json={"actions": []}).json()
        assert emptied["actions"] == []
        refused = client.patch(f"/api/webhooks/{hook['id']}/", json={"actions": ["PROJECT_DELETED"]})
        assert refused.json()["validation_errors"] == {
            "non_field_errors": ["Project webhook can't contain organization-only action."]
        }


BAD_INPUT = [
    ({"url": "ftp://example.com/x"}, "url", "http:// or https://"),
    ({"url": "http://exa mple.com/"}, "url", "whitespace"),
    ({"url": "http://example.com:99999/"}, "url", "valid URL"),
    ({"url": "https://" + "a" * 2100}, "url", "2048"),
    ({"url": URL, "headers": {"Content-Type": "text/plain"}}, "headers", "set by outbox"),
    ({"url": URL, "headers": {"X-Token": "secret-value\n"}}, "headers", "control characters"),
    ({"url": URL, "headers": {"bad name": "secret-value"}}, "headers", "letters, digits"),
    ({"url": URL, "headers": {"X-Number": 12345}}, "headers", "string value"),
    ({"url": URL, "secret": "whsec_short"}, "secret", "24 to 64 random bytes"),
    ({"url": URL, "secret": "not-a-secret-value"}, "secret", "whsec_"),
    ({"url": URL, "max_concurrency": 0}, "max_concurrency", "greater than or equal to 1"),
    ({"url": URL, "rate_limit": -1}, "rate_limit", "greater than or equal to 0.01"),
    ({"url": URL, "timeout": 301}, "timeout", "less than or equal to 300"),
    ({"url": URL, "retry_schedule": []}, "retry_schedule", "at least 1"),
    ({"url": URL, "retry_schedule": [-5]}, "retry_schedule", "greater than or equal to 0"),
    ({"url": URL, "description": "a\u0000b"}, "description", "NUL"),
    ({"url": URL, "project": "abc"}, "project", "Expected pk value"),
    ({"url": URL, "project": 2**40}, "project", "less than or equal to"),
]


def test_bad_input_is_a_400_naming_the_field(api):
    with api.client() as client:
        for body, field, message in BAD_INPUT:
            response = client.post("/api/webhooks/", json={"project": 1, **body})
            assert response.status_code == 400, (body, response.text)
            errors = response.json()["validation_errors"]
            assert field in errors and message in str(errors[field]), (body, errors)
            assert "secret-value" not in response.text and "12345" not in response.text


def test_non_finite_numbers_and_broken_json(api):
    with api.client() as client:
        nan = client.post(
            "/api/webhooks/",
            content=b'{"url": "http://x.org", "rate_limit": NaN}',
            headers={"Content-Type": "application/json"},
        )
        assert nan.status_code == 400 and "rate_limit" in nan.json()["validation_errors"]
        broken = client.post("/api/webhooks/", content=b"{bad", headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["detail"].startswith("JSON parse error")
        huge = client.post(
            "/api/webhooks/", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"}
        )
        assert huge.status_code == 413
        assert client.get("/api/webhooks/abc/").status_code == 404
        assert client.get(f"/api/webhooks/{2**40}/").status_code == 404
        assert client.delete("/api/webhooks/").status_code == 405


def test_cap_on_webhooks_per_organization(start_api, seeded):
    api = start_api(max_webhooks_per_organization=2)
    with api.client() as client:
        for _ in range(2):
            assert client.post("/api/webhooks/", json={"url": URL, "project": 1}).status_code == 201
        refused = client.post("/api/webhooks/", json={"url": URL, "project": 2})
    assert refused.status_code == 400
    assert (
        "OUTBOX_MAX_WEBHOOKS_PER_ORGANIZATION=2" in refused.json()["validation_errors"]["non_field_errors"][0]
    )


def test_secret_is_write_only_masked_and_rotated_with_a_grace_period(api, seeded):
    secret = generate_secret()
    with api.client() as client:
        hook = client.post("/api/webhooks/", json={"url": URL, "project": 1, "secret": secret}).json()
        assert hook["secret"] == "whsec_****" + secret[-4:]
        # a client sending back what it read changes nothing
        same = client.put(f"/api/webhooks/{hook['id']}/", json=hook)
        assert same.status_code == 200, same.text
        assert seeded.execute("select secret from outbox.webhook").fetchone()["secret"] == secret
        before = datetime.now(UTC)
        rotated = client.post(f"/api/webhooks/{hook['id']}/rotate-secret").json()
        new_secret = rotated["secret"]
        assert new_secret.startswith("whsec_") and new_secret != secret
        expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert timedelta(hours=23) < expires - before < timedelta(hours=25)
        row = seeded.execute("select secret, previous_secret from outbox.webhook").fetchone()
        assert (row["secret"], row["previous_secret"]) == (new_secret, secret)
        # chosen by the client: not echoed
        chosen = generate_secret()
        again = client.post(f"/api/webhooks/{hook['id']}/rotate-secret", json={"secret": chosen})
        assert again.json()["secret"] is None and chosen not in again.text
        listed = client.get("/api/webhooks/").text
        assert secret not in listed and new_secret not in listed and chosen not in listed
        removed = client.patch(f"/api/webhooks/{hook['id']}/", json={"secret": None}).json()
        assert removed["secret"] is None


def test_pause_and_resume(api, seeded):
    with api.client() as client:
        hook = client.post("/api/webhooks/", json={"url": URL, "project": 1}).json()
        paused = client.post(f"/api/webhooks/{hook['id']}/pause").json()
        assert (paused["is_active"], paused["status"], paused["disabled_at"] is not None) == (
            False,
            "paused",
            True,
        )
        assert client.post(f"/api/webhooks/{hook['id']}/test").status_code == 409
        seeded.execute("update outbox.webhook set disabled_reason = 'receiver answered 410 Gone'")
        assert client.get(f"/api/webhooks/{hook['id']}/").json()["status"] == "disabled"
        resumed = client.post(f"/api/webhooks/{hook['id']}/resume").json()
        assert (resumed["is_active"], resumed["status"], resumed["disabled_reason"]) == (True, "active", None)
        # the LS way works too
        assert (
            client.patch(f"/api/webhooks/{hook['id']}/", json={"is_active": False}).json()["status"]
            == "paused"
        )


def test_delete_removes_the_delivery_log(api, seeded):
    with api.client() as client:
        hook = client.post("/api/webhooks/", json={"url": URL, "project": 1}).json()
        assert client.post(f"/api/webhooks/{hook['id']}/test").status_code == 201
        assert client.delete(f"/api/webhooks/{hook['id']}/").status_code == 204
        assert client.get(f"/api/webhooks/{hook['id']}/").status_code == 404
    assert seeded.execute("select count(*) as n from outbox.delivery").fetchone()["n"] == 0


@pytest.mark.anyio
async def test_database_check_is_a_backstop(api):
    # A rule only the database knows (here: the Python check bypassed) still answers 400.
    from outbox.admin import webhooks
    from outbox.admin.database import create_engine
    from outbox.admin.errors import Invalid
    from outbox.admin.models import WebhookCreate

    engine = create_engine(api.database_url, pool_size=None)
    try:
        bad = WebhookCreate.model_construct(
            url="ftp://example.com/", project=1, organization=None, send_payload=True,
            send_for_all_actions=True, headers={}, is_active=True, actions=[], description="",
            secret=None, ordered=False, max_concurrency=8, rate_limit=None, timeout=None,
            retry_schedule=None,
        )  # fmt: skip
        with pytest.raises(Invalid) as caught:
            await webhooks.create(engine, bad, max_per_organization=100)
    finally:
        await engine.dispose()
    assert caught.value.errors == {
        "url": [
            "webhook url must be an absolute http:// or https:// URL, or a broker URL (amqp://, amqps://, nats://, tls://, redis://, rediss://)"
        ]
    }


def test_a_urls_password_is_listed_masked_and_kept_when_sent_back_masked(api, seeded):
    """A broker URL (or HTTP basic auth) carries a password: listings show it as ***, a client
    sending back what it read keeps the stored one, a new one replaces it."""
    with api.client() as client:
        created = client.post(
            "/api/webhooks/", json={"url": "http://bob:pw-1-secret@127.0.0.1:9/h", "project": 1}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["url"] == "http://bob:***@127.0.0.1:9/h"
        listed = client.get("/api/webhooks/").json()
        assert "pw-1-secret" not in str(listed)
        read = client.get(f"/api/webhooks/{hook['id']}/").json()
        assert (
            client.put(f"/api/webhooks/{hook['id']}/", json={**read, "url": read["url"] + "?x=1"}).status_code
            == 200
        )

        def stored() -> str:
            return seeded.execute("select url from outbox.webhook where id = %s", (hook["id"],)).fetchone()[
                "url"
            ]

        assert stored() == "http://bob:pw-1-secret@127.0.0.1:9/h?x=1"
        client.patch(f"/api/webhooks/{hook['id']}/", json={"url": "http://bob:pw-2@127.0.0.1:9/h"})
        assert stored() == "http://bob:pw-2@127.0.0.1:9/h"
