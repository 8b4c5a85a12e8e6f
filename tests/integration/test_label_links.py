"""Label links (issue 10 §1): LABEL_LINK_CREATED / _UPDATED / _DELETED from
labels_manager_labellink, with the bodies Label Studio 1.23.2 sent
(tests/data/label-studio-examples/LABEL_LINK_*.json), compared key by key."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.types.json import Jsonb

from tests.support import lsdb
from tests.support.examples import example, key_tree, parse_timestamp, rows_of

pytestmark = pytest.mark.anyio


def seed(conn: Any, sent: dict[str, Any]) -> dict[str, Any]:
    """The project, label and link behind ``sent`` (an example body); returns the label row."""
    lsdb.organization(conn)
    lsdb.insert(conn, "project", rows_of("project", sent["project"]))
    label = example("LABEL_LINK_UPDATED")["body"]["label"]
    row = {
        "id": label["id"],
        "created_at": parse_timestamp(label["created_at"]),
        "updated_at": parse_timestamp(label["updated_at"]),
        "value": Jsonb(label["value"]),
        "title": label["title"],
        "description": label["description"],
        "approved": label["approved"],
        "approved_by_id": label["approved_by"],
        "created_by_id": label["created_by"],
        "organization_id": label["organization"],
    }
    lsdb.insert(conn, "labels_manager_label", row)
    return row


async def deliver(conn: Any, receiver: Any, start_relay: Any, change: Any, **hook: Any) -> Any:
    conn.execute("delete from outbox.change")  # the seeding is not what these tests are about
    lsdb.webhook(conn, receiver.url, **hook)
    async with start_relay():
        change()
        requests = await receiver.wait_for(1)
    return requests[0]


async def test_label_link_updated_is_label_studios_body(conn, receiver, start_relay):
    sent = example("LABEL_LINK_UPDATED")["body"]
    seed(conn, sent)
    link = sent["label_link"]
    conn.execute(
        "insert into labels_manager_labellink (id, from_name, label_id, project_id) values (%s, 'sentiment', %s, %s)",
        (link["id"], link["label"], link["project"]),
    )
    received = await deliver(
        conn,
        receiver,
        start_relay,
        lambda: conn.execute(
            "update labels_manager_labellink set from_name = %s where id = %s",
            (link["from_name"], link["id"]),
        ),
        project_id=link["project"],
    )
    assert key_tree(received.json) == key_tree(sent)
    assert received.json == sent


async def test_label_link_deleted_is_label_studios_body(conn, receiver, start_relay):
    sent = example("LABEL_LINK_DELETED")["body"]
    seed(conn, sent)
    conn.execute(
        "insert into labels_manager_labellink (id, from_name, label_id, project_id) values (2, 'sentiment', 2, 2)"
    )
    received = await deliver(
        conn, receiver, start_relay, lambda: conn.execute("delete from labels_manager_labellink where id = 2")
    )
    assert key_tree(received.json) == key_tree(sent)
    assert received.json == sent


async def test_label_link_created_has_the_updated_shape_one_event_per_link(conn, receiver, start_relay):
    """Label Studio's POST /api/labels/ links one label into several projects at once: one event
    per link, each in its own project, the label listing every link and project."""
    sent = example("LABEL_LINK_UPDATED")["body"]
    seed(conn, sent)
    lsdb.project(conn, 3, title="other")
    conn.execute("delete from outbox.change")
    lsdb.webhook(conn, receiver.url)
    async with start_relay():
        conn.execute(
            "insert into labels_manager_labellink (id, from_name, label_id, project_id)"
            " values (5, 'sentiment', 2, 2), (6, 'sentiment', 2, 3)"
        )
        requests = await receiver.wait_for(2)
    assert [r.action for r in requests] == ["LABEL_LINK_CREATED", "LABEL_LINK_CREATED"]
    # two projects: the events are sent side by side and may arrive either way round
    requests = sorted(requests, key=lambda r: r.json["label_link"]["id"])
    for request, (link_id, project) in zip(requests, [(5, 2), (6, 3)], strict=True):
        body = request.json
        assert list(body) == list(sent)
        assert list(body["label"]) == list(sent["label"]) and list(body["project"]) == list(sent["project"])
        assert body["label_link"] == {"id": link_id, "from_name": "sentiment", "project": project, "label": 2}
        assert body["project"]["id"] == project
        assert body["label"]["links"] == [5, 6] and body["label"]["projects"] == [2, 3]


async def test_a_link_created_and_deleted_in_one_transaction_sends_nothing(conn, receiver, start_relay):
    sent = example("LABEL_LINK_UPDATED")["body"]
    seed(conn, sent)
    conn.execute("delete from outbox.change")
    lsdb.webhook(conn, receiver.url)
    async with start_relay():
        with conn.transaction():
            conn.execute(
                "insert into labels_manager_labellink (id, from_name, label_id, project_id) values (7, 'x', 2, 2)"
            )
            conn.execute("update labels_manager_labellink set from_name = 'y' where id = 7")
            conn.execute("delete from labels_manager_labellink where id = 7")
        conn.execute(
            "insert into labels_manager_labellink (id, from_name, label_id, project_id) values (8, 'z', 2, 2)"
        )
        requests = await receiver.wait_for(1)  # routed in order: link 7 would have come first
    assert requests[0].json["label_link"]["id"] == 8


async def test_links_deleted_with_their_project_send_nothing(conn, receiver, start_relay):
    sent = example("LABEL_LINK_UPDATED")["body"]
    seed(conn, sent)
    conn.execute(
        "insert into labels_manager_labellink (id, from_name, label_id, project_id) values (9, 'x', 2, 2)"
    )
    conn.execute("delete from outbox.change")
    lsdb.webhook(conn, receiver.url)
    async with start_relay():
        with conn.transaction():
            conn.execute("delete from labels_manager_labellink where project_id = 2")
            conn.execute("delete from project where id = 2")
        requests = await receiver.wait_for(1)
    assert [r.action for r in requests] == ["PROJECT_DELETED"]
