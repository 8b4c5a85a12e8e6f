"""The relay's database side: every statement comes from sql/queries.sql, every decision from the
pure modules (events, routing, payloads, schedule). Each function is one short transaction; none
is ever open while an HTTP request is in flight.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson
import psycopg
from psycopg.adapt import Loader
from psycopg.rows import DictRow

from outbox import __version__
from outbox.sql import query
from relay import chunks, payloads
from relay.actions import CHUNKED, Action
from relay.chunks import Chunk
from relay.deliveries import INT4_MAX, Claimed, Result, record_of
from relay.events import Change, Event, group_changes
from relay.routing import Routed, Webhook, plan

Conn = psycopg.AsyncConnection[DictRow]

# How long a Data Manager delete may pause between its transactions before what was deleted so far
# is sent anyway (Label Studio died half-way).
DETACH_WAIT = timedelta(seconds=60)
# 'route' in ASCII: only one relay groups changes at a time.
ROUTING_LOCK = 0x726F757465
LONGEST_DISABLE_AFTER = timedelta(days=36500)
# 'clai(m)' in ASCII: the space of per-webhook advisory locks taken while claiming.
CLAIM_LOCK_SPACE = 0x636C6169  # an int4: the two-key form of advisory locks
# Actions whose bodies can be large (rows, the project, or ids by the million): sized when routed,
# so that a body over OUTBOX_MAX_BODY_BYTES is never built. Only CHUNKED ones are split by bytes.
SIZED = CHUNKED | {Action.ANNOTATION_CREATED, Action.ANNOTATION_UPDATED, Action.PROJECT_CREATED,
                   Action.PROJECT_UPDATED, Action.TASKS_DELETED, Action.ANNOTATIONS_DELETED}  # fmt: skip
# Bodies built in one step are fetched and encoded together: at most this many bytes of them
# (one body of the default OUTBOX_MAX_BODY_BYTES), so that a cycle of the pipeline stays short and
# the relay's memory bounded while a huge import is built. Bodies at least LARGE_BODY are built
# after the smaller ones due with them.
BUILD_BYTES = 16 * 1024 * 1024
LARGE_BODY = 1024 * 1024
# With no settle delay, bodies are built while routing, up to this many bytes (the rest waits for
# the build step, so a huge import never holds up routing the events behind it).
IMMEDIATE_BUILD_BYTES = 8 * 1024 * 1024


@asynccontextmanager
async def transaction(conn: Conn, *, durable: bool = True) -> AsyncIterator[None]:
    """One transaction with its statements pipelined (fewer round trips).

    Not durable (``durable=False``, or ``without_flush`` called inside) means the commit does not
    wait for the WAL flush: for transactions whose loss in a database crash only repeats work.
    Every claim is durable and comes before any request is sent, and a WAL flush covers everything
    written before it, so no request ever goes out for a change the database could still forget.
    """
    async with conn.pipeline(), conn.transaction():
        if not durable:
            await without_flush(conn)
        yield


async def without_flush(conn: Conn) -> None:
    """Let the current transaction commit without waiting for the WAL flush."""
    await conn.execute(query("commit_without_flush"))


class _FragmentLoader(Loader):
    """jsonb as an orjson.Fragment: Label Studio's JSON columns pass into payloads unparsed."""

    def load(self, data: Any) -> orjson.Fragment:
        return orjson.Fragment(bytes(data))


async def register(conn: Conn, relay_id: UUID) -> None:
    await conn.execute(
        query("register_relay"),
        {
            "relay_id": relay_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
        },
    )


async def heartbeat(conn: Conn, relay_id: UUID) -> None:
    await conn.execute(query("heartbeat"), {"relay_id": relay_id})


async def unregister(conn: Conn, relay_id: UUID) -> None:
    await conn.execute(query("unregister_relay"), {"relay_id": relay_id})


@dataclass(frozen=True)
class Idle:
    """What a relay found when it declared itself waiting."""

    has_changes: bool
    next_due: datetime | None
    now: datetime

    def seconds_until_due(self) -> float | None:
        if self.next_due is None:
            return None
        return max(0.0, (self.next_due - self.now).total_seconds())


