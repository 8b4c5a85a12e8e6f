"""The console's pages as a browser without JavaScript uses them: forms post, then redirect to
a page that says what happened; bad input comes back as the form with its errors."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.integration.api.conftest import ApiServer
from tests.integration.console.conftest import Browser, csrf_of


def _dead_delivery(conn: psycopg.Connection[Any], webhook_id: int) -> int:
    event = conn.execute(
        "insert into outbox.event (action, project_id, row_ids, chunk_size) values ('PING', 1, %s, 1) returning id",
        ([webhook_id],),
    ).fetchone()["id"]
    return int(
        conn.execute(
            "insert into outbox.delivery (event_id, webhook_id, project_id, state, attempts, finished_at)"
            " values (%s, %s, 1, 'dead', 5, now()) returning id",
            (event, webhook_id),
        ).fetchone()["id"]
    )


def _create(browser: Browser, **fields: str) -> str:
    form = {"url": "http://127.0.0.1:9/hook", "project": "1", "send_for_all_actions": "all", "send_payload": "on",
            "max_concurrency": "8", **fields}  # fmt: skip
    answer = browser.post("/webhooks/new", form, csrf_from="/webhooks/new")
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def test_create_edit_pause_resume_and_delete(logged_in: Browser, console: ApiServer):
    location = _create(
        logged_in, send_for_all_actions="selected", actions="TASKS_CREATED", retry_schedule="0, 5, 60"
    )
    assert location == "/webhooks/1?notice=created"
    page = logged_in.client.get(location).text
    assert "Webhook created." in page and "TASKS_CREATED" in page and "0, 5, 60 s" in page
    assert (
        logged_in.post("/webhooks/1/pause", csrf_from="/webhooks/1").headers["location"]
        == "/webhooks/1?notice=paused"
    )
    assert "badge s-paused" in logged_in.client.get("/webhooks/1").text
    assert logged_in.post("/webhooks/1/resume", csrf_from="/webhooks/1").status_code == 303
    confirm = logged_in.client.get("/webhooks/1/delete")
    assert "Delete webhook #1?" in confirm.text
    deleted = logged_in.client.post("/webhooks/1/delete", data={"csrf": csrf_of(confirm.text)})
    assert deleted.headers["location"] == "/?notice=deleted"
    assert logged_in.client.get("/webhooks/1").status_code == 404
    with console.client() as api:
        assert api.get("/api/webhooks/").json() == []


def test_bad_input_comes_back_with_its_errors(logged_in: Browser, console: ApiServer):
    cases = [
        ({"url": "ftp://x"}, "url"),
        ({"max_concurrency": "lots"}, "A valid integer is required."),
        ({"max_concurrency": "0"}, "greater than or equal to 1"),
        ({"headers": "no colon here"}, "Name: value"),
        ({"headers": "Content-Type: text/plain"}, "Content-Type"),
        ({"retry_schedule": "soon"}, "Seconds before each attempt"),
        ({"project": "99"}, "does not exist"),
        ({"send_for_all_actions": "selected", "actions": "NOT_AN_ACTION"}, "not a valid choice"),
    ]
    for fields, expected in cases:
        form = {"url": "http://127.0.0.1:9/hook", "project": "1", "max_concurrency": "8", **fields}
        answer = logged_in.post("/webhooks/new", form, csrf_from="/webhooks/new")
        assert answer.status_code == 400, (fields, answer.status_code)
        assert "Not saved" in answer.text and expected in answer.text, (fields, answer.text[-3000:])
        assert f'value="{form["url"]}"' in answer.text  # what was typed is kept
    with console.client() as api:
        assert api.get("/api/webhooks/").json() == []


def test_what_the_state_does_not_allow_is_said_on_a_page(logged_in: Browser):
    _create(logged_in)
    logged_in.post("/webhooks/1/pause", csrf_from="/webhooks/1")
    refused = logged_in.post("/webhooks/1/test", csrf_from="/webhooks/1")
    assert refused.status_code == 409 and "resume it to test it" in refused.text
    assert logged_in.client.get("/webhooks/77").status_code == 404
    assert logged_in.client.get("/deliveries/77").status_code == 404
    assert logged_in.client.get("/deliveries?state=lost").status_code == 400
    assert logged_in.client.get("/deliveries?cursor=garbage").status_code == 400
    assert logged_in.client.get("/deliveries?webhook=abc").status_code == 400


def test_recover_and_retry(logged_in: Browser, console: ApiServer, conn: psycopg.Connection[Any]):
    _create(logged_in)
    first, second = _dead_delivery(conn, 1), _dead_delivery(conn, 1)
    page = logged_in.client.get("/deliveries?state=dead&webhook=1").text
    assert f"/deliveries/{first}" in page and f"/deliveries/{second}" in page
    answer = logged_in.post(
        "/webhooks/1/recover", {"since": "2000-01-01T00:00", "until": ""}, csrf_from="/webhooks/1"
    )
    assert answer.headers["location"] == "/webhooks/1?notice=recovered&n=2"
    assert "2 deliveries made due again." in logged_in.client.get(answer.headers["location"]).text
    assert "No delivery matches." in logged_in.client.get("/deliveries?state=dead").text
    bad = logged_in.post("/webhooks/1/recover", {"since": "yesterday"}, csrf_from="/webhooks/1")
    assert bad.status_code == 400 and "Use a date and time" in bad.text
    conn.execute("update outbox.delivery set state = 'dead' where id = %s", (first,))
    retried = logged_in.post(f"/deliveries/{first}/retry", csrf_from=f"/deliveries/{first}")
    assert retried.headers["location"] == f"/deliveries/{first}?notice=retried"
    with console.client() as api:
        assert api.get(f"/api/deliveries/{first}/").json()["state"] == "pending"


def test_deliveries_are_filtered_and_paged(logged_in: Browser, conn: psycopg.Connection[Any]):
    _create(logged_in)
    ids = [_dead_delivery(conn, 1) for _ in range(55)]
    page = logged_in.client.get("/deliveries?state=dead&action=PING&project=1").text
    assert page.count('<tr>\n    <td><a href="/deliveries/') == 50
    older = logged_in.client.get("/deliveries?state=dead&action=PING&project=1")
    assert 'id="older"' in older.text
    link = older.text.split('" id="older"')[0].rsplit('href="', 1)[1].replace("&amp;", "&")
    rest = logged_in.client.get(link).text
    assert rest.count('<tr>\n    <td><a href="/deliveries/') == 5 and f"/deliveries/{ids[0]}" in rest
    assert "No delivery matches." in logged_in.client.get("/deliveries?state=delivered").text
    assert "No delivery matches." in logged_in.client.get("/deliveries?project=2").text


def test_a_delivery_shows_its_body(logged_in: Browser, conn: psycopg.Connection[Any]):
    _create(logged_in)
    test = logged_in.post("/webhooks/1/test", csrf_from="/webhooks/1")
    page = logged_in.client.get(test.headers["location"]).text
    assert "Test event queued" in page and "The body is not built yet" in page
    conn.execute(
        'update outbox.payload set body = convert_to(\'{"action":"PING","webhook":{"id":1}}\', \'UTF8\'), built_at = now()'
    )
    page = logged_in.client.get(test.headers["location"]).text
    assert "{\n  &#34;action&#34;: &#34;PING&#34;," in page  # indented to be read (and escaped)
    assert 'hx-get="/deliveries/' in page  # pending: the page follows it


def test_adopting_label_studios_webhooks_from_the_console(
    logged_in: Browser, console: ApiServer, conn: psycopg.Connection[Any]
):
    from tests.support import ls_schema

    secret = "header-secret-value-never-shown"
    ls_schema.label_studio_webhook(
        conn, 1, "https://ml.example.com/train?token=url-secret", project_id=1,
        actions=("ANNOTATION_CREATED",), headers={"Authorization": f"Bearer {secret}"},
    )  # fmt: skip
    plan = logged_in.client.get("/adopt")
    assert plan.status_code == 200 and "#1" in plan.text and "adopt" in plan.text
    assert secret not in plan.text and "url-secret" not in plan.text and "Authorization" in plan.text
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0  # a dry run
    refused = logged_in.client.post("/adopt", data={"deactivate": "on"})  # no CSRF token
    assert refused.status_code == 403
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0
    done = logged_in.client.post("/adopt", data={"csrf": csrf_of(plan.text), "deactivate": "on"})
    assert done.status_code == 200 and "Adopted from Label Studio" in done.text
    [copy] = conn.execute("select url, actions from outbox.webhook").fetchall()
    assert copy == {"url": "https://ml.example.com/train?token=url-secret", "actions": ["ANNOTATION_CREATED"]}
    assert conn.execute("select is_active from public.webhook where id = 1").fetchone()["is_active"] is False
    again = logged_in.client.get("/adopt")
    assert "already adopted" in again.text
