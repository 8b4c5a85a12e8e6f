"""Grouping: the changes of committed transactions become webhook events (docs/design.md §4).

Pure: a list of ``Change`` in, a list of ``Event`` out. A transaction is judged by its net effect,
the way its readers saw it: rows created and deleted in the same transaction are no event, child
rows deleted with their parent are covered by the parent's event, annotations inserted together
with their task are an import (Label Studio is silent about those).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from relay.actions import Action


@dataclass(frozen=True)
class Change:
    """One outbox.change row: one statement's effect on one watched table, for one project."""

    id: int
    xid: int
    table: str
    op: str
    project_id: int | None
    organization_id: int | None
    row_ids: tuple[int, ...]
    # task_completion only: the task of each row, parallel to row_ids
    task_ids: tuple[int, ...] = ()
    # task DELETE after a Data Manager detach: the detaching transaction (see `group_changes`)
    detach_xid: int | None = None
    # part of a Data Manager delete whose other transactions have not all committed yet
    held: bool = False
    # when the trigger wrote it (clock_timestamp): the latest of a transaction's stands for its commit
    captured_at: datetime | None = None
    # import storage sync: the storage ('<table>:<id>') of a link change (row_ids: the synced
    # tasks) or of the marker that ends a sync (op UPDATE); sync_end: a link's marker (None when
    # the sync timed out), so that the tasks of one sync make one TASKS_CREATED
    storage: str | None = None
    sync_end: int | None = None


@dataclass(frozen=True)
class Event:
    """One webhook action for one project from one committed transaction."""

    xid: int | None
    action: str
    organization_id: int | None
    project_id: int | None
    row_ids: tuple[int, ...]
    # the last capture of its transaction(s): webhooks subscribed after it do not get the event
    captured_at: datetime | None = None


def _last_capture(changes: Iterable[Change]) -> datetime | None:
    return max((c.captured_at for c in changes if c.captured_at is not None), default=None)


@dataclass
class _Rows:
    """Ids seen in one transaction for one (table, op), per project, in capture order."""

    by_project: dict[int, dict[int, int | None]] = field(default_factory=dict)
    first_change: dict[int, int] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        assert change.project_id is not None
        rows = self.by_project.setdefault(change.project_id, {})
        self.first_change.setdefault(change.project_id, change.id)
        parents = change.task_ids or (None,) * len(change.row_ids)
        for row_id, parent in zip(change.row_ids, parents, strict=True):
            rows.setdefault(row_id, parent)

    def ids(self) -> set[int]:
        return {row_id for rows in self.by_project.values() for row_id in rows}


# What a transaction did not do to a (table, op): read only (``_transaction_events`` asks for every
# pair, most of which a transaction did not touch; one shared instance instead of one per question)
_NOTHING = _Rows()


def group_changes(changes: Iterable[Change]) -> list[Event]:
    """Events of every transaction in ``changes``, transactions in order of their first change.

    Label Studio's Data Manager deletes tasks 500 per transaction after detaching them all in one,
    and sends one TASKS_DELETED at the end: task deletes that share a detaching transaction become
    one event, emitted with the last of them; while some are still to come they are ``held`` (they
    still silence the annotations deleted with them) and the caller keeps them for later.
    """
    transactions: dict[int, list[Change]] = {}
    for change in sorted(changes, key=lambda c: c.id):
        transactions.setdefault(change.xid, []).append(change)
    events: list[Event] = []
    synced: dict[tuple[str, int | None, int | None], list[Event]] = {}
    for batch in transactions.values():
        found, synced_parts = _transaction_events(batch)
        events.extend(found)
        for key, part in synced_parts:
            synced.setdefault((*key, part.project_id), []).append(part)
    for sync in synced.values():  # one storage sync: one TASKS_CREATED, as Label Studio sends it
        task_ids = tuple(sorted({row for part in sync for row in part.row_ids}))
        end = sync[-1]
        org = next((p.organization_id for p in sync if p.organization_id is not None), None)
        at = max((p.captured_at for p in sync if p.captured_at is not None), default=None)
        events.append(Event(end.xid, Action.TASKS_CREATED, org, end.project_id, task_ids, at))
    merged: dict[tuple[int, int], list[Change]] = {}
    for change in sorted(changes, key=lambda c: c.id):
        if change.detach_xid is not None and not change.held and change.project_id is not None:
            merged.setdefault((change.detach_xid, change.project_id), []).append(change)
    for parts in merged.values():
        # Label Studio lists them by id; its batches follow the heap, which the detach reordered
        ids = sorted({row for part in parts for row in part.row_ids})
        last = parts[-1]
        organization = next((p.organization_id for p in parts if p.organization_id is not None), None)
        captured = _last_capture(parts)
        project = last.project_id
        events.append(Event(last.xid, Action.TASKS_DELETED, organization, project, tuple(ids), captured))
    return events


