"""Every action end to end: Label Studio's rows in, the body Label Studio sent out.

The database is seeded with the rows behind each example of tests/data/label-studio-examples, the
change is made with SQL the way Label Studio makes it, and what the receiver gets is compared with
what Label Studio sent: the same keys in the same order at every level, the same values.
"""

from __future__ import annotations

from typing import Any

import pytest

from relay.payloads import COUNTERS
from tests.support import lsdb
from tests.support.examples import TIMESTAMP, example, key_tree, rows_of

pytestmark = pytest.mark.anyio


def without_counters(project: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in project.items() if k not in COUNTERS}


def seed_project(conn: Any, body: dict[str, Any], **overrides: Any) -> None:
    lsdb.organization(conn)
    lsdb.insert(conn, "project", {**rows_of("project", body["project"]), **overrides})


def seed_task(conn: Any, task: dict[str, Any]) -> None:
    lsdb.insert(conn, "task", rows_of("task", task))
    for user in task["comment_authors"]:
        conn.execute(
            "insert into task_comment_authors (task_id, user_id) values (%s, %s)",
            (task["id"], user),
        )


async def deliver_one(conn: Any, receiver: Any, start_relay: Any, change: Any, **hook: Any) -> Any:
    conn.execute("delete from outbox.change")  # the seeding is not what this test is about
    lsdb.webhook(conn, receiver.url, headers={"Authorization": "Bearer secret123"}, **hook)
    async with start_relay():
        change()
        requests = await receiver.wait_for(1)
    return requests[0]


def assert_same_shape(got: dict[str, Any], sent: dict[str, Any]) -> None:
    assert key_tree(got) == key_tree(sent)


async def test_project_created(conn, receiver, start_relay):
    sent = example("PROJECT_CREATED")["body"]
    lsdb.organization(conn)
    received = await deliver_one(
        conn,
        receiver,
        start_relay,
        lambda: lsdb.insert(conn, "project", rows_of("project", sent["project"])),
    )
    assert received.json == sent
    assert_same_shape(received.json, sent)
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["Authorization"] == "Bearer secret123"
    assert received.headers["User-Agent"].startswith("outbox/")


async def test_project_updated(conn, receiver, start_relay):
    sent = example("PROJECT_UPDATED")["body"]
    seed_project(conn, sent, title="before")

    def rename() -> None:
        conn.execute(
            "update project set title = %s, updated_at = %s where id = 1",
            (sent["project"]["title"], rows_of("project", sent["project"])["updated_at"]),
        )

    received = await deliver_one(conn, receiver, start_relay, rename, project_id=1)
    assert_same_shape(received.json, sent)
    assert without_counters(received.json["project"]) == without_counters(sent["project"])


async def test_project_deleted(conn, receiver, start_relay):
    sent = example("PROJECT_DELETED")["body"]
    seed_project(conn, example("PROJECT_CREATED")["body"])
    received = await deliver_one(
        conn, receiver, start_relay, lambda: conn.execute("delete from project where id = 1")
    )
    assert received.json == sent


async def test_tasks_created_by_an_import_with_a_ground_truth_annotation(conn, receiver, start_relay):
    sent = example("TASKS_CREATED")["body"]
    seed_project(conn, sent)

    def import_tasks() -> None:
        with conn.transaction():
            for task in sent["tasks"]:
                seed_task(conn, task)
            conn.execute("insert into prediction (task_id, project_id, result) values (3, 1, '[]')")
            conn.execute(
                "insert into task_completion (task_id, project_id, result, ground_truth) values (3, 1, '[]', true)"
            )

    received = await deliver_one(conn, receiver, start_relay, import_tasks, project_id=1)
    assert received.json == sent  # counters included: 3 tasks, 1 prediction, 1 ground truth
    assert_same_shape(received.json, sent)
    assert len(receiver.requests) == 1  # the imported annotation is silent, as in Label Studio


async def test_tasks_deleted(conn, receiver, start_relay):
    sent = example("TASKS_DELETED")["body"]
    seed_project(conn, sent)
    task_id = sent["tasks"][0]["id"]
    conn.execute("insert into task (id, data, project_id) values (%s, '{}', 1)", (task_id,))
    received = await deliver_one(
        conn,
        receiver,
        start_relay,
        lambda: conn.execute("delete from task where id = %s", (task_id,)),
        project_id=1,
    )
    assert_same_shape(received.json, sent)
    assert received.json["tasks"] == sent["tasks"]
    assert without_counters(received.json["project"]) == without_counters(sent["project"])


