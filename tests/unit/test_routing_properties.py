"""Properties of grouping, matching and chunking over generated histories (issue 9: the pure
decisions, attacked with hypothesis rather than examples)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.actions import CHUNKED, ORGANIZATION_ONLY, Action
from relay.events import Change, group_changes
from relay.routing import Webhook, matches, plan

TABLES = {"project": ("INSERT", "UPDATE", "DELETE"), "task": ("INSERT", "DELETE"),
          "task_completion": ("INSERT", "UPDATE", "DELETE")}  # fmt: skip


@st.composite
def histories(draw: st.DrawFn) -> list[Change]:
    """Transactions of statements on the watched tables, over a few projects and rows."""
    changes: list[Change] = []
    next_id = 1
    for xid in range(1, draw(st.integers(1, 6)) + 1):
        for _ in range(draw(st.integers(1, 5))):
            table = draw(st.sampled_from(sorted(TABLES)))
            op = draw(st.sampled_from(TABLES[table]))
            project = draw(st.integers(1, 3))
            if table == "project":
                rows: tuple[int, ...] = (project,)
            else:
                rows = tuple(draw(st.lists(st.integers(1, 12), min_size=1, max_size=6, unique=True)))
            tasks = tuple(draw(st.integers(1, 12)) for _ in rows) if table == "task_completion" else ()
            org = draw(st.none() | st.just(project % 2 + 1))
            changes.append(Change(next_id, xid, table, op, project, org, rows, tasks))
            next_id += 1
    return changes


@given(histories(), st.randoms(use_true_random=False))
def test_grouping_does_not_depend_on_the_order_changes_arrive_in(history, rng: random.Random):
    shuffled = list(history)
    rng.shuffle(shuffled)
    assert group_changes(shuffled) == group_changes(history)


@given(histories())
def test_every_event_is_about_rows_its_own_transaction_changed_and_kept(history):
    for event in group_changes(history):
        mine = [c for c in history if c.xid == event.xid and c.project_id == event.project_id]
        touched = {r for c in mine for r in c.row_ids}
        assert set(event.row_ids) <= touched
        assert len(set(event.row_ids)) == len(event.row_ids)  # no row twice in one event
        created = {r for c in mine if c.op == "INSERT" for r in c.row_ids}
        if event.action == Action.TASKS_CREATED:
            tasks_deleted = {r for c in mine if c.op == "DELETE" and c.table == "task" for r in c.row_ids}
            assert not set(event.row_ids) & tasks_deleted  # created and deleted: no event
            assert set(event.row_ids) <= created
        if event.action == Action.PROJECT_CREATED:
            assert not any(c.table == "project" and c.op == "DELETE" for c in mine)
        assert event.row_ids


@given(histories())
def test_an_event_carries_the_organization_its_changes_recorded(history):
    for event in group_changes(history):
        recorded = {
            c.organization_id
            for c in history
            if c.xid == event.xid and c.project_id == event.project_id and c.organization_id is not None
        }
        assert event.organization_id in (recorded or {None})


webhooks_st = st.builds(
    Webhook,
    id=st.integers(1, 50),
    organization_id=st.integers(1, 2),
    project_id=st.none() | st.integers(1, 3),
    is_active=st.booleans(),
    send_for_all_actions=st.booleans(),
    actions=st.frozensets(st.sampled_from([a.value for a in Action])),
    send_payload=st.booleans(),
)


@given(histories(), st.lists(webhooks_st, max_size=8), st.integers(1, 4))
@settings(max_examples=200)
def test_matching_follows_label_studios_rules_and_chunks_cover_every_row(history, webhooks, batch):
    for routed in plan(group_changes(history), webhooks, batch):
        event = routed.event
        for webhook in webhooks:
            got = webhook in routed.webhooks
            assert got == matches(webhook, event)
            if got:
                assert webhook.is_active and webhook.organization_id == event.organization_id
                assert webhook.project_id in (None, event.project_id)
                assert not (webhook.project_id is not None and event.action in ORGANIZATION_ONLY)
                assert webhook.send_for_all_actions or event.action in webhook.actions
        covered = [r for c in routed.chunks for r in event.row_ids[c.start : c.end]]
        assert covered == list(event.row_ids)
        if event.action in CHUNKED:
            assert all(c.rows <= batch for c in routed.chunks)
        else:
            assert len(routed.chunks) == 1