async def set_waiting(conn: Conn, relay_id: UUID) -> Idle:
    """Raise this relay's waiting flag (capture triggers start to NOTIFY) and look for work once
    more: a transaction that committed before the flag was visible sent no notification."""
    row = await (await conn.execute(query("set_waiting"), {"relay_id": relay_id})).fetchone()
    assert row is not None
    due = [t for t in (row["next_build"], row["next_attempt"]) if t is not None]
    return Idle(row["has_changes"], min(due) if due else None, row["now"])


@dataclass(frozen=True)
class RouteReport:
    changes: int
    events: list[Routed]
    # bodies built while routing (no settle delay), by (event id, chunk)
    bodies: dict[tuple[int, int], bytes] = field(default_factory=dict)

    @property
    def unbuilt(self) -> bool:
        """Whether some payload is left for the build step."""
        return sum(len(r.chunks) for r in self.events if r.needs_payload) > len(self.bodies)

    @property
    def deliveries(self) -> int:
        return sum(len(r.webhooks) * len(r.chunks) for r in self.events)


async def route_changes(
    conn: Conn,
    *,
    relay_id: UUID,
    limit: int,
    batch_size: int,
    settle: timedelta,
    clear_waiting: bool,
    max_bytes: int,
    build_rows: int = 0,
) -> RouteReport:
    """Turn committed changes into events and deliveries, then forget the changes (inside the
    caller's transaction, which holds the routing lock until it ends).

    ``clear_waiting``: lower this relay's waiting flag if there was anything to route.
    ``max_bytes``: the most a body may take (OUTBOX_MAX_BODY_BYTES): chunks are cut to it.
    ``build_rows``: with no settle delay, build the payloads of up to this many rows right away
    (in the same transaction, so they are inserted once, built); the rest wait for the build step.
    """
    # one round trip for the lock, the changes and the webhooks; the writes go with what follows
    await conn.execute(query("lock_routing"), {"lock": ROUTING_LOCK})
    taken = await conn.execute(query("take_changes"), {"limit": limit, "detach_wait": DETACH_WAIT})
    subscribed = await conn.execute(query("routable_webhooks"))
    rows = await taken.fetchall()
    webhooks = [_webhook(row) for row in await subscribed.fetchall()]
    done: list[int] = [row["id"] for row in rows if not row["held"]]
    if not done:
        return RouteReport(0, [])
    if clear_waiting:  # busy now: writers need not NOTIFY until this relay waits again
        await conn.execute(query("clear_waiting"), {"relay_id": relay_id})
    if not webhooks:  # nobody subscribed: nothing to group, only to forget
        await conn.execute(query("delete_changes"), {"ids": done})
        return RouteReport(len(done), [])
    changes = [_change(row) for row in rows]
    # events nobody subscribed to are not kept: they would cost Label Studio's database a
    # write for each of its own
    routed = [r for r in plan(group_changes(changes), webhooks, batch_size) if r.webhooks]
    routed = await _sized(conn, routed, max_bytes)
    built: list[tuple[int, _Pending]] = []  # (position, chunk to build now)
    budget = IMMEDIATE_BUILD_BYTES
    for position, r in enumerate(routed, start=1):
        if not r.needs_payload or len(r.event.row_ids) > build_rows:
            continue
        size = sum(c.bytes for c in r.chunks)
        if size > budget or any(chunks.too_large(c, max_bytes) for c in r.chunks):
            continue
        build_rows -= len(r.event.row_ids)
        budget -= size
        for index, chunk in enumerate(r.chunks):
            ids = r.event.row_ids[chunk.start : chunk.end]
            built.append((position, _Pending(0, index, r.event.action, r.event.project_id, ids, chunk.bytes)))
    bodies: list[bytes] = []
    if built:
        items = [item for _, item in built]
        snapshot = await _snapshot(conn, [payloads.needs(p.action, p.project_id, p.row_ids) for p in items])
        bodies = _bodies(items, snapshot)
    by_key: dict[tuple[int, int], bytes] = {}
    if routed:
        inserted = await conn.execute(
            query("insert_events"),
            {
                "events": orjson.dumps([_event_input(r, max_bytes) for r in routed]).decode(),
                "settle": settle,
                "body_ords": [position for position, _ in built],
                "body_chunks": [item.chunk for _, item in built],
                "bodies": bodies,
            },
        )
        event_ids = {row["ord"]: row["event_id"] for row in await inserted.fetchall()}
        by_key = {
            (event_ids[position], item.chunk): body
            for (position, item), body in zip(built, bodies, strict=True)
        }
    await conn.execute(query("delete_changes"), {"ids": done})
    return RouteReport(len(done), routed, by_key)


