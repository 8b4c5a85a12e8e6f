"""A backlog never leaks into a new subscription (issue 10 §1): a webhook created, or made active
again, after a change was captured never receives that change's events, however late the relay
routes it. Changes captured after it still arrive. The relay is stopped while the history is
written, so every change waits in outbox.change until it starts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import lsdb

pytestmark = pytest.mark.anyio


def task(conn: Any, task_id: int) -> None:
    conn.execute("insert into task (id, data, project_id) values (%s, '{}', 1)", (task_id,))


async def test_a_webhook_created_after_a_change_never_gets_it(conn, receiver, start_relay):
    lsdb.organization(conn)
    lsdb.project(conn, 1)  # committed before the webhook: PROJECT_CREATED is a backlog
    task(conn, 1)
    lsdb.webhook(conn, receiver.url, ordered=True)  # arrivals in commit order
    task(conn, 2)
    async with start_relay():
        task(conn, 3)
        requests = await receiver.wait_until(
            lambda rs: any(3 in [t["id"] for t in r.json["tasks"]] for r in rs), what="task 3"
        )
    # changes are routed in commit order: anything older than task 3 would have arrived first
    assert [(r.action, [t["id"] for t in r.json["tasks"]]) for r in requests] == [
        ("TASKS_CREATED", [2]),
        ("TASKS_CREATED", [3]),
    ]


async def test_a_webhook_made_active_again_gets_nothing_committed_while_it_was_paused(
    conn, receiver, start_relay
):
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    hook = lsdb.webhook(conn, receiver.url, project_id=1, ordered=True)  # in commit order
    task(conn, 1)  # while active: owed
    conn.execute("update outbox.webhook set is_active = false where id = %s", (hook,))
    task(conn, 2)  # while paused: not owed, even though nothing was routed yet
    conn.execute("update outbox.webhook set is_active = true where id = %s", (hook,))
    task(conn, 3)
    async with start_relay():
        requests = await receiver.wait_until(
            lambda rs: any(r.json["tasks"][0]["id"] == 3 for r in rs), what="task 3"
        )
    assert [r.json["tasks"][0]["id"] for r in requests] == [1, 3]


async def test_a_change_in_a_transaction_still_open_when_the_webhook_was_created_is_sent(
    conn, database_url, receiver, start_relay
):
    """The rule reads the capture time: a webhook whose creation started before the change was
    captured gets it (the webhook was committed before the change, or together with it)."""
    from outbox import db

    lsdb.organization(conn)
    lsdb.project(conn, 1)
    with db.connect_sync(database_url) as other:
        lsdb.webhook(other, receiver.url)  # created_at: this transaction's start
        task(conn, 1)  # captured after it, committed before it
        other.commit()
    task(conn, 2)
    async with start_relay():
        requests = await receiver.wait_for(2)
    assert sorted(r.json["tasks"][0]["id"] for r in requests) == [1, 2]


async def test_editing_a_webhook_does_not_move_its_subscription(conn, receiver, start_relay):
    """Only creation and reactivation start a subscription: renaming the URL, changing headers
    or actions keeps what was already owed (the current actions decide, as they are at routing)."""
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    hook = lsdb.webhook(conn, receiver.url)
    task(conn, 1)
    conn.execute(
        "update outbox.webhook set description = 'edited', send_for_all_actions = false,"
        " actions = '{TASKS_CREATED}' where id = %s",
        (hook,),
    )
    async with start_relay():
        requests = await receiver.wait_for(1)
    assert requests[0].json["tasks"][0]["id"] == 1


def emit(conn: Any, version: str) -> None:
    conn.execute("select outbox.emit('MODEL_TRAINED', 1, 1, %s::jsonb)", (f'{{"version": "{version}"}}',))


async def test_an_emitted_event_is_matched_as_of_its_commit_too(conn, receiver, start_relay):
    """outbox.emit is an event like a captured change (docs/events.md, "Common to every event"):
    one emitted before the webhook existed, or while it was paused, is a backlog it never gets."""
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    conn.execute(
        "insert into outbox.action (name, title, payload_key) values ('MODEL_TRAINED', 'Model trained', 'model')"
    )
    emit(conn, "before the webhook")
    hook = lsdb.webhook(conn, receiver.url, project_id=1, ordered=True)  # in commit order
    emit(conn, "owed")
    conn.execute("update outbox.webhook set is_active = false where id = %s", (hook,))
    emit(conn, "while paused")
    conn.execute("update outbox.webhook set is_active = true where id = %s", (hook,))
    emit(conn, "last")
    async with start_relay():
        requests = await receiver.wait_until(
            lambda rs: any(r.json["model"]["version"] == "last" for r in rs), what="the last event"
        )
    assert [r.json["model"]["version"] for r in requests] == ["owed", "last"]
