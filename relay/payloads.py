"""Payloads: rows become the JSON bodies Label Studio would send (docs/design.md §5).

Pure. Objects carry exactly Label Studio's keys in its order (docs/label-studio.md),
foreign keys without ``_id``; rows come from SQL already in UTC (orjson writes the ``Z``), and jsonb
columns arrive as ``orjson.Fragment`` so they pass through without being parsed. A row that is gone
by the time the payload is built is sent as ``{"id": N}``: the event is never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from relay import chunks
from relay.actions import PING, Action

Row = Mapping[str, Any]
Body = dict[str, Any]


def _fields(*names: str) -> tuple[tuple[str, str], ...]:
    """(payload key, column) pairs; a key ending in ``>`` is a foreign key read from ``<key>_id``."""
    return tuple((n[:-1], f"{n[:-1]}_id") if n.endswith(">") else (n, n) for n in names)


COUNTERS = (
    "task_number",
    "finished_task_number",
    "total_predictions_number",
    "total_annotations_number",
    "num_tasks_with_annotations",
    "useful_annotation_number",
    "ground_truth_number",
    "skipped_annotations_number",
)

PROJECT_FIELDS = _fields(
    "id", *COUNTERS, "title", "description", "label_config", "parsed_label_config",
    "label_config_hash", "expert_instruction", "show_instruction", "show_skip_button",
    "enable_empty_annotation", "reveal_preannotations_interactively", "show_annotation_history",
    "show_collab_predictions", "evaluate_predictions_automatically", "token", "result_count",
    "color", "maximum_annotations", "min_annotations_to_start_training", "control_weights",
    "model_version", "data_types", "is_draft", "is_published", "created_at", "updated_at",
    "sampling", "skip_queue", "show_ground_truth_first", "annotator_evaluation_enabled",
    "show_overlap_first", "overlap_cohort_percentage", "task_data_login", "task_data_password",
    "pinned_at", "custom_task_lock_ttl", "deleted_at", "purge_at", "search_vector",
    "organization>", "created_by>", "deleted_by>",
)  # fmt: skip

TASK_FIELDS = _fields(
    "id", "data", "meta", "created_at", "updated_at", "is_labeled", "allow_skip", "overlap",
    "inner_id", "total_annotations", "cancelled_annotations", "total_predictions",
    "precomputed_agreement", "comment_count", "unresolved_comment_count",
    "last_comment_updated_at", "project>", "updated_by>", "file_upload>", "comment_authors",
)  # fmt: skip

ANNOTATION_FIELDS = _fields(
    "id", "result", "was_cancelled", "ground_truth", "created_at", "updated_at",
    "draft_created_at", "lead_time", "prediction", "result_count", "unique_id", "import_id",
    "last_action", "bulk_created", "task>", "project>", "completed_by>", "updated_by>",
    "parent_prediction>", "parent_annotation>", "last_created_by>",
)  # fmt: skip


LABEL_LINK_FIELDS = _fields("id", "from_name", "project>", "label>")

# `links` and `projects` (its label links and the projects they are in) are computed by SQL
LABEL_FIELDS = _fields(
    "id", "links", "created_at", "updated_at", "value", "title", "description", "approved",
    "created_by>", "approved_by>", "organization>", "projects",
)  # fmt: skip

# Label Studio never sends predictions: the columns in their order, foreign keys without _id
PREDICTION_FIELDS = _fields(
    "id", "result", "score", "model_version", "created_at", "updated_at", "task>", "cluster",
    "neighbors", "mislabeling", "project>", "model_run>", "model>",
)  # fmt: skip


def _object(fields: tuple[tuple[str, str], ...], row: Row) -> Body:
    return {key: row.get(column) for key, column in fields}


def project_object(row: Row) -> Body:
    """A project as Label Studio serialises it, counters included (computed by SQL)."""
    return _object(PROJECT_FIELDS, row)


def task_object(row: Row) -> Body:
    """A task as Label Studio serialises it; ``comment_authors`` is a list of user ids."""
    return _object(TASK_FIELDS, row)


def annotation_object(row: Row) -> Body:
    """An annotation (a ``task_completion`` row) as Label Studio serialises it."""
    return _object(ANNOTATION_FIELDS, row)


@dataclass
class Snapshot:
    """The current rows an event's payload is built from, by id."""

    projects: Mapping[int, Row] = field(default_factory=dict)
    tasks: Mapping[int, Row] = field(default_factory=dict)
    annotations: Mapping[int, Row] = field(default_factory=dict)
    label_links: Mapping[int, Row] = field(default_factory=dict)
    labels: Mapping[int, Row] = field(default_factory=dict)
    predictions: Mapping[int, Row] = field(default_factory=dict)

    def label_link(self, link_id: int) -> tuple[Body, Body | None]:
        """The label link and its label (None when the link is gone)."""
        row = self.label_links.get(link_id)
        if row is None:
            return {"id": link_id}, None
        label = self.labels.get(row["label_id"])
        return _object(LABEL_LINK_FIELDS, row), (
            _object(LABEL_FIELDS, label) if label is not None else {"id": row["label_id"]}
        )

    def prediction(self, prediction_id: int) -> Body:
        row = self.predictions.get(prediction_id)
        return _object(PREDICTION_FIELDS, row) if row is not None else {"id": prediction_id}

    def project(self, project_id: int | None) -> Body | None:
        if project_id is None:
            return None
        row = self.projects.get(project_id)
        return project_object(row) if row is not None else {"id": project_id}

    def task(self, task_id: int | None) -> Body | None:
        if task_id is None:
            return None
        row = self.tasks.get(task_id)
        return task_object(row) if row is not None else {"id": task_id}

    def annotation(self, annotation_id: int) -> tuple[Body, Body | None]:
        """The annotation and its task (None when the annotation is gone)."""
        row = self.annotations.get(annotation_id)
        if row is None:
            return {"id": annotation_id}, None
        return annotation_object(row), self.task(row.get("task_id"))


