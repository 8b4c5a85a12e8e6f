"""7. Scale-out: one relay, then two relays at once, on copies of the same backlog.

A backlog made as for the throughput measure (5,000 events; a copy of one template database per
run, the two configurations alternating). Duplicates are counted twice: at the receiver (requests
minus distinct ``webhook-id``) and in the database (attempts recorded minus deliveries); both
must be 0.
"""

from __future__ import annotations

from bench.harness import Context, MeasureResult
from bench.throughput import drain

NAME = "scale_out"


def run(ctx: Context) -> MeasureResult:
    result = MeasureResult(NAME)
    # smaller than the throughput backlog, so that six drains fit the suite's time budget
    events = 400 if ctx.quick else 5_000
    cap = 20.0 if ctx.quick else 30.0
    one = result.figure(f"1 relay: deliveries/s ({events:,} queued)", "/s")
    two = result.figure(f"2 relays: deliveries/s ({events:,} queued)", "/s")
    ratio = result.figure("2 relays ÷ 1 relay", "ratio")
    duplicates = result.figure("duplicates (received + recorded), 2 relays", "count", target="<= 0")
    runs = []
    for rep in range(ctx.repeat):
        measured = {}
        for relays in (1, 2) if rep % 2 == 0 else (2, 1):
            database = ctx.clone_backlog(events)
            try:
                measured[relays] = drain(ctx, database, events, relays, f"scale-{relays}", cap=cap)
            finally:
                ctx.server.drop_database(database)
        runs.append(measured)
        one.samples.append(measured[1]["deliveries_per_s"])
        two.samples.append(measured[2]["deliveries_per_s"])
        ratio.samples.append(measured[2]["deliveries_per_s"] / measured[1]["deliveries_per_s"])
        duplicates.samples.append(
            measured[2]["duplicates_received"] + measured[2]["attempts_recorded"] - measured[2]["deliveries"]
        )
    result.details = {"runs": [{str(k): v for k, v in r.items()} for r in runs]}
    return result
