"""4. Latency: commit → arrival at the receiver, at a steady 200 events/s.

A driver commits one single-row task INSERT at a time on a fixed schedule (200/s) and notes
``time.monotonic()`` right after COMMIT returns; the receiver (its own process) notes the arrival
with the same system-wide clock (CLOCK_MONOTONIC on Linux). Each arrival is matched to its row
through its ``webhook-id`` (outbox.delivery.message_id → the event's row). The relay runs as
deployed (``outbox relay``), with ``OUTBOX_SETTLE_MS=0`` and with the default settle delay.

A third run follows Label Studio's annotation path (25/s): the annotation's INSERT, then, FOLLOW_UP
later, its task's counters in a transaction of their own; the payload must show them. With the
default settle delay, the time from the annotation's commit to its arrival is what a receiver of
Label Studio's ``ANNOTATION_CREATED`` waits.

A fourth run commits into a large project (LARGE_TASKS tasks with as many annotations), 20 events
a second: counting its eight counters takes hundreds of milliseconds, measured in the same run
(the baseline); a slow count is reused for a while (relay/counters.py), so an event should not wait
for one.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg

from bench import harness
from bench.harness import TASK_DATA, Context, MeasureResult, RelayProcess

NAME = "latency"
RATE = 200.0
WARMUP = 20
INSERT = (
    f"insert into public.task (data, project_id, meta{harness.TASK_COLUMNS}) "
    f"values (%s::jsonb, 1, '{{}}'::jsonb{harness.TASK_VALUES}) returning id"
)
ANNOTATION_RATE = 25.0
FOLLOW_UP = 0.020  # Label Studio's counter update lands 10-50 ms after the annotation
ANNOTATE = (
    "insert into public.task_completion (result, task_id, project_id, completed_by_id, lead_time,"
    f" last_action{harness.ANNOTATION_COLUMNS}) values (%s::jsonb, %s, 1, 1, 4.2, 'submitted'"
    f"{harness.ANNOTATION_VALUES}) returning id"
)
LARGE_TASKS = 200_000
LARGE_RATE = 20.0
SEED_LARGE = (
    f"insert into public.task (data, project_id, meta{harness.TASK_COLUMNS}) "
    f"select jsonb_build_object('text', 'seed ' || g), 1, '{{}}'::jsonb{harness.TASK_VALUES} "
    "from generate_series(1, %(tasks)s) g",
    "insert into public.task_completion (result, task_id, project_id, completed_by_id, lead_time,"
    f" last_action{harness.ANNOTATION_COLUMNS}) select '[]'::jsonb, t.id, 1, 1, 4.2, 'submitted'"
    f"{harness.ANNOTATION_VALUES} from public.task t",
    "delete from outbox.change",  # the seeding is not what is measured
    "vacuum analyze",
)
COUNT_ANNOTATIONS = (
    "update public.task set total_annotations = total_annotations + 1, is_labeled = true,"
    " updated_at = now() where id = %s"
)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _drive(conn: psycopg.Connection[Any], count: int, rate: float = RATE) -> dict[int, float]:
    """Commit ``count`` single-row transactions at ``rate`` per second; task id → commit time."""
    committed: dict[int, float] = {}
    start = time.monotonic()
    for n in range(count):
        due = start + n / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        row = conn.execute(INSERT, (TASK_DATA,)).fetchone()
        committed[int(row[0]) if row else -1] = time.monotonic()
    return committed


def _annotate(conn: psycopg.Connection[Any], count: int) -> dict[int, float]:
    """Label Studio's annotation path at ANNOTATION_RATE: annotation id → its commit time."""
    committed: dict[int, float] = {}
    tasks = [int(r[0]) for r in conn.execute("select id from public.task order by id limit %s", (count,))]
    start = time.monotonic()
    for n, task in enumerate(tasks):
        pause = start + n / ANNOTATION_RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        row = conn.execute(ANNOTATE, (harness.ANNOTATION_RESULT, task)).fetchone()
        committed[int(row[0]) if row else -1] = time.monotonic()
        time.sleep(FOLLOW_UP)  # what Label Studio takes to update the counters, not a wait for us
        conn.execute(COUNT_ANNOTATIONS, (task,))
    return committed


def _count_ms(conn: psycopg.Connection[Any]) -> float:
    """What counting project 1's counters takes, once (the statement relay/build.py runs)."""
    from outbox.sql import query

    started = time.monotonic()
    conn.execute(query("count_projects"), {"ids": [1]}).fetchall()
    return (time.monotonic() - started) * 1000


