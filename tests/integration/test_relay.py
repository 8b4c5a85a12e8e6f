"""The relay end to end: who gets what, chunking, Label Studio's delete paths, settling, outages."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest

from outbox.receiver import Receiver
from tests.support import lsdb

pytestmark = pytest.mark.anyio


@pytest.fixture
def ls(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.organization(conn, 2, user_id=2)
    lsdb.project(conn, 1, 1)
    lsdb.project(conn, 2, 1)
    lsdb.project(conn, 3, 2)
    conn.execute("insert into task (id, data, project_id) values (1, '{}', 1), (2, '{}', 2), (3, '{}', 3)")
    lsdb.continue_ids(conn, 100)
    conn.execute("delete from outbox.change")
    return conn


def by_path(receiver: Receiver) -> dict[str, list[str]]:
    got: dict[str, list[str]] = defaultdict(list)
    for request in receiver.requests:
        got[request.path].append(request.action)
    return {path: sorted(actions) for path, actions in got.items()}


async def settled(conn: Any) -> None:
    """Wait until every delivery has been delivered or has died (with a deadline)."""
    with anyio.fail_after(10):
        while conn.execute(
            "select count(*) from outbox.change union all"
            " select count(*) from outbox.delivery where state = 'pending'"
        ).fetchall() != [{"count": 0}, {"count": 0}]:
            await anyio.sleep(0.02)


async def test_each_webhook_gets_exactly_the_events_label_studio_would_send_it(ls, receiver, start_relay):
    url = receiver.url
    lsdb.webhook(ls, f"{url}/org")
    lsdb.webhook(ls, f"{url}/project1", project_id=1)
    lsdb.webhook(
        ls,
        f"{url}/project2-annotations",
        project_id=2,
        send_for_all_actions=False,
        actions=["ANNOTATION_CREATED"],
    )
    lsdb.webhook(ls, f"{url}/paused", is_active=False)
    lsdb.webhook(ls, f"{url}/other-org", organization_id=2)
    async with start_relay():
        ls.execute("insert into project (id, organization_id) values (4, 1)")
        ls.execute("insert into task_completion (task_id, project_id) values (1, 1)")
        ls.execute("insert into task_completion (task_id, project_id) values (2, 2)")
        ls.execute("update project set title = 'renamed' where id = 1")
        ls.execute("insert into task (data, project_id) values ('{}', 2)")
        ls.execute("delete from project where id = 4")
        await settled(ls)
    assert by_path(receiver) == {
        "/org": sorted(["PROJECT_CREATED", "ANNOTATION_CREATED", "ANNOTATION_CREATED",
                        "PROJECT_UPDATED", "TASKS_CREATED", "PROJECT_DELETED"]),
        "/project1": ["ANNOTATION_CREATED", "PROJECT_UPDATED"],
        "/project2-annotations": ["ANNOTATION_CREATED"],
    }  # fmt: skip
    matched = ls.execute("select count(*) from outbox.delivery").fetchone()["count"]
    assert matched == len(receiver.requests)  # the match is recorded, one delivery each


async def test_a_big_import_is_one_event_in_chunks_of_webhook_batch_size(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=1)
    async with start_relay(webhook_batch_size=5):
        with ls.transaction():  # Label Studio inserts 1000 rows per statement
            ls.execute("insert into task (data, project_id) select '{}', 1 from generate_series(1, 7)")
            ls.execute("insert into task (data, project_id) select '{}', 1 from generate_series(1, 5)")
        requests = await receiver.wait_for(3)
    bodies = sorted((r.json for r in requests), key=lambda b: b["tasks"][0]["id"])
    assert [len(b["tasks"]) for b in bodies] == [5, 5, 2]
    assert [t["id"] for b in bodies for t in b["tasks"]] == list(range(101, 113))
    assert all(b["project"]["task_number"] == 13 for b in bodies)  # each chunk has the full project
    assert ls.execute("select count(*) from outbox.event").fetchone()["count"] == 1
    assert len({r.headers["webhook-id"] for r in requests}) == 3


async def test_data_manager_delete_sends_tasks_deleted_only(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=1)
    ls.execute("insert into task (id, data, project_id) values (10, '{}', 1), (11, '{}', 1)")
    ls.execute("insert into task_completion (id, task_id, project_id) values (20, 10, 1), (21, 11, 1)")
    ls.execute("delete from outbox.change")
    async with start_relay():
        ls.execute("update task set project_id = null where id in (1, 10, 11)")
        with ls.transaction():
            ls.execute("delete from task where id in (1, 10, 11)")
            ls.execute("delete from task_completion where id in (20, 21)")
        await settled(ls)
    assert [r.json["action"] for r in receiver.requests] == ["TASKS_DELETED"]
    body = receiver.requests[0].json
    assert body["tasks"] == [{"id": 1}, {"id": 10}, {"id": 11}]
    assert body["project"]["id"] == 1 and body["project"]["task_number"] == 0


async def test_deleting_a_project_sends_project_deleted_only(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url)
    ls.execute("insert into task_completion (task_id, project_id) values (1, 1)")
    ls.execute("delete from outbox.change")
    async with start_relay():
        with ls.transaction():  # Label Studio: project first, then its tasks and annotations
            ls.execute("delete from project where id = 1")
            ls.execute("delete from task where project_id = 1")
            ls.execute("delete from task_completion where project_id = 1")
        await settled(ls)
    assert [r.json for r in receiver.requests] == [{"action": "PROJECT_DELETED", "project": {"id": 1}}]


async def test_payload_waits_for_label_studios_follow_up_counter_updates(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=1)
    async with start_relay(settle_ms=400):
        ls.execute("insert into task_completion (task_id, project_id, result) values (1, 1, '[]')")
        # Label Studio updates the task's counters in later transactions, milliseconds after
        await anyio.sleep(0.05)
        ls.execute("update task set is_labeled = true, total_annotations = 1 where id = 1")
        requests = await receiver.wait_for(1)
    task = requests[0].json["task"]
    assert (task["is_labeled"], task["total_annotations"]) == (True, 1)
    assert requests[0].json["project"]["finished_task_number"] == 1


async def test_a_payload_is_built_as_soon_as_its_rows_settle_the_delay_being_only_the_upper_bound(
    ls, receiver, start_relay
):
    lsdb.webhook(ls, receiver.url, project_id=1)
    async with start_relay(settle_ms=60_000):  # far beyond the test's deadlines
        # counters that never agree (written by hand): this one waits the whole delay
        ls.execute("insert into task_completion (task_id, project_id, result) values (1, 1, '[]')")
        # Label Studio's pattern: the annotation, then its task's counters in two later transactions
        ls.execute("insert into task (id, data, project_id) values (60, '{}', 1)")
        ls.execute("insert into task_completion (task_id, project_id, result) values (60, 1, '[]')")
        ls.execute("update task set total_annotations = 1 where id = 60")
        ls.execute("update task set is_labeled = true where id = 60")
        # counters alone are not enough: Label Studio writes the task's updated_at and updated_by
        # last (Annotation.update_task), and its body shows them
        ls.execute("update task set updated_at = clock_timestamp(), updated_by_id = 1 where id = 60")
        # a task without annotations has nothing to wait for
        ls.execute("insert into task (id, data, project_id) values (61, '{}', 1)")
        requests = await receiver.wait_for(3)
        assert (
            ls.execute("select count(*) from outbox.payload where built_at is null").fetchone()["count"] == 1
        )  # only the unsettled annotation's
    bodies = sorted(
        (r.json["action"], [t["id"] for t in r.json.get("tasks") or [r.json["task"]]]) for r in requests
    )
    assert bodies == [
        ("ANNOTATION_CREATED", [60]), ("TASKS_CREATED", [60]), ("TASKS_CREATED", [61]),
    ]  # fmt: skip
    annotation = next(r.json for r in requests if r.json["action"] == "ANNOTATION_CREATED")
    assert (annotation["task"]["is_labeled"], annotation["task"]["total_annotations"]) == (True, 1)
    assert annotation["task"]["updated_by"] == 1


async def test_rows_gone_before_the_payload_is_built_are_sent_as_ids(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=1)
    ls.execute("insert into task (id, data, project_id) values (50, '{}', 1)")
    ls.execute("delete from task where id = 50")
    async with start_relay():
        requests = await receiver.wait_for(2)
    bodies = {r.json["action"]: r.json for r in requests}
    assert bodies["TASKS_CREATED"]["tasks"] == [{"id": 50}]
    assert bodies["TASKS_DELETED"]["tasks"] == [{"id": 50}]


async def test_a_receiver_that_is_down_gets_everything_once_it_is_up(ls, start_relay):
    down = Receiver()
    await down.start()
    url = down.url
    await down.stop()
    lsdb.webhook(ls, url, project_id=1)
    async with start_relay(retry_schedule=(0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)):
        ls.execute("insert into task (data, project_id) values ('{}', 1)")
        with anyio.fail_after(10):
            while not ls.execute("select 1 from outbox.attempt where error_class = 'connect'").fetchone():
                await anyio.sleep(0.02)
        async with Receiver(port=int(url.rsplit(":", 1)[1])) as up:
            requests = await up.wait_for(1)
            await settled(ls)
    assert requests[0].json["action"] == "TASKS_CREATED"
    delivery = ls.execute("select state, attempts, last_status from outbox.delivery").fetchone()
    assert delivery["state"] == "delivered" and delivery["attempts"] >= 2 and delivery["last_status"] == 200


async def test_a_data_manager_delete_in_several_transactions_is_one_tasks_deleted(ls, receiver, start_relay):
    # Label Studio deletes 500 tasks per transaction and sends one TASKS_DELETED at the end
    lsdb.webhook(ls, receiver.url, project_id=1)
    ls.execute("insert into task (id, data, project_id) select g, '{}', 1 from generate_series(10, 15) g")
    ls.execute("insert into task_completion (task_id, project_id) values (10, 1), (14, 1)")
    ls.execute("delete from outbox.change")
    async with start_relay():
        ls.execute("update task set project_id = null where id between 10 and 15")
        for first, last in ((10, 11), (12, 13), (14, 15)):
            with ls.transaction():
                ls.execute("delete from task where id between %s and %s", (first, last))
                ls.execute("delete from task_completion where task_id between %s and %s", (first, last))
            if last < 15:  # nothing may be sent while the delete is in progress
                with anyio.fail_after(10):
                    while ls.execute(
                        "select count(*) from outbox.change where detach_xid is null"
                    ).fetchone()["count"]:
                        await anyio.sleep(0.02)
                assert receiver.requests == []
        requests = await receiver.wait_for(1)
        await settled(ls)
    assert [r.json["tasks"] for r in requests] == [[{"id": i} for i in range(10, 16)]]
    assert len(receiver.requests) == 1


async def test_a_data_manager_delete_that_stopped_half_way_is_sent_after_a_while(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=1)
    ls.execute("insert into task (id, data, project_id) values (10, '{}', 1), (11, '{}', 1)")
    ls.execute("delete from outbox.change")
    async with start_relay():
        ls.execute("update task set project_id = null where id in (10, 11)")
        ls.execute("delete from task where id = 10")  # and Label Studio died before task 11
        with anyio.fail_after(10):
            while not ls.execute("select 1 from outbox.change where detach_xid is not null").fetchone():
                await anyio.sleep(0.02)
        assert receiver.requests == []
        # a minute passes (for the webhook too: it existed before the delete)
        ls.execute("update outbox.change set captured_at = captured_at - interval '61 seconds'")
        ls.execute("update outbox.webhook set created_at = created_at - interval '61 seconds'")
        requests = await receiver.wait_for(1)
    assert requests[0].json["tasks"] == [{"id": 10}]
