"""Opt-in events (issue 10 §3): TASK_LABELED and PREDICTIONS_CREATED, which Label Studio never
sends, reach only webhooks that list them; send_for_all_actions never includes them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import lsdb

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(conn: Any) -> None:
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    conn.execute("insert into task (id, data, project_id) values (1, '{}', 1), (2, '{}', 1), (3, '{}', 1)")
    conn.execute("delete from outbox.change")


def opt_in(conn: Any, url: str, *actions: str) -> int:
    # ordered: the tests read arrivals in commit order (one claim may send several at once)
    return lsdb.webhook(conn, url, send_for_all_actions=False, actions=list(actions), ordered=True)


async def test_task_labeled_when_is_labeled_turns_true(conn, seeded, receiver, start_relay):
    opt_in(conn, receiver.url, "TASK_LABELED")
    async with start_relay():
        # Label Studio's counter updates: the annotation, then the task's counters later
        conn.execute("insert into task_completion (task_id, project_id, result) values (1, 1, '[1]')")
        conn.execute("update task set total_annotations = 1, is_labeled = true where id = 1")
        conn.execute("update task set updated_at = now() where id = 1")  # still labeled: nothing
        conn.execute("update task set is_labeled = false where id = 1")  # unlabeled: nothing
        with conn.transaction():
            conn.execute("update task set is_labeled = true where id in (2, 3)")
        requests = await receiver.wait_for(2)
    assert [r.action for r in requests] == ["TASK_LABELED", "TASK_LABELED"]
    assert [t["id"] for t in requests[0].json["tasks"]] == [1]
    assert [t["id"] for t in requests[1].json["tasks"]] == [2, 3]
    assert requests[1].json["project"]["id"] == 1


async def test_send_for_all_actions_gets_neither_opt_in_action(conn, seeded, receiver, start_relay):
    lsdb.webhook(conn, receiver.url, ordered=True)  # all actions, in commit order
    async with start_relay():
        conn.execute("update task set is_labeled = true where id = 1")
        conn.execute("insert into prediction (task_id, project_id, result) values (1, 1, '[]')")
        conn.execute("insert into task (id, data, project_id) values (4, '{}', 1)")
        requests = await receiver.wait_for(1)  # in commit order: the opt-in ones would be first
    assert [r.action for r in requests] == ["TASKS_CREATED"]


async def test_nothing_is_captured_while_no_webhook_lists_an_opt_in_action(conn, seeded):
    lsdb.webhook(conn, "http://127.0.0.1:9/")
    conn.execute("update task set is_labeled = true where id = 1")
    conn.execute("insert into prediction (task_id, project_id) values (1, 1)")
    assert conn.execute("select count(*) as n from outbox.change").fetchone()["n"] == 0


async def test_predictions_created(conn, seeded, receiver, start_relay):
    opt_in(conn, receiver.url, "PREDICTIONS_CREATED")
    async with start_relay():
        conn.execute(
            "insert into prediction (task_id, project_id, result, score, model_version)"
            " values (1, 1, '[{\"x\": 1}]', 0.5, 'v1'), (2, null, '[]', 0.9, 'v1')"
        )
        requests = await receiver.wait_for(1)
    body = requests[0].json
    assert body["action"] == "PREDICTIONS_CREATED" and list(body) == ["action", "predictions", "project"]
    first, second = body["predictions"]
    assert list(first) == [
        "id", "result", "score", "model_version", "created_at", "updated_at", "task", "cluster",
        "neighbors", "mislabeling", "project", "model_run", "model",
    ]  # fmt: skip
    assert (first["task"], first["result"], first["score"]) == (1, [{"x": 1}], 0.5)
    assert (second["task"], second["project"]) == (2, None)  # its project found through its task
    assert body["project"]["total_predictions_number"] == 2


async def test_a_project_webhook_gets_only_its_projects_predictions(conn, seeded, receiver, start_relay):
    lsdb.project(conn, 2)
    conn.execute("insert into task (id, data, project_id) values (20, '{}', 2)")
    lsdb.webhook(
        conn, receiver.url, project_id=2, send_for_all_actions=False, actions=["PREDICTIONS_CREATED"]
    )
    async with start_relay():
        conn.execute("insert into prediction (task_id, project_id) values (1, 1)")
        conn.execute("insert into prediction (task_id, project_id) values (20, 2)")
        requests = await receiver.wait_for(1)
    assert [p["task"] for p in requests[0].json["predictions"]] == [20]


async def test_delete_events_with_the_deleted_rows_for_webhooks_that_ask(conn, seeded, receiver, start_relay):
    """delete_payload 'rows': the deleted annotation with its task id (Label Studio sends only
    the id), the full task; webhooks keeping 'ids' get Label Studio's body from the same delete."""
    conn.execute("set time zone 'Europe/Paris'")  # the trigger records timestamps in this zone
    conn.execute(
        "insert into task_completion (id, task_id, project_id, result, created_at)"
        " values (7, 1, 1, '[{\"v\": 1}]', '2026-01-02 03:04:05.5+00')"
    )
    conn.execute("delete from outbox.change")
    rows = lsdb.webhook(conn, f"{receiver.url}/rows", delete_payload="rows")
    lsdb.webhook(conn, f"{receiver.url}/ids")
    async with start_relay():
        conn.execute("delete from task_completion where id = 7")
        with conn.transaction():  # a Data Manager delete of task 2
            conn.execute("update task set project_id = null where id = 2")
        conn.execute("delete from task where id = 2")
        requests = await receiver.wait_for(4)
    by = {(r.path, r.action): r.json for r in requests}
    assert by[("/ids", "ANNOTATIONS_DELETED")]["annotations"] == [{"id": 7}]
    annotation = by[("/rows", "ANNOTATIONS_DELETED")]["annotations"][0]
    assert list(annotation) == list(by[("/ids", "ANNOTATIONS_DELETED")]["annotations"][0]) + [
        k for k in annotation if k != "id"
    ]
    assert (annotation["id"], annotation["task"], annotation["project"]) == (7, 1, 1)
    assert annotation["result"] == [{"v": 1}] and annotation["created_at"] == "2026-01-02T03:04:05.500000Z"
    assert by[("/ids", "TASKS_DELETED")]["tasks"] == [{"id": 2}]
    task = by[("/rows", "TASKS_DELETED")]["tasks"][0]
    assert (task["id"], task["data"]) == (2, {})
    assert task["project"] is None  # as the row was when deleted: the Data Manager detached it
    assert list(by[("/rows", "TASKS_DELETED")]) == ["action", "tasks", "project"]
    assert conn.execute("select delete_payload from outbox.webhook where id = %s", (rows,)).fetchone() == {
        "delete_payload": "rows"
    }


async def test_delete_payload_refuses_anything_but_ids_or_rows(conn, seeded):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        lsdb.webhook(conn, "http://127.0.0.1:9/", delete_payload="everything")
