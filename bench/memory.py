"""6. Memory: the relay's peak RSS while it delivers one import of 100,000 tasks, and one of
20 tasks of 10 MB each (200 MB in one INSERT).

One INSERT of 100,000 tasks is one TASKS_CREATED event, split into POSTs of WEBHOOK_BATCH_SIZE
(default 5,000) tasks; the 200 MB import is split by OUTBOX_MAX_BODY_BYTES (16 MiB) instead, one
task per POST. ``outbox relay`` runs as a child process; its peak resident set is the kernel's
high-water mark (VmHWM in /proc/<pid>/status), read when every chunk is delivered, next to its RSS
when idle before the import. For the large import, a project created right after it must not wait
for the import's bodies: the time it takes to arrive is reported too.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg

from bench import harness
from bench.harness import Context, MeasureResult, RelayProcess

NAME = "memory"
MB = 1024 * 1024

IMPORT = f"""
insert into public.task (data, project_id, inner_id, meta{harness.TASK_COLUMNS})
select jsonb_build_object(
           'text', 'Imported task ' || g || ': a sentence to label, about eighty characters long.',
           'image', 's3://bench/images/' || lpad(g::text, 8, '0') || '.jpg',
           'meta_info', jsonb_build_object('batch', g / 1000)),
       1, g, '{{}}'::jsonb{harness.TASK_VALUES}
from generate_series(1, %(tasks)s) g
"""


# Tasks whose text is ``%(kib)s`` KiB of hex digits (incompressible enough to be stored as large).
LARGE_IMPORT = f"""
insert into public.task (data, project_id, inner_id{harness.TASK_COLUMNS})
select jsonb_build_object('text', (select string_agg(md5(g::text || i::text), '')
                                   from generate_series(1, %(kib)s * 32) i)), 1, g{harness.TASK_VALUES}
from generate_series(1, %(tasks)s) g
"""


# An annotation made right after the large import, on a task that was there before it.
AFTER_IMPORT = f"""
insert into public.task_completion (task_id, project_id, result{harness.ANNOTATION_COLUMNS})
select min(id), 1, '[]'{harness.ANNOTATION_VALUES} from public.task where project_id = 1
"""
ANNOTATION_DELIVERED = """
select count(*) from outbox.delivery d join outbox.event e on e.id = d.event_id
where e.action = 'ANNOTATION_CREATED' and d.state = 'delivered'
"""

# Everything routed, every delivery finished, the import among them.
SETTLED = """
select not exists (select 1 from outbox.change)
   and not exists (select 1 from outbox.delivery where state = 'pending')
   and exists (select 1 from outbox.delivery d join outbox.event e on e.id = d.event_id
               where e.action = 'TASKS_CREATED')
"""


def large_run(ctx: Context, tasks: int, kib: int) -> dict[str, Any]:
    srv, receiver = ctx.server, ctx.receiver
    database = srv.create_database(ctx.templates.installed)
    try:
        with psycopg.connect(srv.url(database), autocommit=True) as conn:
            harness.add_webhook(conn, receiver.url + "/import")
            relay = RelayProcess(srv.url(database), settle_ms=0, profile=ctx.profile("memory-large"))
            with relay:
                relay.wait_waiting(conn)
                receiver.reset()
                idle = relay.rss()
                started = time.monotonic()
                conn.execute(LARGE_IMPORT, {"tasks": tasks, "kib": kib})
                committed = time.monotonic()
                conn.execute(AFTER_IMPORT)
                after_import = harness.wait_until(
                    lambda: conn.execute(ANNOTATION_DELIVERED).fetchone()[0],
                    timeout=300,
                    interval=0.05,
                    what="the annotation made after the import delivered",
                )
                finished = harness.wait_until(
                    lambda: conn.execute(SETTLED).fetchone()[0],
                    timeout=300,
                    interval=0.05,
                    what="every chunk of the import delivered",
                )
                peak = relay.peak_rss()
            largest = conn.execute("select max(length(body)) from outbox.payload").fetchone()
    finally:
        srv.drop_database(database)
    return {
        "tasks": tasks,
        "task_kib": kib,
        "idle_rss_mb": idle / MB,
        "peak_rss_mb": peak / MB,
        "import_seconds": committed - started,
        "deliver_seconds": finished - committed,
        "next_event_seconds": after_import - committed,
        "largest_body_bytes": int((largest or (0,))[0] or 0),
    }


def one_run(ctx: Context, tasks: int, batch_size: int | None) -> dict[str, Any]:
    srv, receiver = ctx.server, ctx.receiver
    chunks = -(-tasks // (batch_size or 5000))
    database = srv.create_database(ctx.templates.installed)
    try:
        with psycopg.connect(srv.url(database), autocommit=True) as conn:
            harness.add_webhook(conn, receiver.url + "/import")
            relay = RelayProcess(
                srv.url(database), settle_ms=0, batch_size=batch_size, profile=ctx.profile("memory")
            )
            with relay:
                relay.wait_waiting(conn)
                receiver.reset()
                idle = relay.rss()
                started = time.monotonic()
                conn.execute(IMPORT, {"tasks": tasks})
                committed = time.monotonic()
                finished = harness.wait_until(
                    lambda: harness.delivered(conn) >= chunks,
                    timeout=300,
                    interval=0.05,
                    what=f"{chunks} chunks delivered",
                )
                peak = relay.peak_rss()
                after = relay.rss()
            stats = receiver.stats()
            sizes = conn.execute("select sum(length(body)), max(length(body)) from outbox.payload")
            total, largest = sizes.fetchone() or (0, 0)
    finally:
        srv.drop_database(database)
    return {
        "tasks": tasks,
        "chunks": chunks,
        "received": stats["count"],
        "idle_rss_mb": idle / MB,
        "peak_rss_mb": peak / MB,
        "rss_after_mb": after / MB,
        "import_seconds": committed - started,
        "deliver_seconds": finished - committed,
        "payload_bytes_total": int(total or 0),
        "largest_body_bytes": int(largest or 0),
    }


def run(ctx: Context) -> MeasureResult:
    result = MeasureResult(NAME)
    tasks, batch_size = (2000, 500) if ctx.quick else (100_000, None)
    runs = [one_run(ctx, tasks, batch_size) for _ in range(ctx.repeat)]
    result.figure(f"relay peak RSS, {tasks:,}-task import", "MB", target="<= 200").samples = [
        r["peak_rss_mb"] for r in runs
    ]
    result.figure("relay RSS idle, before the import", "MB").samples = [r["idle_rss_mb"] for r in runs]
    result.figure(f"{tasks:,}-task import: commit → all chunks delivered", "s").samples = [
        r["deliver_seconds"] for r in runs
    ]
    large_tasks, kib = (3, 1024) if ctx.quick else (20, 10 * 1024)
    large = [large_run(ctx, large_tasks, kib) for _ in range(ctx.repeat)]
    label = f"{large_tasks} × {kib // 1024} MB import"
    result.figure(f"relay peak RSS, {label}", "MB", target="<= 500").samples = [
        r["peak_rss_mb"] for r in large
    ]
    result.figure(f"{label}: an annotation made after it, commit → delivered", "s").samples = [
        r["next_event_seconds"] for r in large
    ]
    result.details = {
        "runs": runs,
        "large_runs": large,
        "batch_size": batch_size or 5000,
        "orjson": orjson.__version__,
    }
    return result
