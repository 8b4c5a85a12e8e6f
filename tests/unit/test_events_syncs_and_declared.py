"""Grouping of storage syncs and of declared tables (issue 10 §1, §3): pure decisions of
relay/events.py, over generated histories written as Label Studio writes them."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from relay.actions import Action
from relay.events import Change, group_changes

LINK = "io_storages_s3importstoragelink"


@st.composite
def syncs(draw: st.DrawFn) -> tuple[list[Change], dict[tuple[str, int | None], list[int]]]:
    """Files synced by a few storages, one transaction per file (task insert, then its link), some
    syncs ended by a marker, others timed out (sync_end None), with uploads in between. Returns
    the changes and, per sync, the tasks it created."""
    changes: list[Change] = []
    expected: dict[tuple[str, int | None], list[int]] = {}
    next_id, xid, task = 1, 1, 1
    for _ in range(draw(st.integers(1, 12))):
        storage = f"io_storages_s3importstorage:{draw(st.integers(1, 3))}"
        end = draw(st.sampled_from([None, 1000, 2000]))
        if draw(st.booleans()):  # an upload: not part of any sync
            changes.append(Change(next_id, xid, "task", "INSERT", 1, 1, (task,)))
            next_id += 1
        else:
            changes.append(Change(next_id, xid, "task", "INSERT", 1, 1, (task,)))
            changes.append(Change(next_id + 1, xid, LINK, "INSERT", None, None, (task,), storage=storage,
                                  sync_end=end))  # fmt: skip
            expected.setdefault((storage, end), []).append(task)
            next_id += 2
        xid += 1
        task += 1
    return changes, expected


@given(syncs(), st.randoms(use_true_random=False))
def test_each_sync_is_one_tasks_created_and_uploads_stay_their_own(history, rng: random.Random):
    changes, expected = history
    shuffled = list(changes)
    rng.shuffle(shuffled)
    events = group_changes(shuffled)
    assert all(e.action == Action.TASKS_CREATED for e in events)
    synced = {t for tasks in expected.values() for t in tasks}
    merged = sorted(tuple(e.row_ids) for e in events if set(e.row_ids) <= synced)
    assert merged == sorted(tuple(sorted(tasks)) for tasks in expected.values())
    uploads = [e for e in events if not set(e.row_ids) & synced]
    assert all(len(e.row_ids) == 1 for e in uploads)
    assert len(uploads) + len(expected) == len(events)


def test_a_synced_task_deleted_in_its_own_transaction_is_nothing():
    changes = [
        Change(1, 1, "task", "INSERT", 1, 1, (5,)),
        Change(2, 1, LINK, "INSERT", None, None, (5,), storage="s:1", sync_end=9),
        Change(3, 1, "task", "DELETE", 1, 1, (5,)),
        Change(4, 2, "task", "INSERT", 1, 1, (6,)),
        Change(5, 2, LINK, "INSERT", None, None, (6,), storage="s:1", sync_end=9),
    ]
    assert [(e.action, e.row_ids) for e in group_changes(changes)] == [(Action.TASKS_CREATED, (6,))]


link = "labels_manager_labellink"


def test_label_links_one_event_per_link_net_effect_of_the_transaction():
    changes = [
        Change(1, 1, link, "INSERT", 1, 1, (1, 2, 3)),
        Change(2, 1, link, "UPDATE", 1, 1, (2,)),  # created here: CREATED only
        Change(3, 1, link, "DELETE", 1, 1, (3,)),  # created and deleted: nothing
        Change(4, 2, link, "UPDATE", 1, 1, (7, 8)),
        Change(5, 3, link, "DELETE", 2, 1, (9,)),
        Change(6, 3, "project", "DELETE", 2, 1, (2,)),  # with its project: nothing
    ]
    assert [(e.action, e.row_ids) for e in group_changes(changes)] == [
        (Action.LABEL_LINK_CREATED, (1,)),
        (Action.LABEL_LINK_CREATED, (2,)),
        (Action.LABEL_LINK_UPDATED, (7,)),
        (Action.LABEL_LINK_UPDATED, (8,)),
        (Action.PROJECT_DELETED, (2,)),
    ]


def test_task_labeled_lists_the_transactions_tasks_but_not_those_it_created():
    changes = [
        Change(1, 1, "task", "INSERT", 1, 1, (1,)),
        Change(2, 1, "task", "UPDATE", 1, 1, (1,)),
        Change(3, 1, "task", "UPDATE", 1, 1, (4,)),
        Change(4, 1, "task", "UPDATE", 1, 1, (3,)),
        Change(5, 1, "prediction", "INSERT", 1, 1, (10, 11)),
    ]
    assert [(e.action, e.row_ids) for e in group_changes(changes)] == [
        (Action.TASKS_CREATED, (1,)),
        (Action.TASK_LABELED, (4, 3)),
        (Action.PREDICTIONS_CREATED, (10, 11)),
    ]


@given(st.lists(st.integers(1, 50), min_size=1, max_size=10, unique=True), st.randoms(use_true_random=False))
def test_deleted_ids_are_listed_ascending_whatever_the_statements_order(ids, rng: random.Random):
    changes = [Change(i + 1, 1, "task_completion", "DELETE", 1, 1, (a,), (100,)) for i, a in enumerate(ids)]
    rng.shuffle(changes)
    (event,) = group_changes(changes)
    assert event.action == Action.ANNOTATIONS_DELETED and list(event.row_ids) == sorted(ids)
