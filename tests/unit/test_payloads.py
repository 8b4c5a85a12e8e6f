"""Payload building against the bodies Label Studio itself sent (pure: no database)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from relay.payloads import Snapshot, action_only, build_body, encode
from tests.support.examples import TIMESTAMP, example, key_tree, rows_of


def _as_db_row(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    row = rows_of(kind, obj, with_derived=True)
    # jsonb comes from the database as a Fragment of its text
    for column, value in list(row.items()):
        if isinstance(value, dict | list) and column != "comment_authors":
            row[column] = orjson.Fragment(orjson.dumps(value))
    return row


def _snapshot(body: dict[str, Any]) -> Snapshot:
    snapshot = Snapshot()
    project = body.get("project")
    if project and len(project) > 1:
        snapshot.projects[project["id"]] = _as_db_row("project", project)
    tasks = body.get("tasks") or body.get("task") or []
    for task in tasks if isinstance(tasks, list) else [tasks]:
        if len(task) > 1:
            snapshot.tasks[task["id"]] = _as_db_row("task", task)
    annotations = body.get("annotation") or []
    for annotation in annotations if isinstance(annotations, list) else [annotations]:
        snapshot.annotations[annotation["id"]] = _as_db_row("annotation", annotation)
    return snapshot


def _row_ids(body: dict[str, Any]) -> list[int]:
    for key in ("tasks", "annotation", "annotations"):
        if key in body:
            items = body[key]
            return [i["id"] for i in items] if isinstance(items, list) else [items["id"]]
    return [body["project"]["id"]]


@pytest.mark.parametrize(
    "name",
    [
        "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
        "ANNOTATION_CREATED", "ANNOTATION_CREATED_skip", "ANNOTATIONS_CREATED",
        "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
    ],
)  # fmt: skip
def test_body_is_byte_for_byte_what_label_studio_sent(name: str) -> None:
    sent = example(name)["body"]
    project = sent.get("project", {})
    body = build_body(sent["action"], project.get("id"), _row_ids(sent), _snapshot(sent))
    built = orjson.loads(encode(body))
    assert built == sent
    assert key_tree(built) == key_tree(sent)  # same keys in the same order, at every level


def test_timestamps_are_utc_with_z_and_drop_a_zero_fraction() -> None:
    sent = example("PROJECT_CREATED")["body"]
    snapshot = _snapshot(sent)
    row = dict(snapshot.projects[1])
    row["created_at"] = row["created_at"].replace(microsecond=0)
    snapshot.projects[1] = row
    project = orjson.loads(encode(build_body("PROJECT_CREATED", 1, [1], snapshot)))["project"]
    assert project["created_at"] == "2026-11-22T17:55:26Z"
    assert TIMESTAMP.match(project["updated_at"])


def test_rows_gone_before_the_build_are_sent_as_ids() -> None:
    body = build_body("TASKS_CREATED", 4, [1, 2], Snapshot())
    assert body == {
        "action": "TASKS_CREATED",
        "tasks": [{"id": 1}, {"id": 2}],
        "project": {"id": 4},
    }
    gone = build_body("ANNOTATION_CREATED", 4, [9], Snapshot())
    assert gone == {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 9},
        "project": {"id": 4},
        "task": None,
    }


def test_send_payload_false_is_exactly_the_action() -> None:
    assert orjson.loads(action_only("TASKS_CREATED")) == example("no_payload")["body"]
