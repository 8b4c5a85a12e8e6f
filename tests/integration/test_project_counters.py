"""The project counters in payloads, counted per payload unless counting is slow (relay/counters.py).

Counting goes through every task and annotation of the project: 460 ms for 270,000 of each, for
every payload, held the relay's pipeline (and so every webhook it serves) at two events a second.
A slow count is now reused for a while. These tests make every count "slow" or none, by the
module's constants, and check what a receiver sees."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from relay import build, counters, payloads
from tests.support import lsdb

pytestmark = pytest.mark.anyio


def _seeded(conn: Any, receiver: Any) -> None:
    lsdb.organization(conn)
    lsdb.project(conn)
    conn.execute("insert into task (data, project_id) select '{}', 1 from generate_series(1, 3)")
    conn.execute("delete from outbox.change")  # the seeding is not what these tests are about
    lsdb.webhook(conn, receiver.url, project_id=1, actions=["TASKS_CREATED"], send_for_all_actions=False)


def _add_task(conn: Any) -> None:
    conn.execute("insert into task (data, project_id) values ('{}', 1)")


async def test_quick_counts_are_counted_for_every_payload(conn, receiver, start_relay):
    _seeded(conn, receiver)
    async with start_relay(settle_ms=0):
        for expected in (4, 5, 6):
            _add_task(conn)
            received = await receiver.wait_for(expected - 3)
            assert received[-1].json["project"]["task_number"] == expected


async def test_a_slow_count_is_reused_until_its_time_is_up_and_the_row_itself_is_fresh(
    conn, receiver, start_relay, monkeypatch
):
    _seeded(conn, receiver)
    monkeypatch.setattr(counters, "SLOW_COUNT", 0.0)  # every count is slow
    monkeypatch.setattr(counters, "REUSE_FACTOR", 1e9)
    monkeypatch.setattr(counters, "REUSE_MAX", 3600.0)
    async with start_relay(settle_ms=0):
        _add_task(conn)
        first = (await receiver.wait_for(1))[-1].json["project"]
        assert first["task_number"] == 4
        conn.execute("update project set title = 'renamed' where id = 1")
        _add_task(conn)
        second = (await receiver.wait_for(2))[-1].json["project"]
        # the counters of the first count; the project's own columns as they are now
        assert second["task_number"] == 4
        assert second["title"] == "renamed"
        monkeypatch.setattr(counters, "REUSE_MAX", 0.0)  # time is up
        _add_task(conn)
        third = (await receiver.wait_for(3))[-1].json["project"]
        assert third["task_number"] == 6


async def test_a_project_deleted_while_its_counters_are_kept_is_not_brought_back(
    conn, database_url, monkeypatch
):
    """The cache only adds counters to the project rows read now."""
    lsdb.organization(conn)
    lsdb.project(conn)
    monkeypatch.setattr(counters, "SLOW_COUNT", 0.0)
    monkeypatch.setattr(counters, "REUSE_MAX", 3600.0)
    cache = counters.CounterCache()
    wanted = [payloads.Needs(projects=frozenset({1}))]
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as db:
        snapshot = await build.fetch_snapshot(db, wanted, cache)
        assert snapshot.projects[1]["task_number"] == 0 and len(cache) == 1
        conn.execute("delete from project where id = 1")
        snapshot = await build.fetch_snapshot(db, wanted, cache)
        assert snapshot.projects == {}


async def test_each_project_is_timed_by_its_own_count(conn, database_url):
    """Counted in one statement, a small project counted after a large one took the large one's
    time too, and so was reused as if it were slow: each is now counted, and timed, alone."""
    lsdb.organization(conn)
    for project_id in range(1, 301):
        lsdb.project(conn, project_id)
    # one large project among many small ones: the planner counts a project by its indexes
    conn.execute("insert into task (data, project_id) select '{}', 1 from generate_series(1, 30000)")
    conn.execute("insert into task (data, project_id) select '{}', p from generate_series(3, 300) p")
    conn.execute("vacuum analyze task")

    class Recording(counters.CounterCache):
        def __init__(self) -> None:
            super().__init__()
            self.took: dict[int, float] = {}

        def add(self, project_id: int, values: Any, *, at: float, took: float) -> None:
            self.took[project_id] = took
            super().add(project_id, values, at=at, took=took)

    cache = Recording()
    wanted = [payloads.Needs(projects=frozenset({1, 2}))]
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as db:
        snapshot = await build.fetch_snapshot(db, wanted, cache)
    assert snapshot.projects[1]["task_number"] == 30000 and snapshot.projects[2]["task_number"] == 0
    assert cache.took[2] < cache.took[1] / 2, cache.took
