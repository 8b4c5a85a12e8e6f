"""Routing under hostile histories and hostile sizes (issue 9, items 2 and 3).

Item 2: a committed change becomes its events whatever happens to its rows afterwards, however
long the relay was away. Item 3: chunks are bounded by bytes as well as rows; a row too large to
send is dead alone, with a clear error, and the rest of its import still arrives.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest

from outbox.receiver import Receiver
from tests.support import lsdb

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def actions_by_path(receiver: Receiver) -> dict[str, list[str]]:
    got: dict[str, list[str]] = defaultdict(list)
    for request in receiver.requests:
        got[request.path].append(request.action)
    return dict(got)


async def settled(conn: Any, timeout: float = 20) -> None:
    """Every change routed and every delivery delivered or dead (with a deadline)."""
    with anyio.fail_after(timeout):
        while conn.execute(
            "select (select count(*) from outbox.change)"
            " + (select count(*) from outbox.delivery where state = 'pending') as left"
        ).fetchone()["left"]:
            await anyio.sleep(0.02)


@pytest.fixture
def org(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.continue_ids(conn, 100)
    return conn


@pytest.mark.parametrize(
    "separately", [False, True], ids=["deleted-in-one-transaction", "deleted-separately"]
)
async def test_events_survive_their_project_being_deleted_before_routing(
    org, receiver, start_relay, separately
):
    """Item 2: with no relay running, tasks and an annotation are committed, then the tasks and
    the project are deleted (Label Studio's order: annotations, tasks, project). Every committed
    change still becomes its events, for the organization-level and the project webhook; rows gone
    by build time are sent as {"id": N}."""
    conn = org
    lsdb.webhook(conn, f"{receiver.url}/org")
    conn.execute("insert into project (id, organization_id, title) values (7, 1, 'doomed')")
    lsdb.webhook(conn, f"{receiver.url}/project", project_id=7)
    conn.execute("insert into task (id, data, project_id) values (11, '{}', 7), (12, '{}', 7)")
    conn.execute("insert into task_completion (id, task_id, project_id, result) values (21, 11, 7, '[]')")
    if not separately:  # one later transaction deletes it all, as Label Studio does
        with conn.transaction():
            conn.execute("delete from task_completion where project_id = 7")
            conn.execute("delete from task where project_id = 7")
            conn.execute("delete from project where id = 7")
    else:  # annotations, tasks and the project each deleted in a transaction of its own
        conn.execute("delete from task_completion where project_id = 7")
        conn.execute("delete from task where project_id = 7")
        conn.execute("delete from project where id = 7")
    async with start_relay():
        await settled(conn)
    got = actions_by_path(receiver)
    assert sorted(got["/org"]) == sorted(
        ["PROJECT_CREATED", "TASKS_CREATED", "ANNOTATION_CREATED"]
        + (["ANNOTATIONS_DELETED", "TASKS_DELETED", "PROJECT_DELETED"] if separately else ["PROJECT_DELETED"])
    )
    assert sorted(got["/project"]) == sorted(
        ["TASKS_CREATED", "ANNOTATION_CREATED"]
        + (["ANNOTATIONS_DELETED", "TASKS_DELETED"] if separately else [])
    )
    tasks = next(r.json for r in receiver.requests if r.path == "/project" and r.action == "TASKS_CREATED")
    assert tasks["tasks"] == [{"id": 11}, {"id": 12}]  # gone by build time
    assert tasks["project"] == {"id": 7}


async def test_events_of_a_deleted_project_reach_webhooks_whatever_the_order_of_later_commits(
    org, receiver, start_relay
):
    """Item 2, other orders: a task created, the project renamed, the task deleted, another project
    created, then the first project deleted, all while no relay runs; then the relay routes it.
    The webhook is ordered, so the deleted project's events must also arrive in commit order."""
    conn = org
    lsdb.webhook(conn, f"{receiver.url}/org", ordered=True)
    conn.execute("insert into project (id, organization_id) values (7, 1)")
    conn.execute("insert into task (id, data, project_id) values (11, '{}', 7)")
    conn.execute("update project set title = 'renamed' where id = 7")
    conn.execute("insert into project (id, organization_id) values (8, 1)")
    conn.execute("delete from task where id = 11")
    conn.execute("delete from project where id = 7")
    async with start_relay():
        await settled(conn)
    assert [r.action for r in receiver.requests if (r.json.get("project") or {}).get("id") == 7] == [
        "PROJECT_CREATED",
        "TASKS_CREATED",
        "PROJECT_UPDATED",
        "TASKS_DELETED",
        "PROJECT_DELETED",
    ]


def _big_tasks(conn: Any, project: int, sizes_kib: list[int]) -> None:
    """One INSERT (one import) of tasks whose data holds a string of the given sizes."""
    conn.execute(
        "insert into task (data, project_id, inner_id)"
        " select jsonb_build_object('text', repeat('x', s * 1024), 'n', n), %s, n"
        " from unnest(%s::int[]) with ordinality as u(s, n)",
        (project, sizes_kib),
    )


@pytest.fixture
def project7(org: Any) -> Any:
    org.execute("insert into project (id, organization_id) values (7, 1)")
    org.execute("delete from outbox.change")
    return org


async def test_an_import_is_chunked_by_bytes_as_well_as_rows(project7, receiver, start_relay):
    """Item 3: 20 tasks of 1 MiB in one INSERT with a 4 MiB body limit: several POSTs, each under
    the limit, every task exactly once and in order (before: one 20 MiB body, refused)."""
    conn = project7
    lsdb.webhook(conn, receiver.url, project_id=7)
    async with start_relay(max_body_bytes=4 * MiB):
        _big_tasks(conn, 7, [1024] * 20)
        await settled(conn)
    assert {r.action for r in receiver.requests} == {"TASKS_CREATED"}
    assert len(receiver.requests) >= 5
    assert all(len(r.body) <= 4 * MiB for r in receiver.requests)
    numbers = [t["data"]["n"] for r in receiver.requests for t in r.json["tasks"]]
    assert sorted(numbers) == list(range(1, 21)) and len(numbers) == 20
    assert (
        conn.execute("select count(*) from outbox.delivery where state <> 'delivered'").fetchone()["count"]
        == 0
    )


async def test_a_row_over_the_limit_is_dead_alone_and_the_rest_of_the_import_arrives(
    project7, receiver, start_relay
):
    """Item 3: one 6 MiB task among 300 small ones in one INSERT, 4 MiB limit: its chunk alone is
    dead with an error naming it; the 300 others arrive (before: the whole chunk was dead)."""
    conn = project7
    lsdb.webhook(conn, receiver.url, project_id=7)
    sizes = [1] * 150 + [6 * 1024] + [1] * 150
    async with start_relay(max_body_bytes=4 * MiB, webhook_batch_size=5000):
        _big_tasks(conn, 7, sizes)
        await settled(conn)
    numbers = sorted(t["data"]["n"] for r in receiver.requests for t in r.json["tasks"])
    assert numbers == [n for n in range(1, 302) if n != 151]
    dead = conn.execute(
        "select d.state, a.error_class, a.error, a.attempt from outbox.delivery d"
        " join outbox.attempt a on a.delivery_id = d.id where d.state = 'dead'"
    ).fetchall()
    assert len(dead) == 1 and dead[0]["error_class"] == "too_large" and dead[0]["attempt"] == 1
    big = conn.execute("select id from task where (data->>'n')::int = 151").fetchone()["id"]
    assert f"row {big}" in dead[0]["error"] and "OUTBOX_MAX_BODY_BYTES" in dead[0]["error"]


async def test_a_single_row_event_over_the_limit_is_dead_and_never_built(project7, receiver, start_relay):
    """Item 3: an annotation whose task is over the limit: dead with a clear error; the body is
    never built (the payload holds the error, no body), and the next annotation still arrives."""
    conn = project7
    lsdb.webhook(conn, receiver.url, project_id=7)
    _big_tasks(conn, 7, [6 * 1024, 1])
    conn.execute("delete from outbox.change")
    big, small = (r["id"] for r in conn.execute("select id from task order by id").fetchall())
    async with start_relay(max_body_bytes=4 * MiB):
        conn.execute("insert into task_completion (task_id, project_id, result) values (%s, 7, '[]')", (big,))
        conn.execute(
            "insert into task_completion (task_id, project_id, result) values (%s, 7, '[]')", (small,)
        )
        await settled(conn)
    assert [r.json["task"]["id"] for r in receiver.requests] == [small]
    payload = conn.execute("select body, error from outbox.payload p where p.error is not null").fetchone()
    assert payload["body"] is None and "OUTBOX_MAX_BODY_BYTES" in payload["error"]