async def _sized(conn: Conn, routed: list[Routed], max_bytes: int) -> list[Routed]:
    """Bound the chunks of events whose bodies are built by bytes as well as rows: the sizes of
    their rows come from one query (the JSON text of the large columns)."""
    wanted = [(i, r) for i, r in enumerate(routed) if r.needs_payload and r.event.action in SIZED]
    if not wanted:
        return routed
    needs = [payloads.needs(r.event.action, r.event.project_id, r.event.row_ids) for _, r in wanted]
    rows = await (
        await conn.execute(
            query("row_sizes"),
            {
                "task_ids": sorted({i for n in needs for i in n.tasks}),
                "annotation_ids": sorted({i for n in needs for i in n.annotations}),
                "project_ids": sorted({i for n in needs for i in n.projects}),
            },
        )
    ).fetchall()
    sizes = payloads.Sizes(
        projects={r["id"]: r["bytes"] for r in rows if r["kind"] == "project"},
        tasks={r["id"]: r["bytes"] for r in rows if r["kind"] == "task"},
        annotations={r["id"]: (r["bytes"], r["task_id"]) for r in rows if r["kind"] == "annotation"},
    )
    resized = list(routed)
    for index, r in wanted:
        row_bytes, envelope = payloads.estimate(r.event.action, r.event.project_id, r.event.row_ids, sizes)
        resized[index] = r.sized(row_bytes, envelope, max_bytes)
    return resized


def _change(row: DictRow) -> Change:
    row_ids, task_ids = row["row_ids"], row["task_ids"] or ()
    if row["op"] == "INSERT":  # the trigger does not sort; creation order is id order
        if task_ids:
            pairs = sorted(zip(row_ids, task_ids, strict=True))
            row_ids, task_ids = [p[0] for p in pairs], [p[1] for p in pairs]
        else:
            row_ids = sorted(row_ids)
    return Change(
        id=row["id"],
        xid=int(row["xid"]),
        table=row["table_name"],
        op=row["op"],
        project_id=row["project_id"],
        organization_id=row["organization_id"],
        row_ids=tuple(row_ids),
        task_ids=tuple(task_ids),
        detach_xid=int(row["detach_xid"]) if row["detach_xid"] is not None else None,
        held=row["held"],
    )


def _webhook(row: DictRow) -> Webhook:
    return Webhook(
        id=row["id"],
        organization_id=row["organization_id"],
        project_id=row["project_id"],
        is_active=row["is_active"],
        send_for_all_actions=row["send_for_all_actions"],
        actions=frozenset(row["actions"]),
        send_payload=row["send_payload"],
    )


def _event_input(routed: Routed, max_bytes: int) -> dict[str, Any]:
    event = routed.event
    return {
        "xid": None if event.xid is None else str(event.xid),
        "action": event.action,
        "organization_id": event.organization_id,
        "project_id": event.project_id,
        "row_ids": list(event.row_ids),
        "chunk_size": routed.chunk_size,
        "chunk_starts": [c.start for c in routed.chunks],
        "chunk_ends": [c.end for c in routed.chunks],
        "chunk_bytes": [c.bytes for c in routed.chunks],
        "chunk_errors": [_too_large(event, c, max_bytes) for c in routed.chunks],
        "webhook_ids": [w.id for w in routed.webhooks],
        "needs_payload": routed.needs_payload,
    }


