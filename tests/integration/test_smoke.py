import pytest

pytestmark = pytest.mark.anyio


async def test_task_import_reaches_receiver(conn, receiver, start_relay):
    conn.execute("insert into organization (id, title) values (1, 'org')")
    conn.execute("insert into project (id, title, organization_id) values (1, 'p', 1)")
    conn.execute(
        "insert into outbox.webhook (organization_id, project_id, url) values (1, 1, %s)",
        (receiver.url + "/hook",),
    )
    async with start_relay():
        conn.execute(
            "insert into task (data, project_id) select jsonb_build_object('n', g), 1 from generate_series(1, 3) g"
        )
        requests = await receiver.wait_for(1)
    body = requests[0].json
    assert body["action"] == "TASKS_CREATED"
    assert [t["id"] for t in body["tasks"]] == [1, 2, 3]
