"""Grouping changes into events: the table of docs/design.md §4, transaction by transaction."""

from __future__ import annotations

import itertools

from relay.events import Change, Event, group_changes

_ids = itertools.count(1)


def change(
    table: str,
    op: str,
    rows: list[int],
    *,
    xid: int = 100,
    project: int = 1,
    org: int | None = 7,
    tasks: list[int] | None = None,
) -> Change:
    return Change(next(_ids), xid, table, op, project, org, tuple(rows), tuple(tasks or ()))


def actions(events: list[Event]) -> list[tuple[str, tuple[int, ...]]]:
    return [(e.action, e.row_ids) for e in events]


def test_one_import_in_several_statements_is_one_event_per_project() -> None:
    events = group_changes(
        [
            change("task", "INSERT", [1, 2, 3]),
            change("task", "INSERT", [4, 5]),
            change("task", "INSERT", [9], project=2),
        ]
    )
    assert actions(events) == [("TASKS_CREATED", (1, 2, 3, 4, 5)), ("TASKS_CREATED", (9,))]
    assert [e.project_id for e in events] == [1, 2]
    assert all(e.organization_id == 7 and e.xid == 100 for e in events)


def test_each_transaction_is_grouped_on_its_own() -> None:
    events = group_changes([change("task", "INSERT", [1], xid=1), change("task", "INSERT", [2], xid=2)])
    assert actions(events) == [("TASKS_CREATED", (1,)), ("TASKS_CREATED", (2,))]


def test_one_annotation_is_annotation_created_several_are_annotations_created() -> None:
    single = group_changes([change("task_completion", "INSERT", [10], tasks=[1])])
    many = group_changes(
        [
            change("task_completion", "INSERT", [11], tasks=[1], xid=2),
            change("task_completion", "INSERT", [12], tasks=[2], xid=2),
        ]
    )
    assert actions(single) == [("ANNOTATION_CREATED", (10,))]
    assert actions(many) == [("ANNOTATIONS_CREATED", (11, 12))]


def test_annotations_imported_with_their_tasks_emit_nothing() -> None:
    events = group_changes(
        [
            change("task", "INSERT", [1, 2]),
            change("task_completion", "INSERT", [10, 11], tasks=[1, 2]),
        ]
    )
    assert actions(events) == [("TASKS_CREATED", (1, 2))]


def test_annotation_on_an_existing_task_in_an_import_transaction_still_counts() -> None:
    events = group_changes(
        [change("task", "INSERT", [2]), change("task_completion", "INSERT", [10, 11], tasks=[1, 2])]
    )
    assert actions(events) == [("TASKS_CREATED", (2,)), ("ANNOTATION_CREATED", (10,))]


def test_deleting_a_task_covers_its_annotations_in_any_order() -> None:
    # Label Studio deletes the tasks first, then their annotations (deferred foreign keys).
    events = group_changes(
        [
            change("task", "DELETE", [1, 2]),
            change("task_completion", "DELETE", [10, 11, 12], tasks=[1, 2, 3]),
        ]
    )
    assert actions(events) == [("TASKS_DELETED", (1, 2)), ("ANNOTATIONS_DELETED", (12,))]


def test_deleting_a_project_covers_everything_in_it() -> None:
    events = group_changes(
        [
            change("project", "DELETE", [1]),
            change("task", "DELETE", [1, 2], org=None),
            change("task_completion", "DELETE", [10], tasks=[1], org=None),
            change("task", "DELETE", [5], project=2),
        ]
    )
    assert actions(events) == [("PROJECT_DELETED", (1,)), ("TASKS_DELETED", (5,))]
    assert events[0].organization_id == 7


def test_project_organization_is_taken_from_any_change_of_the_transaction() -> None:
    events = group_changes([change("task", "DELETE", [3], org=None), change("task", "DELETE", [4], org=9)])
    assert [(e.action, e.organization_id) for e in events] == [("TASKS_DELETED", 9)]


def test_project_created_then_updated_in_one_transaction_is_created_only() -> None:
    events = group_changes([change("project", "INSERT", [1]), change("project", "UPDATE", [1])])
    assert actions(events) == [("PROJECT_CREATED", (1,))]


def test_repeated_project_updates_in_one_transaction_are_one_event() -> None:
    events = group_changes([change("project", "UPDATE", [1]), change("project", "UPDATE", [1])])
    assert actions(events) == [("PROJECT_UPDATED", (1,))]


def test_rows_created_and_deleted_in_one_transaction_never_existed_outside_it() -> None:
    events = group_changes(
        [
            change("task", "INSERT", [1, 2]),
            change("task", "DELETE", [2]),
            change("task_completion", "INSERT", [10], tasks=[5]),
            change("task_completion", "DELETE", [10], tasks=[5]),
            change("project", "INSERT", [3], project=3),
            change("project", "DELETE", [3], project=3),
        ]
    )
    assert actions(events) == [("TASKS_CREATED", (1,))]


def test_each_updated_annotation_is_its_own_event() -> None:
    events = group_changes([change("task_completion", "UPDATE", [10, 11], tasks=[1, 2])])
    assert actions(events) == [("ANNOTATION_UPDATED", (10,)), ("ANNOTATION_UPDATED", (11,))]


def test_update_of_an_annotation_created_in_the_same_transaction_is_part_of_its_creation() -> None:
    events = group_changes(
        [
            change("task_completion", "INSERT", [10], tasks=[1]),
            change("task_completion", "UPDATE", [10], tasks=[1]),
        ]
    )
    assert actions(events) == [("ANNOTATION_CREATED", (10,))]


def test_events_follow_the_order_of_the_changes() -> None:
    events = group_changes(
        [
            change("task_completion", "DELETE", [10], tasks=[1]),
            change("project", "UPDATE", [1]),
            change("task", "INSERT", [2]),
        ]
    )
    assert [e.action for e in events] == ["ANNOTATIONS_DELETED", "PROJECT_UPDATED", "TASKS_CREATED"]


def test_changes_without_a_project_are_ignored() -> None:
    orphan = Change(next(_ids), 1, "task", "INSERT", None, None, (1,))
    assert group_changes([orphan]) == []


def test_data_manager_deletes_spread_over_transactions_are_one_event() -> None:
    # Label Studio detached tasks 1..5 in one transaction (xid 50), then deletes them in several
    parts = [
        Change(next(_ids), 60, "task", "DELETE", 1, 7, (1, 2), detach_xid=50),
        Change(next(_ids), 60, "task_completion", "DELETE", 1, 7, (10,), (1,)),
        Change(next(_ids), 61, "task", "DELETE", 1, 7, (3, 4, 5), detach_xid=50),
    ]
    assert actions(group_changes(parts)) == [("TASKS_DELETED", (1, 2, 3, 4, 5))]


def test_a_data_manager_delete_still_in_progress_is_held_but_silences_its_annotations() -> None:
    parts = [
        Change(next(_ids), 60, "task", "DELETE", 1, 7, (1, 2), detach_xid=50, held=True),
        Change(next(_ids), 60, "task_completion", "DELETE", 1, 7, (10, 11), (1, 9)),
    ]
    assert actions(group_changes(parts)) == [("ANNOTATIONS_DELETED", (11,))]