@pytest.mark.parametrize("name", ["ANNOTATION_CREATED", "ANNOTATION_CREATED_skip"])
async def test_annotation_created(conn, receiver, start_relay, name):
    sent = example(name)["body"]
    seed_project(conn, sent)
    seed_task(conn, sent["task"])
    received = await deliver_one(
        conn,
        receiver,
        start_relay,
        lambda: lsdb.insert(conn, "task_completion", rows_of("annotation", sent["annotation"])),
        project_id=1,
    )
    assert_same_shape(received.json, sent)
    assert received.json["annotation"] == sent["annotation"]
    assert received.json["task"] == sent["task"]
    assert without_counters(received.json["project"]) == without_counters(sent["project"])


async def test_annotations_created_in_one_transaction(conn, receiver, start_relay):
    sent = example("ANNOTATIONS_CREATED")["body"]
    seed_project(conn, sent)
    for task in sent["task"]:
        seed_task(conn, task)
    for prediction_id in (1, 2):
        conn.execute("insert into prediction (id, task_id, project_id) values (%s, 2, 1)", (prediction_id,))

    def annotate() -> None:
        with conn.transaction():
            for annotation in sent["annotation"]:
                lsdb.insert(conn, "task_completion", rows_of("annotation", annotation))

    received = await deliver_one(conn, receiver, start_relay, annotate, project_id=1)
    assert_same_shape(received.json, sent)
    assert received.json["annotation"] == sent["annotation"]
    assert received.json["task"] == sent["task"]


async def test_annotation_updated(conn, receiver, start_relay):
    sent = example("ANNOTATION_UPDATED")["body"]
    seed_project(conn, sent)
    seed_task(conn, sent["task"])
    before = rows_of("annotation", sent["annotation"])
    lsdb.insert(conn, "task_completion", {**before, "result": []})

    def edit() -> None:
        conn.execute(
            "update task_completion set result = %s::jsonb, updated_at = %s where id = %s",
            (received_result(sent), before["updated_at"], before["id"]),
        )

    received = await deliver_one(conn, receiver, start_relay, edit, project_id=1)
    assert_same_shape(received.json, sent)
    assert received.json["annotation"] == sent["annotation"]
    assert received.json["task"] == sent["task"]


def received_result(sent: dict[str, Any]) -> str:
    import json

    return json.dumps(sent["annotation"]["result"])


async def test_annotations_deleted(conn, receiver, start_relay):
    sent = example("ANNOTATIONS_DELETED")["body"]
    seed_project(conn, sent)
    conn.execute("insert into task (id, data, project_id) values (1, '{}', 1)")
    ids = [a["id"] for a in sent["annotations"]]
    for annotation_id in ids:
        conn.execute(
            "insert into task_completion (id, task_id, project_id) values (%s, 1, 1)",
            (annotation_id,),
        )

    def delete() -> None:
        with conn.transaction():
            for annotation_id in ids:  # Data Manager order: one statement each, any order
                conn.execute("delete from task_completion where id = %s", (annotation_id,))

    received = await deliver_one(conn, receiver, start_relay, delete, project_id=1)
    assert_same_shape(received.json, sent)
    # the same ids; outbox lists them ascending, Label Studio in the order its query returned them
    assert received.json["annotations"] == sorted(sent["annotations"], key=lambda a: a["id"])
    assert sent["annotations"] != received.json["annotations"]  # the example shows the difference


async def test_send_payload_false_sends_only_the_action(conn, receiver, start_relay):
    lsdb.organization(conn)
    lsdb.project(conn)
    received = await deliver_one(
        conn,
        receiver,
        start_relay,
        lambda: conn.execute("insert into task (data, project_id) values ('{}', 1)"),
        send_payload=False,
    )
    assert received.json == example("no_payload")["body"]


async def test_project_counters_are_counted_by_sql(conn, receiver, start_relay):
    lsdb.organization(conn)
    lsdb.project(conn)
    conn.execute(
        "insert into task (id, data, project_id, is_labeled) values (1, '{}', 1, true), (2, '{}', 1, false), (3, '{}', 1, false), (4, '{}', 1, false)"
    )
    conn.execute("insert into prediction (task_id, project_id) values (1, 1), (1, 1)")
    conn.execute(
        """insert into task_completion (task_id, project_id, result, ground_truth, was_cancelled) values
           (1, 1, '[1]', false, false), (2, 1, '[1]', true, false), (3, 1, '[]', false, true),
           (1, 1, null, false, false)"""
    )
    received = await deliver_one(
        conn,
        receiver,
        start_relay,
        lambda: conn.execute("update project set title = 'renamed'"),
        project_id=1,
    )
    project = received.json["project"]
    assert {k: project[k] for k in COUNTERS} == {
        "task_number": 4,
        "finished_task_number": 1,
        "total_predictions_number": 2,
        "total_annotations_number": 3,
        "num_tasks_with_annotations": 1,
        "useful_annotation_number": 1,
        "ground_truth_number": 1,
        "skipped_annotations_number": 1,
    }
    assert TIMESTAMP.match(project["created_at"])
