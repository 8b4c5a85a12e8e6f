"""Matching as of commit (issue 10 §1): a webhook gets an event only if it existed, and was not in
its last pause, when the event's changes were captured; opt-in actions only when listed. Pure
decisions of relay/routing.py, attacked with hypothesis."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from relay.actions import OPT_IN, ORGANIZATION_ONLY, Action
from relay.events import Change, Event, group_changes
from relay.routing import Webhook, matches, subscribed

T0 = datetime(2026, 12, 1, tzinfo=UTC)
moments = st.none() | st.integers(-5, 5).map(lambda s: T0 + timedelta(seconds=s))

events_st = st.builds(
    Event,
    xid=st.integers(1, 9),
    action=st.sampled_from([a.value for a in Action]),
    organization_id=st.integers(1, 2),
    project_id=st.integers(1, 3),
    row_ids=st.just((1,)),
    captured_at=moments,
)
webhooks_st = st.builds(
    Webhook,
    id=st.integers(1, 50),
    organization_id=st.integers(1, 2),
    project_id=st.none() | st.integers(1, 3),
    is_active=st.booleans(),
    send_for_all_actions=st.booleans(),
    actions=st.frozensets(st.sampled_from([a.value for a in Action])),
    send_payload=st.booleans(),
    created_at=moments,
    paused_from=moments,
    paused_until=moments,
)


def label_studio_rule(webhook: Webhook, event: Event) -> bool:
    """Label Studio's own matching, written out independently."""
    return (
        webhook.is_active
        and webhook.organization_id == event.organization_id
        and (webhook.project_id is None
             or (webhook.project_id == event.project_id and event.action not in ORGANIZATION_ONLY))
        and (webhook.send_for_all_actions or event.action in webhook.actions)
    )  # fmt: skip


@given(webhooks_st, events_st)
def test_a_change_captured_before_the_webhook_existed_or_while_paused_never_reaches_it(webhook, event):
    at = event.captured_at
    if at is None:
        return
    if webhook.created_at is not None and at < webhook.created_at:
        assert not matches(webhook, event)
    paused = webhook.paused_from is not None and webhook.paused_until is not None
    if paused and webhook.paused_from <= at < webhook.paused_until:  # type: ignore[operator]
        assert not matches(webhook, event)


@given(webhooks_st, events_st)
def test_otherwise_label_studios_rules_decide_and_opt_in_actions_must_be_listed(webhook, event):
    if not subscribed(webhook, event):
        return
    expected = label_studio_rule(webhook, event)
    if event.action in OPT_IN:
        expected = expected and event.action in webhook.actions
    assert matches(webhook, event) == expected


@given(webhooks_st, events_st)
def test_send_for_all_actions_never_includes_an_opt_in_action(webhook, event):
    everything = replace(webhook, send_for_all_actions=True, actions=frozenset())
    if event.action in OPT_IN:
        assert not matches(everything, event)


def test_the_boundary_a_webhook_created_at_the_capture_instant_gets_it():
    event = Event(1, Action.TASKS_CREATED, 1, 1, (1,), captured_at=T0)
    hook = Webhook(1, 1, None, True, True, frozenset(), True, created_at=T0)
    assert matches(hook, event)
    assert not matches(replace(hook, created_at=T0 + timedelta(microseconds=1)), event)
    paused = replace(hook, created_at=T0 - timedelta(hours=1), paused_from=T0, paused_until=T0 + timedelta(1))
    assert not matches(paused, event)  # paused at the very instant: not owed
    assert matches(replace(paused, paused_until=T0), event)  # made active again at that instant


@given(st.lists(moments, min_size=1, max_size=6))
def test_an_event_stands_for_the_last_capture_of_its_transaction(times):
    changes = [Change(i + 1, 7, "task", "INSERT", 1, 1, (i + 1,), captured_at=t) for i, t in enumerate(times)]
    (event,) = group_changes(changes)
    known = [t for t in times if t is not None]
    assert event.captured_at == (max(known) if known else None)
