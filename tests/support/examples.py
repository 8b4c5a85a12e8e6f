"""The payloads Label Studio 1.23.2 sent (tests/data/label-studio-examples), and rows that make them.

``rows_of`` inverts the serialisation: payload keys back to column names, timestamps back to
datetimes, so tests can seed a database (or a Snapshot) with exactly what Label Studio had.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from relay.payloads import ANNOTATION_FIELDS, COUNTERS, PROJECT_FIELDS, TASK_FIELDS

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "label-studio-examples"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")

KIND_FIELDS = {"project": PROJECT_FIELDS, "task": TASK_FIELDS, "annotation": ANNOTATION_FIELDS}
TIMESTAMP_COLUMNS = {
    "created_at", "updated_at", "pinned_at", "deleted_at", "purge_at", "draft_created_at",
    "last_comment_updated_at",
}  # fmt: skip
JSON_COLUMNS = {
    "parsed_label_config", "control_weights", "data_types", "data", "meta", "result", "prediction",
}  # fmt: skip
# Computed when the payload is built, not stored in a column.
DERIVED = {*COUNTERS, "comment_authors", "search_vector"}


def example(name: str) -> dict[str, Any]:
    """One example file: {"request_headers": {...}, "body": {...}}."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.json"))


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def rows_of(kind: str, obj: dict[str, Any], *, with_derived: bool = False) -> dict[str, Any]:
    """The columns of a serialised object (``kind``: project, task or annotation)."""
    row: dict[str, Any] = {}
    for key, column in KIND_FIELDS[kind]:
        if key not in obj or (key in DERIVED and not with_derived):
            continue
        value = obj[key]
        if column in TIMESTAMP_COLUMNS and value is not None:
            value = parse_timestamp(value)
        row[column] = value
    return row


def key_tree(value: Any) -> Any:
    """The shape of a JSON value: keys in order, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return [(key, key_tree(item)) for key, item in value.items()]
    if isinstance(value, list):
        return ["list", key_tree(value[0])] if value else ["list"]
    return type(value).__name__ if value is not None else "null"
