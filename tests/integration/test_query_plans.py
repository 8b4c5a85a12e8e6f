"""The relay's reads of Label Studio's tables go by index, however large those tables are.

A Label Studio with a million tasks is ordinary; a statement that reads the whole task table
costs seconds there. Two did, for every payload: the settle check (`claim_payloads`, every 5 ms
while a payload settles) and the task read of a build (`fetch_tasks`), because an OR, or a CASE,
around `t.id in (select ...)` cannot use an index. The plans are asserted on a table large
enough that the planner would never prefer reading it whole.
"""

from __future__ import annotations

from typing import Any

import pytest

from outbox.sql import query
from tests.support import lsdb

TASKS = 20_000


@pytest.fixture
def many_tasks(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    conn.execute("insert into project (id, organization_id) values (1, 1)")
    conn.execute(
        "insert into task (data, project_id, inner_id)"
        " select jsonb_build_object('text', 't' || g), 1, g from generate_series(1, %s) g",
        (TASKS,),
    )
    conn.execute(
        "insert into task_completion (task_id, project_id, result)"
        " select id, 1, '[]'::jsonb from task where id % 100 = 0"
    )
    conn.execute("delete from outbox.change")
    conn.execute("analyze task")
    conn.execute("analyze task_completion")
    return conn


def _scans(conn: Any, statement: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every scan in the plan PostgreSQL chooses."""
    [row] = conn.execute("explain (format json) " + statement, params).fetchall()
    found: list[tuple[str, str]] = []

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.append((node["Node Type"], node["Relation Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(row["QUERY PLAN"][0]["Plan"])
    return found


def _reads_whole(scans: list[tuple[str, str]], table: str) -> bool:
    return ("Seq Scan", table) in scans


def test_a_build_reads_its_tasks_by_index(many_tasks):
    conn = many_tasks
    [annotation] = conn.execute("select id from task_completion order by id limit 1").fetchall()
    for params in (
        {"ids": list(range(100, 1100)), "annotation_ids": []},  # TASKS_CREATED of an import
        {"ids": [], "annotation_ids": [annotation["id"]]},  # an annotation event's task
        {"ids": [5], "annotation_ids": [annotation["id"]]},
    ):
        scans = _scans(conn, query("fetch_tasks"), params)
        assert not _reads_whole(scans, "task"), scans
        assert ("Index Scan", "task") in scans, scans
    found = conn.execute(query("fetch_tasks"), {"ids": [5], "annotation_ids": [annotation["id"]]}).fetchall()
    assert sorted(r["id"] for r in found) == sorted({5, 100})


@pytest.mark.parametrize("action", ["TASKS_CREATED", "ANNOTATION_CREATED"])
def test_the_settle_check_reads_only_the_payloads_tasks_and_still_decides(many_tasks, action):
    conn = many_tasks
    annotated = conn.execute("select id, task_id from task_completion order by id limit 3").fetchall()
    tasks = [r["task_id"] for r in annotated]
    rows = tasks if action == "TASKS_CREATED" else [r["id"] for r in annotated]
    conn.execute(
        "insert into outbox.event (action, organization_id, project_id, row_ids, chunk_size)"
        " values (%s, 1, 1, %s, 100)",
        (action, rows),
    )
    conn.execute(
        "insert into outbox.payload (event_id, chunk, ready_at, row_start, row_end)"
        " select id, 0, now() + interval '1 hour', 0, 3 from outbox.event"
    )
    params = {"large": 1 << 20, "limit": 50}
    scans = _scans(conn, query("claim_payloads"), params)
    assert not _reads_whole(scans, "task"), scans
    # the tasks' counters do not count their annotations yet: not settled, not due before the delay
    assert conn.execute(query("claim_payloads"), params).fetchall() == []
    # Label Studio's follow-up update, written after the annotations: settled, due at once
    conn.execute(
        "update task set total_annotations = 1, is_labeled = true, updated_at = now() + interval '1 second'"
        " where id = any(%s)",
        (tasks,),
    )
    assert len(conn.execute(query("claim_payloads"), params).fetchall()) == 1
