"""5. Fan-out: one event to 50 webhooks, time from the commit until all 50 POSTs arrived.

50 project-level webhooks on the same receiver (one path each), one task INSERT committed while
the relay waits (``OUTBOX_SETTLE_MS=0``, so that the settle delay is not counted). Repeated on the
same relay, waiting for it to be idle again between events.
"""

from __future__ import annotations

import time

import psycopg

from bench import harness
from bench.harness import TASK_DATA, Context, MeasureResult, RelayProcess

NAME = "fanout"
WEBHOOKS = 50


def run(ctx: Context) -> MeasureResult:
    srv, receiver = ctx.server, ctx.receiver
    result = MeasureResult(NAME)
    events = ctx.repeat * (1 if ctx.quick else 3)
    all_arrived = result.figure(f"one event to {WEBHOOKS} webhooks: all arrived", "ms")
    first_arrived = result.figure(f"one event to {WEBHOOKS} webhooks: first arrived", "ms")
    database = srv.create_database(ctx.templates.installed)
    try:
        with psycopg.connect(srv.url(database), autocommit=True) as conn:
            for n in range(WEBHOOKS):
                harness.add_webhook(conn, f"{receiver.url}/fan/{n}")
            with RelayProcess(srv.url(database), settle_ms=0, profile=ctx.profile("fanout")) as relay:
                for _ in range(events):
                    relay.wait_waiting(conn)
                    receiver.reset()
                    conn.execute(
                        f"insert into public.task (data, project_id{harness.TASK_COLUMNS})"
                        f" values (%s::jsonb, 1{harness.TASK_VALUES})",
                        (TASK_DATA,),
                    )
                    committed = time.monotonic()
                    stats = receiver.wait_for(WEBHOOKS, timeout=30, interval=0.005)
                    arrivals = receiver.arrivals()
                    paths = set(arrivals["paths"])
                    if len(paths) != WEBHOOKS:
                        raise RuntimeError(f"fan-out reached {len(paths)} of {WEBHOOKS} webhooks")
                    all_arrived.samples.append((stats["last"] - committed) * 1000)
                    first_arrived.samples.append((stats["first"] - committed) * 1000)
                    # let the relay record the 50 results before the next event
                    harness.wait_until(
                        lambda: harness.delivered(conn) >= WEBHOOKS * (len(all_arrived.samples)),
                        timeout=30,
                        what="fan-out results recorded",
                    )
    finally:
        srv.drop_database(database)
    result.details = {"webhooks": WEBHOOKS, "events": events, "settle_ms": 0}
    return result