_SyncKey = tuple[str, int | None]


@dataclass(frozen=True)
class Declared:
    """A captured (table, operation) whose changes become ``action`` by the common rules alone: a
    row created and deleted in the same transaction is nothing, nor is an update of a row created
    or deleted in it, nor anything in a project deleted in it. ``per_row``: one event per row (as
    Label Studio sends label links), else one per transaction and project, listing the rows.
    The trigger that captures it is declared in sql/capture.sql, its payload in relay/payloads.py."""

    table: str
    op: str
    action: Action
    per_row: bool


DECLARED = (
    Declared("labels_manager_labellink", "INSERT", Action.LABEL_LINK_CREATED, per_row=True),
    Declared("labels_manager_labellink", "UPDATE", Action.LABEL_LINK_UPDATED, per_row=True),
    Declared("labels_manager_labellink", "DELETE", Action.LABEL_LINK_DELETED, per_row=True),
    Declared("prediction", "INSERT", Action.PREDICTIONS_CREATED, per_row=False),
    # the trigger captures only updates that turn is_labeled true
    Declared("task", "UPDATE", Action.TASK_LABELED, per_row=False),
)


def _transaction_events(changes: Sequence[Change]) -> tuple[list[Event], list[tuple[_SyncKey, Event]]]:
    """The transaction's events, and apart from them its tasks created by storage syncs (one
    TASKS_CREATED per project and sync, to be merged with the sync's other transactions)."""
    xid = changes[0].xid
    captured_at = _last_capture(changes)
    organization: dict[int, int] = {}
    seen: dict[tuple[str, str], _Rows] = {}
    batched: set[int] = set()  # tasks of Data Manager deletes: one event for all (above)
    synced: dict[int, _SyncKey] = {}  # tasks of storage syncs, by the sync
    for change in changes:
        if change.storage is not None and change.op == "INSERT":
            synced.update(dict.fromkeys(change.row_ids, (change.storage, change.sync_end)))
        if change.project_id is None or change.storage is not None:
            continue
        if change.organization_id is not None:
            organization.setdefault(change.project_id, change.organization_id)
        seen.setdefault((change.table, change.op), _Rows()).add(change)
        if change.detach_xid is not None:
            batched.update(change.row_ids)

    def rows(table: str, op: str) -> _Rows:
        return seen.get((table, op), _NOTHING)

    projects_created = rows("project", "INSERT")
    projects_updated = rows("project", "UPDATE")
    projects_deleted = rows("project", "DELETE")
    tasks_created = rows("task", "INSERT")
    tasks_deleted = rows("task", "DELETE")
    annotations_created = rows("task_completion", "INSERT")
    annotations_updated = rows("task_completion", "UPDATE")
    annotations_deleted = rows("task_completion", "DELETE")

    created_projects = set(projects_created.by_project)
    deleted_projects = set(projects_deleted.by_project)
    created_tasks = tasks_created.ids()
    deleted_tasks = tasks_deleted.ids()
    created_annotations = annotations_created.ids()
    deleted_annotations = annotations_deleted.ids()

    # (first change id, order within that change, event): sorted at the end so events follow the
    # order in which the transaction made its changes.
    found: list[tuple[int, int, Event]] = []

    def emit(first: int, action: Action, project: int, ids: Sequence[int], seq: int = 0) -> None:
        event = Event(xid, action, organization.get(project), project, tuple(ids), captured_at)
        found.append((first, seq, event))

    for project, first in projects_created.first_change.items():
        if project not in deleted_projects:
            emit(first, Action.PROJECT_CREATED, project, [project])
    for project, first in projects_updated.first_change.items():
        if project not in created_projects and project not in deleted_projects:
            emit(first, Action.PROJECT_UPDATED, project, [project])
    for project, first in projects_deleted.first_change.items():
        if project not in created_projects:
            emit(first, Action.PROJECT_DELETED, project, [project])

    sync_parts: list[tuple[_SyncKey, Event]] = []
    live = [p for p in tasks_created.by_project if p not in deleted_projects]
    for project in live:
        ids = [t for t in tasks_created.by_project[project] if t not in deleted_tasks and t not in synced]
        if ids:
            emit(tasks_created.first_change[project], Action.TASKS_CREATED, project, ids)
        by_sync: dict[_SyncKey, list[int]] = {}
        for task_id in tasks_created.by_project[project]:
            if task_id in synced and task_id not in deleted_tasks:
                by_sync.setdefault(synced[task_id], []).append(task_id)
        for key, tasks in by_sync.items():
            org = organization.get(project)
            part = Event(xid, Action.TASKS_CREATED, org, project, tuple(tasks), captured_at)
            sync_parts.append((key, part))

    for project, created in annotations_created.by_project.items():
        if project in deleted_projects:
            continue
        ids = [
            a
            for a, task in created.items()
            if task not in created_tasks and task not in deleted_tasks and a not in deleted_annotations
        ]
        if len(ids) == 1:
            emit(annotations_created.first_change[project], Action.ANNOTATION_CREATED, project, ids)
        elif ids:
            emit(annotations_created.first_change[project], Action.ANNOTATIONS_CREATED, project, ids)

    for project, updated in annotations_updated.by_project.items():
        if project in deleted_projects:
            continue
        first = annotations_updated.first_change[project]
        for seq, (annotation, task) in enumerate(updated.items()):
            if annotation in created_annotations or annotation in deleted_annotations:
                continue
            if task in deleted_tasks:
                continue
            emit(first, Action.ANNOTATION_UPDATED, project, [annotation], seq)

    for project, deleted in tasks_deleted.by_project.items():
        if project in deleted_projects:
            continue
        # ascending, whatever order the statements deleted them in (Label Studio: heap order)
        ids = sorted(t for t in deleted if t not in created_tasks and t not in batched)
        if ids:
            emit(tasks_deleted.first_change[project], Action.TASKS_DELETED, project, ids)

    for project, deleted in annotations_deleted.by_project.items():
        if project in deleted_projects:
            continue
        ids = sorted(
            a for a, task in deleted.items() if task not in deleted_tasks and a not in created_annotations
        )
        if ids:
            emit(annotations_deleted.first_change[project], Action.ANNOTATIONS_DELETED, project, ids)

    for declared in DECLARED:
        changed = rows(declared.table, declared.op)
        if changed is _NOTHING:
            continue
        born = rows(declared.table, "INSERT").ids() if declared.op != "INSERT" else set()
        gone = rows(declared.table, "DELETE").ids() if declared.op != "DELETE" else set()
        for project, found_rows in changed.by_project.items():
            if project in deleted_projects:
                continue
            ids = [r for r in found_rows if r not in born and r not in gone]
            first = changed.first_change[project]
            if declared.per_row:
                for seq, row in enumerate(ids):
                    emit(first, declared.action, project, [row], seq)
            elif ids:
                emit(first, declared.action, project, ids)

    found.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in found], sync_parts
