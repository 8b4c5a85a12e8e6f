"""6. Memory: the relay's peak RSS while it delivers one import of 100,000 tasks.

One INSERT of 100,000 tasks is one TASKS_CREATED event, split into POSTs of WEBHOOK_BATCH_SIZE
(default 5,000) tasks. ``outbox relay`` runs as a child process; its peak resident set is the
kernel's high-water mark (VmHWM in /proc/<pid>/status), read when every chunk is delivered, next to
its RSS when idle before the import.
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

IMPORT = """
insert into public.task (data, project_id, inner_id, meta, overlap)
select jsonb_build_object(
           'text', 'Imported task ' || g || ': a sentence to label, about eighty characters long.',
           'image', 's3://bench/images/' || lpad(g::text, 8, '0') || '.jpg',
           'meta_info', jsonb_build_object('batch', g / 1000)),
       1, g, '{}'::jsonb, 1
from generate_series(1, %(tasks)s) g
"""


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
    result.details = {"runs": runs, "batch_size": batch_size or 5000, "orjson": orjson.__version__}
    return result