@dataclass(frozen=True)
class Needs:
    """Which rows a payload is built from."""

    projects: frozenset[int] = frozenset()
    tasks: frozenset[int] = frozenset()
    annotations: frozenset[int] = frozenset()
    label_links: frozenset[int] = frozenset()
    predictions: frozenset[int] = frozenset()


def needs(action: str, project_id: int | None, row_ids: Sequence[int]) -> Needs:
    """The rows to fetch for one payload (annotations' tasks are fetched with them)."""
    projects = frozenset() if project_id is None else frozenset({project_id})
    if action in (Action.PROJECT_CREATED, Action.PROJECT_UPDATED):
        return Needs(projects=frozenset(row_ids))
    if action in (Action.TASKS_CREATED, Action.TASK_LABELED):
        return Needs(projects=projects, tasks=frozenset(row_ids))
    if action in (Action.LABEL_LINK_CREATED, Action.LABEL_LINK_UPDATED):
        return Needs(projects=projects, label_links=frozenset(row_ids))
    if action == Action.PREDICTIONS_CREATED:
        return Needs(projects=projects, predictions=frozenset(row_ids))
    if action in (Action.ANNOTATION_CREATED, Action.ANNOTATIONS_CREATED, Action.ANNOTATION_UPDATED):
        return Needs(projects=projects, annotations=frozenset(row_ids))
    if action in (Action.TASKS_DELETED, Action.ANNOTATIONS_DELETED, Action.LABEL_LINK_DELETED):
        return Needs(projects=projects)
    if action == PING:
        return Needs()
    return Needs(projects=projects)  # an emitted event: its project, as of now


@dataclass(frozen=True)
class Sizes:
    """Estimated JSON sizes of the rows behind some payloads, by id (``take_changes`` in SQL brings them)."""

    projects: Mapping[int, int] = field(default_factory=dict)
    tasks: Mapping[int, int] = field(default_factory=dict)
    # an annotation's own size and its task (nested in annotation events)
    annotations: Mapping[int, tuple[int, int | None]] = field(default_factory=dict)

    def task(self, task_id: int | None) -> int:
        # a row gone by now is sent as {"id": N}
        return chunks.TASK_OVERHEAD + self.tasks.get(task_id, 0) if task_id is not None else 0

    def annotation(self, annotation_id: int) -> int:
        size, task_id = self.annotations.get(annotation_id, (0, None))
        return chunks.ANNOTATION_OVERHEAD + size + self.task(task_id)

    def project(self, project_id: int | None) -> int:
        if project_id is None:
            return 0
        return chunks.PROJECT_OVERHEAD + self.projects.get(project_id, 0)


def estimate(
    action: str, project_id: int | None, row_ids: Sequence[int], sizes: Sizes
) -> tuple[list[int], int]:
    """(each row's estimated share of the body, the rest of the body): what chunking by bytes
    needs. Mirrors ``build_body``: the same rows, the same nesting."""
    envelope = chunks.ENVELOPE_OVERHEAD
    if action in (Action.PROJECT_CREATED, Action.PROJECT_UPDATED):
        return [sizes.project(row_id) for row_id in row_ids], envelope
    envelope += sizes.project(project_id)
    if action == Action.TASKS_CREATED:
        return [sizes.task(task_id) for task_id in row_ids], envelope
    if action in (Action.ANNOTATION_CREATED, Action.ANNOTATIONS_CREATED, Action.ANNOTATION_UPDATED):
        return [sizes.annotation(annotation_id) for annotation_id in row_ids], envelope
    return [18 for _ in row_ids], envelope  # {"id": N}, and a comma: N has up to 10 digits