def _too_large(event: Event, chunk: Chunk, max_bytes: int) -> str | None:
    """Why a chunk's body is not built: one row that alone is over the byte budget."""
    if not chunks.too_large(chunk, max_bytes):
        return None
    if chunk.envelope > max_bytes:  # no row is the cause: every body of the event is too large
        row = f" (the project {event.project_id} alone takes {chunk.envelope} bytes)"
    else:
        row = f" (row {event.row_ids[chunk.start]})" if chunk.rows == 1 else ""
    size = f"{chunk.bytes / 1048576:.1f} MiB" if chunk.bytes >= 1048576 else f"{chunk.bytes} bytes"
    return (
        f"the body would take about {size}{row}, over OUTBOX_MAX_BODY_BYTES ({max_bytes} bytes): "
        "not built, not sent"
    )


@dataclass(frozen=True)
class _Pending:
    event_id: int
    chunk: int
    action: str
    project_id: int | None
    row_ids: tuple[int, ...]
    # estimated bytes of the body (None for payloads made before bodies were sized)
    size: int | None = None


async def build_payloads(conn: Conn, *, limit: int, max_rows: int) -> tuple[int, bool]:
    """Build the bodies of payloads whose settle delay has passed, small ones first, at most
    ``max_rows`` rows' and ``BUILD_BYTES`` bytes' worth (a 100,000-task import is built a chunk per
    call, in bounded memory and without holding up the rest). Returns how many were built and
    whether more are ready."""
    rows = await (
        await conn.execute(query("claim_payloads"), {"limit": limit, "large": LARGE_BODY})
    ).fetchall()
    pending = [
        _Pending(
            r["event_id"], r["chunk"], r["action"], r["project_id"], tuple(r["row_ids"]), r["size_estimate"]
        )
        for r in rows
    ]
    group = next(iter(_groups(pending, max_rows, BUILD_BYTES)), [])
    if group:
        snapshot = await _snapshot(conn, [payloads.needs(p.action, p.project_id, p.row_ids) for p in group])
        bodies = _bodies(group, snapshot)
        await conn.execute(
            query("store_payloads"),
            {
                "event_ids": [p.event_id for p in group],
                "chunks": [p.chunk for p in group],
                "bodies": bodies,
            },
        )
    return len(group), len(group) < len(pending) or len(pending) == limit


def _groups(pending: Sequence[_Pending], max_rows: int, max_bytes: int) -> Iterable[list[_Pending]]:
    """Consecutive payloads built together: at most ``max_rows`` rows and ``max_bytes`` bytes
    (one payload alone may be larger: it is bounded by OUTBOX_MAX_BODY_BYTES already)."""
    group: list[_Pending] = []
    rows = size = 0
    for item in pending:
        item_size = item.size or 0
        if group and (rows + len(item.row_ids) > max_rows or size + item_size > max_bytes):
            yield group
            group, rows, size = [], 0, 0
        group.append(item)
        rows += len(item.row_ids)
        size += item_size
    if group:
        yield group


async def _snapshot(conn: Conn, wanted: Sequence[payloads.Needs]) -> payloads.Snapshot:
    """The current rows behind some payloads: three queries in one round trip. jsonb columns come
    as orjson.Fragment, so Label Studio's JSON passes into payloads unparsed."""
    projects = sorted({i for n in wanted for i in n.projects})
    tasks = sorted({i for n in wanted for i in n.tasks})
    annotations = sorted({i for n in wanted for i in n.annotations})
    queries = [
        ("fetch_projects", {"ids": projects}, bool(projects)),
        ("fetch_tasks", {"ids": tasks, "annotation_ids": annotations}, bool(tasks or annotations)),
        ("fetch_annotations", {"ids": annotations}, bool(annotations)),
    ]
    cursors: list[psycopg.AsyncCursor[DictRow] | None] = []
    for name, params, needed in queries:
        if not needed:
            cursors.append(None)
            continue
        cursor = conn.cursor()
        cursor.adapters.register_loader("jsonb", _FragmentLoader)
        cursor.adapters.register_loader("json", _FragmentLoader)
        await cursor.execute(query(name), params)
        cursors.append(cursor)
    found: list[dict[int, DictRow]] = []
    for pending in cursors:
        found.append({row["id"]: row for row in await pending.fetchall()} if pending else {})
    return payloads.Snapshot(projects=found[0], tasks=found[1], annotations=found[2])


