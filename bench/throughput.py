"""3. Relay throughput: a backlog of committed single-row transactions, then the relay started.

The backlog is made the way Label Studio makes it (pgbench: one INSERT per transaction into
``task`` or ``task_completion``) while no relay runs, with one webhook subscribed (its
``max_concurrency`` raised to 64, the relay's default ``OUTBOX_CONCURRENCY``). Then ``outbox relay``
starts (its own process, WARNING log level, ``OUTBOX_SETTLE_MS=0`` so that the settle delay is not
counted as work) and is timed from the moment it registers to the moment every delivery is
recorded delivered in outbox.delivery: routing, building, claiming, sending and recording, all of it.

The ceiling is measured in the same repetition, right after: the fastest plain Python client
(aiohttp, and a raw asyncio client) POSTing bodies of the relay's mean payload size with 64 in
flight to the same receiver, no database. wrk against the same receiver is the physical limit.
Relay, receiver and PostgreSQL share the machine's cores; their CPU seconds are reported.
"""

from __future__ import annotations

import time
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg

from bench import ceiling, harness
from bench.harness import Context, MeasureResult, RelayProcess

NAME = "throughput"
CONCURRENCY = 64


def drain(ctx: Context, database: str, events: int, relays: int, label: str, *, cap: float) -> dict[str, Any]:
    """Start ``relays`` relays on a backlog and time them until every delivery is recorded
    delivered, or until ``cap`` seconds have passed (then the rate is what was delivered by then:
    the suite stays bounded however slow the relay is, and the result says it was capped)."""
    srv, receiver = ctx.server, ctx.receiver
    receiver.reset()
    receiver_cpu = _cpu(receiver.pid)
    pg_before = srv.cpu_snapshot()
    with psycopg.connect(srv.url(database), autocommit=True) as conn:
        processes = [
            RelayProcess(
                srv.url(database),
                settle_ms=0,
                concurrency=CONCURRENCY,
                profile=ctx.profile(f"{label}-{n}"),
            )
            for n in range(relays)
        ]
        for process in processes:
            process.start()
        try:
            started = min(p.wait_registered(conn) for p in processes)
            # CPU from registration on: the interpreter's start-up is not delivery work
            relay_cpu_before = sum(p.cpu() for p in processes)
            deadline = started + cap
            receiver.wait_for(events, timeout=max(0.0, deadline - time.monotonic()), interval=0.05)
            while True:
                done = harness.delivered(conn)
                finished = time.monotonic()
                if done >= events or finished >= deadline:
                    break
                time.sleep(0.01)
            relay_cpu = sum(p.cpu() for p in processes) - relay_cpu_before
            pg_cpu = srv.cpu_between(pg_before, srv.cpu_snapshot())
        finally:
            for process in processes:
                process.stop()
        row = conn.execute(
            "select (select avg(length(body)) from outbox.payload),"
            " (select count(*) from outbox.attempt),"
            " (select count(*) from outbox.delivery)"
        ).fetchone()
        assert row is not None
    stats = receiver.stats()
    elapsed = finished - started
    arrivals = (stats["last"] - stats["first"]) if stats["count"] > 1 else None
    return {
        "events": events,
        "relays": relays,
        "delivered": done,
        "capped": done < events,
        "seconds": elapsed,
        "deliveries_per_s": done / elapsed,
        "arrival_rate_first_to_last": (stats["count"] - 1) / arrivals if arrivals else None,
        "received": stats["count"],
        "distinct_webhook_ids": stats["distinct"],
        "duplicates_received": stats["count"] - stats["distinct"],
        "attempts_recorded": row[1],
        "deliveries": row[2],
        "mean_body_bytes": float(row[0] or 0),
        "cpu_seconds": {
            "relays": relay_cpu,
            "receiver": _cpu(receiver.pid) - receiver_cpu,
            "postgres": pg_cpu,
        },
        "relay_cpu_us_per_delivery": 1e6 * relay_cpu / max(1, done),
        "postgres_cpu_us_per_delivery": 1e6 * pg_cpu / max(1, done) if pg_cpu is not None else None,
    }


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def run(ctx: Context) -> MeasureResult:
    result = MeasureResult(NAME)
    events = 400 if ctx.quick else 20_000
    requests = 400 if ctx.quick else 10_000
    cap = 20.0 if ctx.quick else 40.0
    url = ctx.receiver.url + "/hook"
    runs: list[dict[str, Any]] = []
    ceilings: list[dict[str, Any]] = []
    relay = result.figure(f"relay: deliveries/s ({events:,} queued events)", "/s")
    best = result.figure(f"raw ceiling: fastest Python client, {CONCURRENCY} in flight", "/s")
    ratio = result.figure("relay ÷ raw ceiling (fastest Python client)", "ratio")
    # the target of the relay rebuild (docs/performance.md): against the relay's own HTTP stack
    ratio_aiohttp = result.figure(
        "relay ÷ aiohttp client (the relay's own HTTP stack)", "ratio", target=">= 0.5"
    )
    relay_cpu = result.figure("relay CPU per delivery", "µs")
    pg_cpu = result.figure("PostgreSQL CPU per delivery", "µs")
    both_cpu = result.figure("relay + PostgreSQL CPU per delivery", "µs")
    client_cpu = result.figure("aiohttp client CPU per POST (no database)", "µs")
    for _ in range(ctx.repeat):
        database = ctx.clone_backlog(events)
        try:
            drained = drain(ctx, database, events, 1, "throughput", cap=cap)
        finally:
            ctx.server.drop_database(database)
        body = int(drained["mean_body_bytes"])
        measured: dict[str, float] = {}
        client_cpu_us: dict[str, float] = {}
        for client in ceiling.CLIENTS:
            cpu_before = time.process_time()
            measured[client] = ceiling.python_rate(client, url, body, CONCURRENCY, requests)
            client_cpu_us[client] = 1e6 * (time.process_time() - cpu_before) / requests
        runs.append(drained)
        ceilings.append({"rates": measured, "cpu_us_per_post": client_cpu_us})
        relay.samples.append(drained["deliveries_per_s"])
        best.samples.append(max(measured.values()))
        ratio.samples.append(drained["deliveries_per_s"] / max(measured.values()))
        ratio_aiohttp.samples.append(drained["deliveries_per_s"] / measured["aiohttp"])
        relay_cpu.samples.append(drained["relay_cpu_us_per_delivery"])
        if drained["postgres_cpu_us_per_delivery"] is not None:
            pg_cpu.samples.append(drained["postgres_cpu_us_per_delivery"])
            both_cpu.samples.append(
                drained["relay_cpu_us_per_delivery"] + drained["postgres_cpu_us_per_delivery"]
            )
        client_cpu.samples.append(client_cpu_us["aiohttp"])
    if any(r["capped"] for r in runs):
        relay.note = f"capped at {cap:.0f} s: the rate is what was delivered by then"
    if not pg_cpu.samples:  # a server on another machine: its CPU cannot be read from here
        result.figures.remove(pg_cpu)
        result.figures.remove(both_cpu)
    body = int(runs[-1]["mean_body_bytes"])
    matrix = _matrix(url, body, quick=ctx.quick)
    for client, rates in matrix.items():
        for concurrency, rate in rates.items():
            if rate is not None and (client == "wrk" or concurrency != CONCURRENCY):
                result.figure(f"{client}: POST/s, {concurrency} in flight", "/s").samples = [rate]
    result.details = {"runs": runs, "ceilings_64": ceilings, "matrix": matrix}
    return result


def _matrix(url: str, body: int, *, quick: bool) -> dict[str, dict[int, float | None]]:
    """POST/s at 1 / 16 / 64 in flight for every client, once (context for the ceiling)."""
    levels = (64,) if quick else (1, 16, 64)
    requests = {1: 2000, 16: 8000, 64: 8000}
    matrix: dict[str, dict[int, float | None]] = {}
    if not quick:
        matrix = {
            client: {n: ceiling.python_rate(client, url, body, n, requests[n]) for n in levels}
            for client in ceiling.CLIENTS
        }
    if ceiling.wrk_available():
        matrix["wrk"] = {n: ceiling.wrk_rate(url, body, n, 1 if quick else 2) for n in levels}
    return matrix
