"""Subscriptions managed with plain SQL: bad rows are refused with messages that say why."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support import lsdb


@pytest.fixture(autouse=True)
def label_studio(conn):
    """Organization 1 with project 5, organization 2 with project 6: a webhook must name rows that
    exist (issue 9 item 9)."""
    lsdb.organization(conn)
    lsdb.organization(conn, org_id=2, user_id=2)
    lsdb.project(conn, 5)
    lsdb.project(conn, 6, org_id=2)


def add(conn, **columns):
    row = {"organization_id": 1, "url": "https://example.com/hook", **columns}
    names = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    values = [Jsonb(v) if k == "headers" else v for k, v in row.items()]
    return conn.execute(
        f"insert into outbox.webhook ({names}) values ({marks}) returning *", values
    ).fetchone()


def refused(conn, message: str, **columns) -> str:
    with pytest.raises(psycopg.errors.CheckViolation) as error:
        add(conn, **columns)
    text = str(error.value)
    assert message in text
    return text


def test_defaults_are_label_studios(conn):
    row = add(conn)
    assert row["send_payload"] and row["send_for_all_actions"] and row["is_active"]
    assert row["actions"] == [] and row["headers"] == {} and row["secret"] is None
    assert row["project_id"] is None and row["max_concurrency"] == 8 and not row["ordered"]


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http://", "http://a b/"])
def test_url_must_be_http_or_https(conn, url):
    refused(conn, "http:// or https://" if " " not in url else "whitespace", url=url)


def test_url_length_is_capped_like_label_studio(conn):
    refused(conn, "2048", url="https://example.com/" + "a" * 2100)


def test_headers_are_an_object_of_at_most_ten_strings_with_valid_names(conn):
    refused(conn, "JSON object", headers=["Authorization", "x"])
    refused(conn, "at most 10", headers={f"X-H{i}": "v" for i in range(11)})
    refused(conn, "string value", headers={"X-Count": 3})
    refused(conn, "is invalid", headers={"Bad Header": "v"})
    refused(conn, "cannot be overridden", headers={"webhook-signature": "v1,forged"})
    refused(conn, "control characters", headers={"X-Inject": "a\r\nHost: evil"})
    assert add(conn, headers={"Authorization": "Bearer t", "X_Org-Hook": "1"})["headers"]


def test_header_values_never_appear_in_errors(conn):
    text = refused(conn, "must not contain", headers={"Authorization": "Bearer s3cr3t\n"})
    assert "s3cr3t" not in text


def test_actions_must_be_known(conn):
    text = refused(
        conn, "unknown action(s) TASK_CREATED", send_for_all_actions=False, actions=["TASK_CREATED"]
    )
    assert "known actions: PROJECT_CREATED" in text


def test_organization_only_actions_are_refused_on_project_level_webhooks(conn):
    refused(
        conn,
        "PROJECT_CREATED can only be sent to organization-level",
        project_id=5,
        actions=["PROJECT_CREATED"],
    )
    assert add(conn, actions=["PROJECT_CREATED"])["actions"] == ["PROJECT_CREATED"]
    assert add(conn, project_id=5, actions=["PROJECT_UPDATED"])["project_id"] == 5


def test_secrets_have_the_standard_webhooks_format(conn):
    refused(conn, "whsec_", secret="hunter2")
    refused(conn, "24 to 64", secret="whsec_" + "QUJD")  # 3 bytes
    generated = conn.execute("select outbox.generate_secret() as s").fetchone()["s"]
    assert add(conn, secret=generated)["secret"] == generated


def test_changing_a_secret_keeps_the_old_one_for_a_grace_period(conn):
    first = conn.execute("select outbox.generate_secret() as s").fetchone()["s"]
    second = conn.execute("select outbox.generate_secret() as s").fetchone()["s"]
    hook = add(conn, secret=first)
    row = conn.execute(
        "update outbox.webhook set secret = %s where id = %s"
        " returning previous_secret, previous_secret_expires_at - now() as grace",
        (second, hook["id"]),
    ).fetchone()
    assert row["previous_secret"] == first
    assert row["grace"].total_seconds() == pytest.approx(24 * 3600, abs=5)


def test_reenabling_clears_the_disabled_reason_and_health(conn):
    hook = add(conn)
    conn.execute(
        "insert into outbox.webhook_health (webhook_id, consecutive_failures) values (%s, 60)",
        (hook["id"],),
    )
    conn.execute(
        "update outbox.webhook set is_active = false, disabled_reason = 'gone' where id = %s",
        (hook["id"],),
    )
    row = conn.execute(
        "update outbox.webhook set is_active = true where id = %s returning disabled_reason, updated_at > created_at as touched",
        (hook["id"],),
    ).fetchone()
    assert row == {"disabled_reason": None, "touched": True}
    assert conn.execute("select count(*) from outbox.webhook_health").fetchone()["count"] == 0


# -- issue 9 item 9: a subscription must name an organization and a project that exist ----------


def test_an_organization_that_does_not_exist_is_refused(conn):
    """issue 9 item 9: SQL accepted a webhook of an organization that does not exist."""
    text = refused(conn, "webhook organization 99 does not exist", organization_id=99)
    assert "HINT" in text
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0


def test_a_project_that_does_not_exist_is_refused(conn):
    """issue 9 item 9: SQL accepted a webhook of a project that does not exist."""
    text = refused(conn, "webhook project 404 does not exist", project_id=404)
    assert "organization-level webhook" in text  # the hint says how to subscribe to all projects
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0


def test_a_project_of_another_organization_is_refused(conn):
    """issue 9 item 9: SQL accepted a webhook of organization 1 for a project of organization 2."""
    refused(conn, "webhook project 6 belongs to another organization", project_id=6)
    assert add(conn, organization_id=2, project_id=6)["project_id"] == 6


def test_moving_a_webhook_to_a_project_or_organization_that_does_not_fit_is_refused(conn):
    """issue 9 item 9: the check also runs when organization_id or project_id change."""
    hook = add(conn, project_id=5)["id"]
    for change, message in [
        ("project_id = 404", "webhook project 404 does not exist"),
        ("project_id = 6", "webhook project 6 belongs to another organization"),
        ("organization_id = 99", "webhook organization 99 does not exist"),
    ]:
        with pytest.raises(psycopg.errors.CheckViolation, match=message):
            conn.execute(f"update outbox.webhook set {change} where id = %s", (hook,))
    moved = conn.execute(
        "update outbox.webhook set organization_id = 2, project_id = 6 where id = %s returning project_id",
        (hook,),
    ).fetchone()
    assert moved["project_id"] == 6


def test_a_webhook_whose_project_was_deleted_can_still_be_edited_paused_and_deleted(conn):
    """issue 9 item 9: the check is no foreign key: Label Studio deletes its project freely, and the
    webhook left behind stays editable (even by an UPDATE that sets project_id to itself, as an API
    PUT does), pausable and deletable."""
    hook = add(conn, project_id=5)["id"]
    conn.execute("delete from project where id = 5")
    row = conn.execute(
        "update outbox.webhook set is_active = false, url = 'https://example.com/new',"
        " project_id = project_id, organization_id = organization_id where id = %s"
        " returning is_active, url",
        (hook,),
    ).fetchone()
    assert row == {"is_active": False, "url": "https://example.com/new"}
    conn.execute("delete from outbox.webhook where id = %s", (hook,))
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0