def _bodies(items: Sequence[_Pending], snapshot: payloads.Snapshot) -> list[bytes]:
    return [payloads.encode(payloads.build_body(p.action, p.project_id, p.row_ids, snapshot)) for p in items]


class BodyCache(Protocol):
    def get(self, key: tuple[int, int]) -> bytes | None: ...

    def put(self, key: tuple[int, int], body: bytes) -> None: ...


async def claim_deliveries(
    conn: Conn,
    *,
    relay_id: UUID,
    limit: int,
    timeout: float,
    lease_margin: float,
    cached: BodyCache,
    busy: Mapping[int, int],
) -> Claim:
    """Lease up to ``limit`` due deliveries (committed before returning), with the bodies they
    need: from ``cached``, else fetched (and put into it). The claim holds them itself: one claim
    may need more than the cache keeps. ``busy``: this relay's requests in flight per webhook.
    The caller's transaction must be durable (see ``transaction``)."""
    await conn.execute(query("lock_claimable_webhooks"), {"lock_space": CLAIM_LOCK_SPACE})
    rows = await (
        await conn.execute(
            query("claim_deliveries"),
            {
                "relay_id": relay_id,
                "limit": limit,
                "timeout": timeout,
                "lease_margin": lease_margin,
                "busy": orjson.dumps({str(k): v for k, v in busy.items() if v}).decode(),
            },
        )
    ).fetchall()
    claimed = [Claimed.from_row(row) for row in rows]
    refused: dict[tuple[int, int], str] = {}
    found: dict[tuple[int, int], bytes] = {}
    for key in {(c.event_id, c.chunk) for c in claimed if c.send_payload}:
        body = cached.get(key)
        if body is not None:
            found[key] = body
    missing = sorted({(c.event_id, c.chunk) for c in claimed if c.send_payload} - found.keys())
    if missing:
        bodies = await (
            await conn.execute(
                query("fetch_bodies"),
                {"event_ids": [k[0] for k in missing], "chunks": [k[1] for k in missing]},
            )
        ).fetchall()
        for row in bodies:
            key = (row["event_id"], row["chunk"])
            if row["body"] is not None:
                found[key] = bytes(row["body"])
                cached.put(key, found[key])
            elif row["error"] is not None:
                refused[key] = row["error"]
    return Claim(claimed, refused, found)


