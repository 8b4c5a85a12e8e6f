"""2. Bulk import: one INSERT of 10,000 tasks, as Label Studio's import sends it.

The rows travel as parameters (``unnest`` of arrays), as a client sends them, so that the baseline
is an import's real cost and not only the server generating rows. Timed from the statement to its
commit, alternately without triggers (``outbox uninstall``) and with them, on the same database;
each figure is the ratio of one adjacent pair.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg

from bench import harness
from bench.harness import Context, MeasureResult

NAME = "bulk_import"

IMPORT = f"""
insert into public.task (data, project_id, inner_id, meta{harness.TASK_COLUMNS})
select d, 1, i, '{{}}'::jsonb{harness.TASK_VALUES}
from unnest(%(data)s::jsonb[], %(inner_ids)s::bigint[]) as u(d, i)
"""


def _rows(count: int) -> dict[str, Any]:
    data = [
        orjson.dumps(
            {"text": f"Imported task {n}: a sentence to label, about eighty characters long.",
             "image": f"s3://bench/images/{n:08d}.jpg", "meta_info": {"batch": n // 1000}}
        ).decode()
        for n in range(count)
    ]  # fmt: skip
    return {"data": data, "inner_ids": list(range(1, count + 1))}


def _time_import(conn: psycopg.Connection[Any], rows: dict[str, Any]) -> float:
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(IMPORT, rows)
    return time.perf_counter() - started


def run(ctx: Context) -> MeasureResult:
    srv = ctx.server
    result = MeasureResult(NAME)
    tasks = 1000 if ctx.quick else 10_000
    pairs = ctx.repeat * (1 if ctx.quick else 3)
    rows = _rows(tasks)
    without: list[float] = []
    with_triggers: list[float] = []
    database = srv.create_database(ctx.templates.installed)
    try:
        with psycopg.connect(srv.url(database), autocommit=True) as conn:
            # one untimed import each way: caches, plans
            for install in (harness.uninstall, harness.install):
                install(conn)
                _time_import(conn, rows)
            for pair in range(pairs):
                # alternate which goes first, so that a drift favours neither
                order = ("none", "outbox") if pair % 2 == 0 else ("outbox", "none")
                for config in order:
                    if config == "none":
                        harness.uninstall(conn)
                        without.append(_time_import(conn, rows))
                    else:
                        harness.install(conn)
                        with_triggers.append(_time_import(conn, rows))
            changes = conn.execute("select count(*), sum(cardinality(row_ids)) from outbox.change")
            change_rows = changes.fetchone()
    finally:
        srv.drop_database(database)
    result.figure(f"INSERT of {tasks:,} tasks, no triggers", "s").samples = without
    result.figure(f"INSERT of {tasks:,} tasks, outbox triggers", "s").samples = with_triggers
    result.figure(f"INSERT of {tasks:,} tasks: triggers ÷ none", "ratio", target="<= 1.3").samples = [
        w / n for w, n in zip(with_triggers, without, strict=True)
    ]
    result.details = {
        "tasks": tasks,
        "pairs": pairs,
        "outbox_change_rows_per_import": 1,
        "outbox_change_rows": change_rows[0] if change_rows else None,
    }
    return result
