"""Matching events to webhooks (Label Studio's rules) and chunking."""

from __future__ import annotations

from relay.events import Event
from relay.routing import Webhook, matches, plan


def webhook(
    id: int = 1,
    *,
    org: int = 1,
    project: int | None = None,
    active: bool = True,
    all_actions: bool = True,
    actions: frozenset[str] = frozenset(),
    send_payload: bool = True,
) -> Webhook:
    return Webhook(id, org, project, active, all_actions, actions, send_payload)


def event(action: str = "TASKS_CREATED", *, org: int = 1, project: int = 5, rows: int = 1) -> Event:
    return Event(1, action, org, project, tuple(range(1, rows + 1)))


def test_organization_level_webhook_gets_every_event_of_its_organization() -> None:
    assert matches(webhook(), event(project=5))
    assert matches(webhook(), event("PROJECT_CREATED", project=9))
    assert not matches(webhook(org=2), event())


def test_project_level_webhook_gets_only_its_project() -> None:
    assert matches(webhook(project=5), event(project=5))
    assert not matches(webhook(project=6), event(project=5))


def test_organization_only_actions_never_go_to_project_level_webhooks() -> None:
    for action in ("PROJECT_CREATED", "PROJECT_DELETED"):
        assert not matches(webhook(project=5), event(action, project=5))
        assert matches(webhook(), event(action, project=5))
    assert matches(webhook(project=5), event("PROJECT_UPDATED", project=5))


def test_listed_actions_only_unless_send_for_all_actions() -> None:
    listed = webhook(all_actions=False, actions=frozenset({"ANNOTATION_CREATED"}))
    assert matches(listed, event("ANNOTATION_CREATED"))
    assert not matches(listed, event("TASKS_CREATED"))
    assert not matches(webhook(all_actions=False), event())


def test_inactive_webhooks_get_nothing() -> None:
    assert not matches(webhook(active=False), event())


def test_plan_routes_and_chunks_only_row_lists() -> None:
    hooks = [webhook(1), webhook(2, project=5), webhook(3, send_payload=False, project=9)]
    routed = plan(
        [event(rows=12), event("TASKS_DELETED", rows=12), event("PROJECT_CREATED")],
        hooks,
        batch_size=5,
    )
    assert [[w.id for w in r.webhooks] for r in routed] == [[1, 2], [1, 2], [1]]
    assert [(r.chunk_size, [c.rows for c in r.chunks]) for r in routed] == [
        (5, [5, 5, 2]),
        (12, [12]),
        (1, [1]),
    ]


def test_payload_is_built_only_for_webhooks_that_want_it() -> None:
    routed = plan([event(project=9)], [webhook(3, send_payload=False, project=9)], batch_size=10)
    assert not routed[0].needs_payload
    assert plan([event()], [], batch_size=10)[0].webhooks == ()
