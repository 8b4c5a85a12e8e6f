"""The capture triggers on Label Studio's tables (sql/capture.sql), checked in the database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import lsdb


@pytest.fixture
def ls(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    lsdb.project(conn, 2)
    conn.execute("delete from outbox.change")
    return conn


def changes(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "select table_name, op, project_id, organization_id, row_ids, task_ids from outbox.change order by id"
    ).fetchall()
    return [tuple(r.values()) for r in rows]


def test_a_bulk_insert_is_one_row_per_project_holding_ids(ls):
    ls.execute("insert into task (data, project_id) select '{}', 1 + (g % 2) from generate_series(1, 1000) g")
    rows = sorted(changes(ls), key=lambda r: r[2])
    # inserts leave the organization to the relay (no join on Label Studio's hot path)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("task", "INSERT", 1, None),
        ("task", "INSERT", 2, None),
    ]
    assert sorted(rows[0][4] + rows[1][4]) == list(range(1, 1001))
    assert (
        ls.execute("select count(*) from outbox.change where old_rows is not null").fetchone()["count"] == 0
    )


@pytest.mark.parametrize("others", [0, 1, 2], ids=["alone", "with one more", "with two more"])
def test_a_row_alone_is_captured_as_it_is_among_others(ls, others):
    """A statement of one row takes a path of its own (no grouping); what it writes is what the
    general path writes for the same row among others of another project."""
    ls.execute("insert into task (id, data, project_id) values (1, '{}', 1)")
    ls.execute("delete from outbox.change")
    tasks = ["(5, '{}', 1)"] + [f"({100 + n}, '{{}}', 2)" for n in range(others)]
    ls.execute("insert into task (id, data, project_id) values " + ", ".join(tasks))
    # annotations without their project: the trigger reads it from the task
    annotations = ["(20, 1, null)"] + [f"({300 + n}, 1, null)" for n in range(others)]
    ls.execute("insert into task_completion (id, task_id, project_id) values " + ", ".join(annotations))
    rows = changes(ls)
    assert ("task", "INSERT", 1, None, [5], None) in rows
    if others:
        assert ("task", "INSERT", 2, None, [100 + n for n in range(others)], None) in rows
    mine = [r for r in rows if r[0] == "task_completion"]
    assert len(mine) == 1 and mine[0][:4] == ("task_completion", "INSERT", 1, None)
    assert sorted(mine[0][4]) == sorted([20] + [300 + n for n in range(others)])
    assert mine[0][5] == [1] * (1 + others)


def test_a_row_without_a_project_is_captured_by_neither_path(ls):
    ls.execute("insert into task (id, data, project_id) values (1, '{}', null)")
    ls.execute("insert into task (id, data, project_id) values (2, '{}', null), (3, '{}', null)")
    assert changes(ls) == []


def test_changes_of_one_transaction_share_its_id(ls):
    with ls.transaction():
        ls.execute("insert into task (id, data, project_id) values (1, '{}', 1)")
        ls.execute("insert into task_completion (task_id, project_id) values (1, 1)")
        xid = ls.execute("select pg_current_xact_id()::text as xid").fetchone()["xid"]
    assert {r["xid"] for r in ls.execute("select xid::text from outbox.change").fetchall()} == {xid}


def test_annotations_record_their_tasks_and_project(ls):
    ls.execute("insert into task (id, data, project_id) values (1, '{}', 1), (2, '{}', 2)")
    ls.execute("delete from outbox.change")
    ls.execute(
        "insert into task_completion (id, task_id, project_id) values (10, 1, 1), (11, 2, 2), (12, 1, 1)"
    )
    rows = sorted(
        (t, op, project, org, sorted(zip(ids, tasks, strict=True)))
        for t, op, project, org, ids, tasks in changes(ls)
    )
    assert rows == [
        ("task_completion", "INSERT", 1, None, [(10, 1), (12, 1)]),
        ("task_completion", "INSERT", 2, None, [(11, 2)]),
    ]


def test_updates_of_ignored_columns_write_nothing(ls):
    ls.execute("insert into task (id, data, project_id) values (1, '{}', 1)")
    ls.execute("insert into task_completion (id, task_id, project_id, result) values (10, 1, 1, '[]')")
    ls.execute("delete from outbox.change")
    # what Label Studio does on its own after every annotation
    ls.execute(
        "update project set updated_at = now(), model_version = 'v2', parsed_label_config = '{}' where id = 1"
    )
    ls.execute("update task set is_labeled = true, total_annotations = 1, updated_at = now() where id = 1")
    ls.execute("update task_completion set updated_at = now(), updated_by_id = 1 where id = 10")
    ls.execute("update project set title = title where id = 1")  # no change at all
    assert changes(ls) == []
    ls.execute("update project set title = 'renamed' where id = 1")
    ls.execute("update task_completion set result = '[1]' where id = 10")
    assert [(r[0], r[1], r[4]) for r in changes(ls)] == [
        ("project", "UPDATE", [1]),
        ("task_completion", "UPDATE", [10]),
    ]


def test_deletes_keep_the_old_rows(ls):
    ls.execute('insert into task (id, data, project_id) values (1, \'{"text": "a"}\', 1)')
    ls.execute("delete from outbox.change")
    ls.execute("delete from task where id = 1")
    row = ls.execute("select op, project_id, old_rows from outbox.change").fetchone()
    assert row["op"] == "DELETE" and row["project_id"] == 1
    assert row["old_rows"][0]["data"] == {"text": "a"} and row["old_rows"][0]["id"] == 1


def test_data_manager_delete_is_routed_to_the_project_the_tasks_left(ls):
    ls.execute("insert into task (id, data, project_id) values (1, '{}', 1), (2, '{}', 1), (3, '{}', 1)")
    ls.execute("insert into task_completion (id, task_id, project_id) values (10, 1, 1)")
    ls.execute("delete from outbox.change")
    ls.execute("update task set project_id = null where id in (1, 2)")  # transaction 1: detach
    assert changes(ls) == []
    with ls.transaction():  # transaction 2: tasks, then their annotations
        ls.execute("delete from task where id in (1, 2)")
        ls.execute("delete from task_completion where id = 10")
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in changes(ls)] == [
        ("task", "DELETE", 1, 1, [1, 2]),
        ("task_completion", "DELETE", 1, 1, [10]),
    ]
    assert ls.execute("select count(*) from outbox.detached_task").fetchone()["count"] == 0


def test_only_a_detach_to_null_is_recorded_among_task_updates(ls):
    ls.execute("insert into task (id, data, project_id) values (1, '{}', 1)")
    ls.execute("delete from outbox.change")
    # Label Studio's full-row save sets project_id to its own value; moving a task is no event
    ls.execute("update task set total_annotations = 2, project_id = 1 where id = 1")
    ls.execute("update task set project_id = 2 where id = 1")
    assert ls.execute("select count(*) from outbox.detached_task").fetchone()["count"] == 0
    ls.execute("update task set project_id = null where id = 1")
    assert ls.execute("select task_id, project_id from outbox.detached_task").fetchall() == [
        {"task_id": 1, "project_id": 2}
    ]
    assert changes(ls) == []


def test_no_notify_while_no_relay_waits_then_one_per_transaction(ls, database_url):
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("listen outbox")
        ls.execute("insert into task (data, project_id) values ('{}', 1)")
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []

        relay_id = "00000000-0000-0000-0000-000000000001"
        ls.execute(
            "insert into outbox.relay (id, hostname, pid, version, waiting) values (%s, 'h', 1, 't', true)",
            (relay_id,),
        )
        with ls.transaction():
            ls.execute("insert into task (data, project_id) values ('{}', 1)")
            ls.execute("insert into task (data, project_id) values ('{}', 2)")
        got = list(listener.notifies(timeout=1, stop_after=5))
        assert [(n.channel, n.payload) for n in got[:1]] == [("outbox", "")]
        assert len(got) == 1  # folded into one per transaction

        # a relay that stopped heart-beating no longer makes writers pay for NOTIFY
        ls.execute("update outbox.relay set heartbeat_at = now() - interval '2 minutes'")
        ls.execute("insert into task (data, project_id) values ('{}', 1)")
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []


def test_capture_never_changes_the_applications_rows(ls):
    ls.execute("insert into task (id, data, project_id) values (1, '{\"a\": 1}', 1)")
    row = ls.execute("select data, project_id, updated_at from task where id = 1").fetchone()
    ls.execute("update task set data = '{\"a\": 2}' where id = 1")
    after = ls.execute("select data, project_id from task where id = 1").fetchone()
    assert after == {"data": {"a": 2}, "project_id": row["project_id"]}
