"""The built-in webhook actions: Label Studio 1.23.2's, whose payloads outbox builds from rows.

The registry of every action, custom ones included, is the table ``outbox.action``
(sql/0007_actions.sql), seeded with this catalog; a test keeps the two equal. Code that lists or
validates actions reads the table; this module says what the relay knows how to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    PROJECT_CREATED = "PROJECT_CREATED"
    PROJECT_UPDATED = "PROJECT_UPDATED"
    PROJECT_DELETED = "PROJECT_DELETED"
    TASKS_CREATED = "TASKS_CREATED"
    TASKS_DELETED = "TASKS_DELETED"
    ANNOTATION_CREATED = "ANNOTATION_CREATED"
    ANNOTATIONS_CREATED = "ANNOTATIONS_CREATED"
    ANNOTATION_UPDATED = "ANNOTATION_UPDATED"
    ANNOTATIONS_DELETED = "ANNOTATIONS_DELETED"
    LABEL_LINK_CREATED = "LABEL_LINK_CREATED"
    LABEL_LINK_UPDATED = "LABEL_LINK_UPDATED"
    LABEL_LINK_DELETED = "LABEL_LINK_DELETED"
    # outbox's own, opt-in (OPT_IN below)
    TASK_LABELED = "TASK_LABELED"
    PREDICTIONS_CREATED = "PREDICTIONS_CREATED"


# Not a Label Studio action: what `POST /api/webhooks/<id>/test` sends to one webhook.
PING = "PING"


@dataclass(frozen=True)
class ActionInfo:
    name: str
    description: str
    key: str
    organization_only: bool


CATALOG: dict[Action, ActionInfo] = {
    Action.PROJECT_CREATED: ActionInfo("Project created", "", "project", True),
    Action.PROJECT_UPDATED: ActionInfo("Project updated", "", "project", False),
    Action.PROJECT_DELETED: ActionInfo("Project deleted", "", "project", True),
    Action.TASKS_CREATED: ActionInfo("Task created", "", "tasks", False),
    Action.TASKS_DELETED: ActionInfo("Task deleted", "", "tasks", False),
    Action.ANNOTATION_CREATED: ActionInfo("Annotation created", "", "annotation", False),
    Action.ANNOTATIONS_CREATED: ActionInfo("Annotations created", "", "annotation", False),
    Action.ANNOTATION_UPDATED: ActionInfo("Annotation updated", "", "annotation", False),
    Action.ANNOTATIONS_DELETED: ActionInfo("Annotation deleted", "", "annotations", False),
    Action.LABEL_LINK_CREATED: ActionInfo("Label link created", "", "label_link", False),
    Action.LABEL_LINK_UPDATED: ActionInfo("Label link updated", "", "label_link", False),
    Action.LABEL_LINK_DELETED: ActionInfo("Label link deleted", "", "label_link", False),
    # -- outbox's opt-in actions: sent only to webhooks that list them (docs/events.md)
    Action.TASK_LABELED: ActionInfo(
        "Task labeled", "A task's is_labeled turned true (opt-in)", "tasks", False
    ),
    Action.PREDICTIONS_CREATED: ActionInfo(
        "Predictions created", "Predictions inserted for existing tasks (opt-in)", "predictions", False
    ),
}

# Actions Label Studio does not send: never part of send_for_all_actions, so a webhook receives
# them only when it lists them, and Label Studio compatibility holds unless a webhook asks.
OPT_IN = frozenset({Action.TASK_LABELED, Action.PREDICTIONS_CREATED})

ORGANIZATION_ONLY = frozenset(a for a, info in CATALOG.items() if info.organization_only)

# Actions whose bodies outbox builds itself; an event of any other action was emitted
# (outbox.emit, outbox.run_webhook) and carries its payload in outbox.emitted.
BUILT_IN = frozenset({*(a.value for a in Action), PING})

# Actions whose payload lists full rows: split into chunks of at most WEBHOOK_BATCH_SIZE rows, each
# POSTed with the full project (Label Studio does this for imports).
CHUNKED = frozenset(
    {Action.TASKS_CREATED, Action.ANNOTATIONS_CREATED, Action.TASK_LABELED, Action.PREDICTIONS_CREATED}
)