@dataclass(frozen=True)
class Claim:
    """What a claim leased, and by (event id, chunk) the bodies its deliveries send and the
    payloads refused instead of built (too large), with why."""

    deliveries: list[Claimed]
    refused: dict[tuple[int, int], str]
    bodies: dict[tuple[int, int], bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Disabled:
    webhook_id: int
    reason: str


@dataclass(frozen=True)
class Recorded:
    """What recording a batch did besides logging its attempts."""

    disabled: list[Disabled]
    # deliveries made due at once because their webhook answered 2xx again
    hastened: int = 0


async def record_results(
    conn: Conn,
    results: Sequence[Result],
    *,
    relay_id: UUID,
    disable_after: timedelta,
    disable_after_attempts: int,
) -> Recorded:
    """Write a batch of attempts, the delivery states, webhook health; make the waiting retries
    of a webhook that answers 2xx again due at once; disable webhooks that asked for it (410) or
    have failed for too long. Every value passes through ``deliveries.record_of`` first."""
    records = [record_of(r) for r in results]
    # Settings reach SQL too: now() minus the largest timedelta is no timestamp, and no webhook has
    # failed for longer than a century (nor more often than an integer counts).
    disable_after = min(disable_after, LONGEST_DISABLE_AFTER)
    disable_after_attempts = min(disable_after_attempts, INT4_MAX)
    health: dict[int, tuple[bool, int]] = {}
    recovered: set[int] = set()  # a success after failures within this batch
    for record in records:
        succeeded, failures = health.get(record.webhook_id, (False, 0))
        if record.state == "delivered":  # only a 2xx delivers
            if failures:
                recovered.add(record.webhook_id)
            health[record.webhook_id] = (True, 0)
        else:
            health[record.webhook_id] = (succeeded, failures + 1)
    to_disable = {r.webhook_id: r.disable_reason for r in records if r.disable_reason}
    back = [webhook for webhook, (succeeded, _) in health.items() if succeeded]
    # Not durable: a result lost in a database crash means that delivery is sent again, with the
    # same webhook-id (at least once).
    async with transaction(conn, durable=False):
        await conn.execute(
            query("record_attempts"),
            {
                "relay_id": relay_id,
                "delivery_ids": [r.delivery_id for r in records],
                "attempts": [r.attempt for r in records],
                "states": [r.state for r in records],
                "delays": [r.delay for r in records],
                "started_at": [r.started_at for r in records],
                "durations": [r.duration_ms for r in records],
                "statuses": [r.status for r in records],
                "error_classes": [r.error_class for r in records],
                "errors": [r.error for r in records],
                "bodies": [r.response_body for r in records],
                "headers": [r.request_headers for r in records],
            },
        )
        hastened = None
        if back:  # before record_health, which forgets the failures
            hastened = await conn.execute(
                query("hasten_retries"),
                {
                    "webhook_ids": back,
                    "recovered": sorted(recovered),
                    "delivery_ids": [r.delivery_id for r in records],
                },
            )
        await conn.execute(
            query("record_health"),
            {
                "webhook_ids": list(health),
                "succeeded": [h[0] for h in health.values()],
                "failures": [h[1] for h in health.values()],
            },
        )
        disabled: list[DictRow] = []
        if to_disable:
            disabled += await (
                await conn.execute(
                    query("disable_webhooks"),
                    {"webhook_ids": list(to_disable), "reasons": list(to_disable.values())},
                )
            ).fetchall()
        failing = [w for w, (_, failures) in health.items() if failures]
        if failing:
            disabled += await (
                await conn.execute(
                    query("disable_failing_webhooks"),
                    {
                        "webhook_ids": failing,
                        "min_attempts": disable_after_attempts,
                        "min_duration": disable_after,
                    },
                )
            ).fetchall()
    return Recorded(
        [Disabled(row["id"], row["disabled_reason"]) for row in disabled],
        max(0, hastened.rowcount) if hastened is not None else 0,
    )


async def release_leases(conn: Conn, relay_id: UUID) -> None:
    await conn.execute(query("release_leases"), {"relay_id": relay_id})


@dataclass(frozen=True)
class Pruned:
    deliveries: int = 0
    events: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.deliveries + other.deliveries, self.events + other.events)


async def prune(
    conn: Conn,
    *,
    retention: timedelta,
    dead_retention: timedelta,
    batch: int = 1000,
    max_batches: int | None = None,
) -> Pruned:
    """Delete what is past retention, ``batch`` rows per transaction so no lock is held long."""
    total = Pruned()
    batches = 0
    params = {"retention": retention, "dead_retention": dead_retention, "batch": batch}
    for name, counted in (("prune_deliveries", "deliveries"), ("prune_events", "events")):
        while max_batches is None or batches < max_batches:
            batches += 1
            deleted = (await conn.execute(query(name), params)).rowcount
            total = total + Pruned(**{counted: deleted})
            if deleted < batch:
                break
    await conn.execute(query("prune_detached_tasks"), params)
    await conn.execute(query("prune_relays"))
    return total
