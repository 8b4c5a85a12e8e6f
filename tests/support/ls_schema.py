"""Label Studio 1.23.2's real schema, for tests that must see LS's own indexes and constraints.

``tests/data/label-studio-1.23.2-schema.sql`` is what LS's Django migrations create (its header
says how it was made). Unlike ``sql/label_studio_sandbox.sql`` it has all of LS's indexes (``task``
18 besides its primary key) and no column defaults: Django sends every column, so an INSERT here
must too. The row helpers below give the NOT NULL columns the values of LS's model defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.support.lsdb import insert

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "data" / "label-studio-1.23.2-schema.sql"

# NOT NULL columns without a database default, with LS's model defaults (created_at and
# updated_at are added at insert time).
PROJECT_REQUIRED: dict[str, Any] = {
    "show_instruction": False,
    "maximum_annotations": 1,
    "is_published": False,
    "show_skip_button": True,
    "enable_empty_annotation": True,
    "min_annotations_to_start_training": 0,
    "show_annotation_history": False,
    "show_collab_predictions": True,
    "show_ground_truth_first": False,
    "overlap_cohort_percentage": 100,
    "show_overlap_first": False,
    "result_count": 0,
    "is_draft": False,
    "evaluate_predictions_automatically": False,
    "reveal_preannotations_interactively": False,
}
TASK_REQUIRED: dict[str, Any] = {
    "is_labeled": False,
    "overlap": 1,
    "total_annotations": 0,
    "cancelled_annotations": 0,
    "total_predictions": 0,
    "comment_count": 0,
    "unresolved_comment_count": 0,
}
ANNOTATION_REQUIRED: dict[str, Any] = {
    "was_cancelled": False,
    "ground_truth": False,
    "result_count": 0,
}


def create_real_schema(conn: psycopg.Connection[Any]) -> None:
    """Create LS's tables, indexes and extensions (btree_gin, pg_trgm) in ``conn``'s empty database.

    The dump runs as one script (one implicit transaction under autocommit). Its SET lines stay
    in force for the session, among them an empty search_path: they are reset afterwards.
    """
    conn.execute(SCHEMA_FILE.read_bytes())
    conn.execute("reset all")


def _stamped(row: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"created_at": now, "updated_at": now, **row}


def organization(conn: psycopg.Connection[Any], org_id: int = 1) -> None:
    insert(conn, "organization", _stamped({"id": org_id, "title": "Label Studio"}))


def project(conn: psycopg.Connection[Any], project_id: int = 1, org_id: int = 1, **columns: Any) -> None:
    row = {"id": project_id, "title": f"p{project_id}", "organization_id": org_id}
    insert(conn, "project", _stamped({**PROJECT_REQUIRED, **row, **columns}))


def task(conn: psycopg.Connection[Any], task_id: int, project_id: int = 1, **columns: Any) -> None:
    row = {"id": task_id, "project_id": project_id, "data": {"text": f"t{task_id}"}}
    insert(conn, "task", _stamped({**TASK_REQUIRED, **row, **columns}))


def annotation(
    conn: psycopg.Connection[Any], annotation_id: int, task_id: int, project_id: int = 1, **columns: Any
) -> None:
    row = {"id": annotation_id, "task_id": task_id, "project_id": project_id, "result": []}
    insert(conn, "task_completion", _stamped({**ANNOTATION_REQUIRED, **row, **columns}))


def label_studio_webhook(
    conn: psycopg.Connection[Any],
    webhook_id: int,
    url: str,
    *,
    org_id: int = 1,
    project_id: int | None = None,
    actions: tuple[str, ...] = (),
    headers: dict[str, Any] | None = None,
    send_payload: bool = True,
    is_active: bool = True,
) -> None:
    """One of Label Studio's own webhooks (its settings page's), with its actions, every column
    given as Django gives them (so it works on the real schema and the sandbox alike)."""
    conn.execute(
        "insert into public.webhook (id, url, send_payload, send_for_all_actions, headers, is_active,"
        " created_at, updated_at, organization_id, project_id)"
        " values (%s, %s, %s, %s, %s, %s, now(), now(), %s, %s)",
        (webhook_id, url, send_payload, not actions, Jsonb(headers or {}), is_active, org_id, project_id),
    )
    for action in actions:
        conn.execute(
            "insert into public.webhook_action (id, action, webhook_id)"
            " values ((select coalesce(max(id), 0) + 1 from public.webhook_action), %s, %s)",
            (action, webhook_id),
        )