def one_run(
    ctx: Context,
    settle_ms: int | None,
    seconds: float,
    *,
    annotations: bool = False,
    large: int = 0,
) -> dict[str, Any]:
    srv, receiver = ctx.server, ctx.receiver
    database = srv.create_database(ctx.templates.installed)
    try:
        with psycopg.connect(srv.url(database), autocommit=True) as conn:
            action = "ANNOTATION_CREATED" if annotations else None
            count_ms = None
            if large:
                for statement in SEED_LARGE:
                    conn.execute(statement, {"tasks": large} if "%(tasks)s" in statement else None)
                count_ms = _count_ms(conn)
            harness.add_webhook(conn, receiver.url + "/latency", actions=action)
            label = f"latency-settle-{settle_ms if settle_ms is not None else 'default'}"
            with RelayProcess(srv.url(database), settle_ms=settle_ms, profile=ctx.profile(label)) as relay:
                relay.wait_waiting(conn)
                receiver.reset()
                if annotations:
                    warmup: dict[int, float] = {}
                    count = max(5, int(ANNOTATION_RATE * seconds))
                    committed = _annotate(conn, count)
                    receiver.wait_for(count, timeout=30)
                else:
                    rate = LARGE_RATE if large else RATE
                    warmup = _drive(conn, WARMUP, rate)
                    count = int(rate * seconds)
                    committed = _drive(conn, count, rate)
                    receiver.wait_for(WARMUP + count, timeout=30)
            arrivals = receiver.arrivals()
            rows = conn.execute(
                "select 'msg_' || replace(d.message_id::text, '-', ''), e.row_ids[1]"
                " from outbox.delivery d join outbox.event e on e.id = d.event_id"
            ).fetchall()
    finally:
        srv.drop_database(database)
    task_of: dict[str, int] = {str(k): int(v) for k, v in rows}
    latencies = []
    for arrived, webhook_id in zip(arrivals["times"], arrivals["ids"], strict=True):
        task = task_of.get(webhook_id)
        if task in committed:
            latencies.append((arrived - committed[task]) * 1000)
    missing = count - len(latencies)
    return {
        "settle_ms": settle_ms,
        "large_project_tasks": large,
        "count_ms": count_ms,
        "events": count,
        "warmup_events": len(warmup),
        "matched": len(latencies),
        "missing": missing,
        "p50_ms": percentile(latencies, 0.50) if latencies else None,
        "p95_ms": percentile(latencies, 0.95) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "mean_ms": statistics.fmean(latencies) if latencies else None,
    }


def run(ctx: Context) -> MeasureResult:
    result = MeasureResult(NAME)
    seconds = 0.5 if ctx.quick else 6.0
    runs: list[dict[str, Any]] = []
    settings: tuple[tuple[int | None, str, bool], ...] = (
        (0, "settle 0", False),
        (None, "settle default", False),
        (None, "annotation, counters 20 ms later, settle default", True),
    )
    for _ in range(ctx.repeat):
        for settle_ms, label, annotating in settings:
            measured = one_run(ctx, settle_ms, seconds, annotations=annotating)
            runs.append(measured)
            for key, name in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
                target = None
                if settle_ms == 0 and key == "p50_ms":
                    target = "<= 5"
                elif settle_ms == 0 and key == "p99_ms":
                    target = "<= 20"
                figure = result.figure(f"{label}: commit → arrival {name}", "ms", target=target)
                if measured[key] is not None:
                    figure.samples.append(measured[key])
    large = 2_000 if ctx.quick else LARGE_TASKS
    label = f"project of {large:,} tasks, settle 0"
    for _ in range(ctx.repeat):
        measured = one_run(ctx, 0, seconds, large=large)
        runs.append(measured)
        if measured["p50_ms"] is not None:
            result.figure(f"{label}: commit → arrival p50", "ms").samples.append(measured["p50_ms"])
            result.figure(f"{label}: commit → arrival max", "ms").samples.append(measured["max_ms"])
            result.figure(f"{label}: counting its counters once (baseline)", "ms").samples.append(
                measured["count_ms"]
            )
            result.figure(f"{label}: p50 ÷ one count", "ratio").samples.append(
                measured["p50_ms"] / measured["count_ms"]
            )
    result.details = {"rate_per_s": RATE, "large_rate_per_s": LARGE_RATE, "seconds": seconds, "runs": runs}
    return result
