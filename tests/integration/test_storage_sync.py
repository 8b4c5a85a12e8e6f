"""Storage syncs arrive as Label Studio sends them (issue 10 §1): a sync of N files is one
TASKS_CREATED, chunked by WEBHOOK_BATCH_SIZE, although Label Studio creates each synced task in a
transaction of its own (the task, then its row in the storage's link table) and only updates the
storage row (last_sync, last_sync_count, status) when the sync ends.

The writes below are Label Studio 1.23.2's, statement for statement: the status set to
in_progress, one transaction per file, then the storage row's final update."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import lsdb

pytestmark = pytest.mark.anyio

LINKS = {
    "io_storages_localfilesimportstorage": ("io_storages_localfilesimportstoragelink", "localfilesmixin_ptr_id"),
    "io_storages_s3importstorage": ("io_storages_s3importstoragelink", "id"),
    "io_storages_gcsimportstorage": ("io_storages_gcsimportstoragelink", "gcsstoragemixin_ptr_id"),
    "io_storages_azureblobimportstorage": ("io_storages_azureblobimportstoragelink", "azureblobstoragemixin_ptr_id"),
    "io_storages_redisimportstorage": ("io_storages_redisimportstoragelink", "redisstoragemixin_ptr_id"),
}  # fmt: skip


def storage(conn: Any, table: str = "io_storages_localfilesimportstorage", project: int = 1) -> int:
    key = LINKS[table][1]
    row = conn.execute(
        f"insert into {table} (project_id, title) values (%s, 's') returning {key} as id", (project,)
    ).fetchone()
    return int(row["id"])


def start_sync(conn: Any, table: str, storage_id: int) -> None:
    key = LINKS[table][1]
    conn.execute(f"update {table} set status = 'queued' where {key} = %s", (storage_id,))
    conn.execute(f"update {table} set status = 'in_progress' where {key} = %s", (storage_id,))


def sync_file(conn: Any, table: str, storage_id: int, n: int, project: int = 1) -> int:
    """One synced file, as Label Studio writes it: its own transaction, task then link."""
    with conn.transaction():
        task = conn.execute(
            "insert into task (data, project_id) values (jsonb_build_object('n', %s::int), %s) returning id",
            (n, project),
        ).fetchone()["id"]
        conn.execute(
            f"insert into {LINKS[table][0]} (key, object_exists, task_id, storage_id) values (%s, true, %s, %s)",
            (f"file{n}.json", task, storage_id),
        )
    return int(task)


def end_sync(conn: Any, table: str, storage_id: int, count: int) -> None:
    key = LINKS[table][1]
    conn.execute(
        f"update {table} set last_sync = now(), last_sync_count = %s, status = 'completed',"
        " meta = '{\"tasks_existed\": 0}' where " + key + " = %s",
        (count, storage_id),
    )


def ids(request: Any) -> list[int]:
    return [t["id"] for t in request.json["tasks"]]


@pytest.mark.parametrize("table", sorted(LINKS))
async def test_a_sync_of_four_files_is_one_tasks_created(conn, receiver, start_relay, table):
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url, project_id=1)
    storage_id = storage(conn, table)
    async with start_relay():
        start_sync(conn, table, storage_id)
        tasks = [sync_file(conn, table, storage_id, n) for n in range(4)]
        conn.execute("insert into task (data, project_id) values ('{}', 1)")  # an upload meanwhile
        upload = await receiver.wait_for(1)
        assert ids(upload[0]) == [tasks[-1] + 1]  # not held behind the sync
        end_sync(conn, table, storage_id, 4)
        requests = await receiver.wait_for(2)
    assert [r.action for r in requests] == ["TASKS_CREATED", "TASKS_CREATED"]
    assert ids(requests[1]) == tasks
    assert requests[1].json["project"]["task_number"] == 5


async def test_a_large_sync_is_chunked_by_webhook_batch_size(conn, receiver, start_relay):
    table = "io_storages_s3importstorage"
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url)
    storage_id = storage(conn, table)
    async with start_relay(webhook_batch_size=3):
        start_sync(conn, table, storage_id)
        tasks = [sync_file(conn, table, storage_id, n) for n in range(7)]
        end_sync(conn, table, storage_id, 7)
        requests = await receiver.wait_for(3)
    assert [ids(r) for r in requests] == [tasks[0:3], tasks[3:6], tasks[6:7]]


async def test_two_storages_syncing_at_once_are_two_events(conn, receiver, start_relay):
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url)
    local, s3 = "io_storages_localfilesimportstorage", "io_storages_s3importstorage"
    a, b = storage(conn, local), storage(conn, s3)
    async with start_relay():
        start_sync(conn, local, a)
        start_sync(conn, s3, b)
        first = [sync_file(conn, local, a, 0), sync_file(conn, local, a, 1)]
        second = [sync_file(conn, s3, b, 2)]
        first.append(sync_file(conn, local, a, 3))
        end_sync(conn, s3, b, 1)
        got = await receiver.wait_for(1)
        assert ids(got[0]) == second
        end_sync(conn, local, a, 3)
        requests = await receiver.wait_for(2)
    assert ids(requests[1]) == first


async def test_the_next_sync_of_the_same_storage_is_an_event_of_its_own(conn, receiver, start_relay):
    """Both syncs are routed at once (the relay starts after both): the end of the first still
    separates them."""
    table = "io_storages_localfilesimportstorage"
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url, ordered=True)  # both go out in one claim: in commit order
    storage_id = storage(conn, table)
    start_sync(conn, table, storage_id)
    first = [sync_file(conn, table, storage_id, n) for n in range(2)]
    end_sync(conn, table, storage_id, 2)
    start_sync(conn, table, storage_id)
    second = [sync_file(conn, table, storage_id, n) for n in range(2, 5)]
    end_sync(conn, table, storage_id, 3)
    async with start_relay():
        requests = await receiver.wait_for(2)
    assert [ids(r) for r in requests] == [first, second]


async def test_a_sync_that_died_half_way_is_sent_after_a_minute_without_progress(conn, receiver, start_relay):
    table = "io_storages_localfilesimportstorage"
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url)
    storage_id = storage(conn, table)
    async with start_relay():
        start_sync(conn, table, storage_id)
        tasks = [sync_file(conn, table, storage_id, n) for n in range(3)]
        conn.execute("insert into task (data, project_id) values ('{}', 1)")
        await receiver.wait_for(1)  # routed past the sync: its tasks are held
        assert (
            conn.execute("select count(*) as n from outbox.change where storage is not null").fetchone()["n"]
            == 3
        )
        # a minute passes, for the webhook too (it existed before the sync)
        conn.execute("update outbox.change set captured_at = captured_at - interval '61 seconds'")
        conn.execute("update outbox.webhook set created_at = created_at - interval '61 seconds'")
        requests = await receiver.wait_for(2)
    assert ids(requests[1]) == tasks


async def test_an_endless_sync_is_sent_ten_minutes_after_it_began(conn, receiver, start_relay):
    table = "io_storages_localfilesimportstorage"
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url)
    storage_id = storage(conn, table)
    conn.execute("delete from outbox.change")  # the seeding (PROJECT_CREATED) is not under test
    conn.execute("update outbox.webhook set created_at = created_at - interval '11 minutes'")
    start_sync(conn, table, storage_id)
    early = sync_file(conn, table, storage_id, 0)
    conn.execute("update outbox.change set captured_at = captured_at - interval '10 minutes 1 second'")
    late = sync_file(conn, table, storage_id, 1)  # still progressing: never a minute idle
    async with start_relay():
        requests = await receiver.wait_for(1)
    assert ids(requests[0]) == [early, late]


async def test_a_synced_task_deleted_before_routing_and_annotations_imported_with_it_are_silent(
    conn, receiver, start_relay
):
    table = "io_storages_localfilesimportstorage"
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.webhook(conn, receiver.url)
    storage_id = storage(conn, table)
    start_sync(conn, table, storage_id)
    keep = sync_file(conn, table, storage_id, 0)
    with conn.transaction():  # a file with an annotation: task, annotation, link
        gone = conn.execute("insert into task (data, project_id) values ('{}', 1) returning id").fetchone()[
            "id"
        ]
        conn.execute(
            "insert into task_completion (task_id, project_id, result) values (%s, 1, '[]')", (gone,)
        )
        conn.execute(
            f"insert into {LINKS[table][0]} (key, object_exists, task_id, storage_id) values ('x', true, %s, %s)",
            (gone, storage_id),
        )
    end_sync(conn, table, storage_id, 2)
    async with start_relay():
        requests = await receiver.wait_for(1)
    assert ids(requests[0]) == [keep, gone]
    assert conn.execute("select count(*) as n from outbox.change").fetchone()["n"] == 0


async def test_a_sync_on_label_studios_real_tables(fresh_database, receiver, start_relay):
    """The real DDL (tests/data/label-studio-1.23.2-schema.sql): the storage keyed by its mixin's
    id, every NOT NULL column given as Label Studio's models give them, foreign keys enforced."""
    from datetime import UTC, datetime

    from outbox import db, migrations
    from tests.support import ls_schema

    url = fresh_database("template0")
    with db.connect_sync(url, autocommit=True) as conn:
        ls_schema.create_real_schema(conn)
        migrations.migrate(conn)
        ls_schema.organization(conn, 1)
        ls_schema.project(conn, 1)
        conn.execute(
            "insert into io_storages_localfilesmixin (id, path, use_blob_urls) values (1, '/data', false)"
        )
        conn.execute(
            "insert into io_storages_localfilesimportstorage (localfilesmixin_ptr_id, created_at, project_id,"
            " status, synchronizable) values (1, now(), 1, 'initialized', true)"
        )
        conn.execute("delete from outbox.change")
        lsdb.webhook(conn, receiver.url, project_id=1)
        async with start_relay(url):
            conn.execute("update io_storages_localfilesimportstorage set status = 'in_progress'")
            for n in (11, 12, 13):
                with conn.transaction():
                    ls_schema.task(conn, n)
                    conn.execute(
                        "insert into io_storages_localfilesimportstoragelink"
                        " (key, object_exists, created_at, task_id, storage_id) values (%s, true, %s, %s, 1)",
                        (f"f{n}.json", datetime.now(UTC), n),
                    )
            conn.execute(
                "update io_storages_localfilesimportstorage set last_sync = now(), last_sync_count = 3,"
                " status = 'completed'"
            )
            requests = await receiver.wait_for(1)
    assert [t["id"] for t in requests[0].json["tasks"]] == [11, 12, 13]