def build_body(action: str, project_id: int | None, row_ids: Sequence[int], rows: Snapshot) -> Body:
    """The full body of one event chunk: ``{"action", <key>, "project"?, <nested>?}``."""
    body: Body = {"action": action}
    if action in (Action.PROJECT_CREATED, Action.PROJECT_UPDATED):
        body["project"] = rows.project(row_ids[0])
    elif action == Action.PROJECT_DELETED:
        body["project"] = {"id": row_ids[0]}
    elif action in (Action.TASKS_CREATED, Action.TASK_LABELED):
        body["tasks"] = [rows.task(task_id) for task_id in row_ids]
        body["project"] = rows.project(project_id)
    elif action in (Action.LABEL_LINK_CREATED, Action.LABEL_LINK_UPDATED):
        link, label = rows.label_link(row_ids[0])
        body["label_link"] = link
        body["project"] = rows.project(project_id)
        body["label"] = label
    elif action == Action.LABEL_LINK_DELETED:
        body["label_link"] = {"id": row_ids[0]}
        body["project"] = rows.project(project_id)
    elif action == Action.PREDICTIONS_CREATED:
        body["predictions"] = [rows.prediction(prediction_id) for prediction_id in row_ids]
        body["project"] = rows.project(project_id)
    elif action == Action.TASKS_DELETED:
        body["tasks"] = [{"id": task_id} for task_id in row_ids]
        body["project"] = rows.project(project_id)
    elif action in (Action.ANNOTATION_CREATED, Action.ANNOTATION_UPDATED):
        annotation, task = rows.annotation(row_ids[0])
        body["annotation"] = annotation
        body["project"] = rows.project(project_id)
        body["task"] = task
    elif action == Action.ANNOTATIONS_CREATED:
        pairs = [rows.annotation(annotation_id) for annotation_id in row_ids]
        body["annotation"] = [annotation for annotation, _ in pairs]
        body["project"] = rows.project(project_id)
        body["task"] = [task for _, task in pairs]
    elif action == Action.ANNOTATIONS_DELETED:
        body["annotations"] = [{"id": annotation_id} for annotation_id in row_ids]
        body["project"] = rows.project(project_id)
    elif action == PING:
        # A test event for one webhook: its row is the webhook itself.
        body["webhook"] = {"id": row_ids[0]}
    else:
        raise ValueError(f"no payload shape for action {action!r}")
    return body


@dataclass(frozen=True)
class Emitted:
    """What ``outbox.emit`` stored for one event: the body's key for it and the payload's JSON,
    passed into the body unparsed."""

    key: str
    payload: orjson.Fragment


def emitted_body(action: str, project_id: int | None, emitted: Emitted, rows: Snapshot) -> Body:
    """The body of an emitted event: ``{"action", <key>: payload, "project"?}``, the project as
    Label Studio serialises it, from the current row (absent when the event has no project)."""
    body: Body = {"action": action, emitted.key: emitted.payload}
    if project_id is not None:
        body["project"] = rows.project(project_id)
    return body


def emitted_estimate(payload_bytes: int, project_bytes: int | None, has_project: bool) -> int:
    """The estimated size of an emitted event's body, as ``estimate`` errs: on the large side."""
    project = chunks.PROJECT_OVERHEAD + (project_bytes or 0) if has_project else 0
    return chunks.ENVELOPE_OVERHEAD + payload_bytes + project


# Delete events, with the rows the trigger recorded for webhooks whose delete_payload is 'rows':
# the key and how a row is serialised.
DELETED_ROWS = {
    Action.PROJECT_DELETED: ("project", PROJECT_FIELDS),
    Action.TASKS_DELETED: ("tasks", TASK_FIELDS),
    Action.ANNOTATIONS_DELETED: ("annotations", ANNOTATION_FIELDS),
    Action.LABEL_LINK_DELETED: ("label_link", LABEL_LINK_FIELDS),
}

# Timestamp columns of the rows above: the trigger's to_jsonb wrote them in the writer's time zone
TIMESTAMPS = frozenset({
    "created_at", "updated_at", "draft_created_at", "last_comment_updated_at", "pinned_at",
    "deleted_at", "purge_at",
})  # fmt: skip


def _deleted_object(fields: tuple[tuple[str, str], ...], row: Row) -> Body:
    obj = _object(fields, row)
    for key, column in fields:
        value = row.get(column)
        if column in TIMESTAMPS and isinstance(value, str):
            obj[key] = datetime.fromisoformat(value).astimezone(UTC)
    return obj


def deleted_body(
    action: str, project_id: int | None, row_ids: Sequence[int], deleted: Mapping[int, Row], rows: Snapshot
) -> Body:
    """A delete event with the deleted rows as they were (``deleted``, by id, from the trigger),
    each serialised as Label Studio serialises a live one; a row the trigger did not record is
    ``{"id": N}``. Otherwise ``build_body``'s shape: the same keys in the same order."""
    key, fields = DELETED_ROWS[Action(action)]
    objects = [
        _deleted_object(fields, deleted[row_id]) if row_id in deleted else {"id": row_id}
        for row_id in row_ids
    ]
    body: Body = {"action": action}
    if action == Action.PROJECT_DELETED:
        body["project"] = objects[0]
        return body
    body[key] = objects[0] if action == Action.LABEL_LINK_DELETED else objects
    body["project"] = rows.project(project_id)
    return body


def encode(body: Body) -> bytes:
    """The bytes sent on the wire."""
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def action_only(action: str) -> bytes:
    """The body for webhooks with ``send_payload`` off: exactly ``{"action": A}``."""
    return encode({"action": action})
