"""Route: committed changes become events, their chunks and their deliveries, in one transaction
under the routing lock; sql/queries.sql, section "relay: routing changes into events and
deliveries". The decisions are the pure modules' (events, routing, chunks, payloads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
from psycopg.rows import DictRow

from outbox.sql import query
from relay import build, chunks, emitted, payloads
from relay.actions import CHUNKED, Action
from relay.counters import CounterCache
from relay.database import Conn
from relay.events import Change, group_changes
from relay.routing import Routed, Webhook, event_row, plan

# How long a Data Manager delete may pause between its transactions before what was deleted so far
# is sent anyway (Label Studio died half-way).
DETACH_WAIT = timedelta(seconds=60)

# How long a storage sync may go without a new task, and how long it may last in all, before the
# tasks synced so far are sent without waiting for its end (Label Studio died, or the sync is
# endless): the upper bound on how long a synced task is held.
SYNC_WAIT = timedelta(seconds=60)
SYNC_MAX = timedelta(minutes=10)


# 'route' in ASCII: only one relay groups changes at a time.
ROUTING_LOCK = 0x726F757465


# Actions whose bodies can be large (rows, the project, or ids by the million): sized when routed,
# so that a body over OUTBOX_MAX_BODY_BYTES is never built. Only CHUNKED ones are split by bytes.
SIZED = CHUNKED | {Action.ANNOTATION_CREATED, Action.ANNOTATION_UPDATED, Action.PROJECT_CREATED,
                   Action.PROJECT_UPDATED, Action.TASKS_DELETED, Action.ANNOTATIONS_DELETED}  # fmt: skip


# With no settle delay, bodies are built while routing, up to this many bytes (the rest waits for
# the build step, so a huge import never holds up routing the events behind it).
IMMEDIATE_BUILD_BYTES = 8 * 1024 * 1024


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
    counters: CounterCache | None = None,
) -> RouteReport:
    """Turn committed changes into events and deliveries, then forget the changes (inside the
    caller's transaction, which holds the routing lock until it ends).

    ``clear_waiting``: lower this relay's waiting flag if there was anything to route.
    ``max_bytes``: the most a body may take (OUTBOX_MAX_BODY_BYTES): chunks are cut to it.
    ``build_rows``: with no settle delay, build the payloads of up to this many rows right away
    (in the same transaction, so they are inserted once, built); the rest wait for the build step.
    ``counters``: the relay's cache of slow projects' counters (relay/counters.py).
    """
    # one round trip for the lock, the changes and the webhooks; the writes go with what follows
    await conn.execute(query("lock_routing"), {"lock": ROUTING_LOCK})
    taken = await conn.execute(
        query("take_changes"),
        {"limit": limit, "detach_wait": DETACH_WAIT, "sync_wait": SYNC_WAIT, "sync_max": SYNC_MAX},
    )
    subscribed = await conn.execute(query("routable_webhooks"))
    rows = await taken.fetchall()
    webhooks = [_webhook(row) for row in await subscribed.fetchall()]
    done: list[int] = [row["id"] for row in rows if not row["held"]]
    if not done:
        return RouteReport(0, [])
    if clear_waiting:  # busy now: writers need not NOTIFY until this relay waits again
        await conn.execute(query("clear_waiting"), {"relay_id": relay_id})
    if not webhooks:  # nobody subscribed: nothing to group, only to forget
        unsent = await emitted.route(conn, rows, webhooks, settle=settle, max_bytes=max_bytes)
        await conn.execute(query("delete_changes"), {"ids": done})
        return RouteReport(len(done), unsent)
    changes = [_change(row) for row in rows]
    # events nobody subscribed to are not kept: they would cost Label Studio's database a
    # write for each of its own
    routed = [r for r in plan(group_changes(changes), webhooks, batch_size) if r.webhooks]
    routed = _sized(routed, _sizes(rows), max_bytes)
    built: list[tuple[int, build.Pending]] = []  # (position, chunk to build now)
    budget = IMMEDIATE_BUILD_BYTES
    for position, r in enumerate(routed, start=1):
        if not r.needs_payload or r.deleted_rows or len(r.event.row_ids) > build_rows:
            continue
        size = sum(c.bytes for c in r.chunks)
        if size > budget or any(chunks.too_large(c, max_bytes) for c in r.chunks):
            continue
        build_rows -= len(r.event.row_ids)
        budget -= size
        for index, chunk in enumerate(r.chunks):
            ids = r.event.row_ids[chunk.start : chunk.end]
            built.append(
                (position, build.Pending(0, index, r.event.action, r.event.project_id, ids, chunk.bytes))
            )
    routed, deleted_bodies = await _deleted_bodies(conn, routed, _deleted(rows), max_bytes, counters)
    bodies: list[bytes] = []
    if built:
        items = [item for _, item in built]
        snapshot = await build.fetch_snapshot(
            conn, [payloads.needs(p.action, p.project_id, p.row_ids) for p in items], counters
        )
        bodies = build.encode_bodies(items, snapshot)
    by_key: dict[tuple[int, int], bytes] = {}
    forgotten = bool(routed)  # insert_events forgets the changes it routes
    if routed:
        inserted = await conn.execute(
            query("insert_events"),
            {
                "events": orjson.dumps([event_row(r, max_bytes) for r in routed]).decode(),
                "settle": settle,
                "body_ords": [position for position, _ in built] + [p for p, _ in deleted_bodies],
                "body_chunks": [item.chunk for _, item in built] + [0 for _ in deleted_bodies],
                "bodies": bodies + [body for _, body in deleted_bodies],
                "done": done,
            },
        )
        event_ids = {row["ord"]: row["event_id"] for row in await inserted.fetchall()}
        by_key = {
            (event_ids[position], item.chunk): body
            for (position, item), body in zip(built, bodies, strict=True)
        }
    # events outbox.emit recorded in these transactions (no statement unless there are some)
    routed += await emitted.route(conn, rows, webhooks, settle=settle, max_bytes=max_bytes)
    if not forgotten:
        await conn.execute(query("delete_changes"), {"ids": done})
    return RouteReport(len(done), routed, by_key)


# The table whose rows a delete event lists, for webhooks that want the deleted rows
DELETED_TABLE = {
    Action.PROJECT_DELETED: "project",
    Action.TASKS_DELETED: "task",
    Action.ANNOTATIONS_DELETED: "task_completion",
    Action.LABEL_LINK_DELETED: "labels_manager_labellink",
}


def _deleted(rows: Sequence[DictRow]) -> dict[str, dict[int, dict[str, Any]]]:
    """The rows the delete triggers recorded (brought only while some webhook wants them), by
    table and id."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        if row["op"] == "DELETE" and row["old_rows"]:
            table = found.setdefault(row["table_name"], {})
            table.update((old["id"], old) for old in row["old_rows"])
    return found


async def _deleted_bodies(
    conn: Conn,
    routed: list[Routed],
    deleted: dict[str, dict[int, dict[str, Any]]],
    max_bytes: int,
    counters: CounterCache | None,
) -> tuple[list[Routed], list[tuple[int, bytes]]]:
    """The bodies of delete events that list the deleted rows, built now: the rows exist only in
    the changes, which are forgotten at the end of routing. Returns the events (a body over
    ``max_bytes`` makes its chunk too large, never sent) and the bodies by event position."""
    wanted = [(p, r) for p, r in enumerate(routed, start=1) if r.deleted_rows and r.needs_payload]
    if not wanted:
        return routed, []
    snapshot = await build.fetch_snapshot(
        conn,
        [
            payloads.Needs(
                projects=frozenset({r.event.project_id} if r.event.project_id is not None else set())
            )
            for _, r in wanted
        ],
        counters,
    )
    resized, bodies = list(routed), []
    for position, r in wanted:
        event = r.event
        rows = deleted.get(DELETED_TABLE[Action(event.action)], {})
        body = payloads.encode(
            payloads.deleted_body(event.action, event.project_id, event.row_ids, rows, snapshot)
        )
        chunk = replace(r.chunks[0], bytes=len(body))
        resized[position - 1] = replace(r, chunks=(chunk,))
        if not chunks.too_large(chunk, max_bytes):
            bodies.append((position, body))
    return resized, bodies


def _sizes(rows: Sequence[DictRow]) -> payloads.Sizes:
    """The estimated sizes ``take_changes`` brought along with the changes (when some webhook wants
    payloads), by row id: tasks, annotations with their task, projects."""
    projects: dict[int, int] = {}
    tasks: dict[int, int] = {}
    annotations: dict[int, tuple[int, int | None]] = {}
    for row in rows:
        if row["task_bytes"] is None:
            continue  # nobody wants payloads: nothing was sized
        if row["project_id"] is not None and row["project_bytes"] is not None:
            projects[row["project_id"]] = row["project_bytes"]
        task_ids = row["row_ids"] if row["table_name"] == "task" else (row["task_ids"] or ())
        tasks.update(zip(task_ids, row["task_bytes"], strict=False))
        if row["table_name"] == "task_completion":
            pairs = zip(row["own_bytes"], row["task_ids"] or (), strict=False)
            annotations.update(zip(row["row_ids"], pairs, strict=False))
        elif row["table_name"] == "project":
            projects.update(zip(row["row_ids"], row["own_bytes"], strict=False))
    return payloads.Sizes(projects=projects, tasks=tasks, annotations=annotations)


def _sized(routed: list[Routed], sizes: payloads.Sizes, max_bytes: int) -> list[Routed]:
    """Bound the chunks of events whose bodies are built by bytes as well as rows."""
    resized = list(routed)
    for index, r in enumerate(routed):
        if r.needs_payload and r.event.action in SIZED:
            row_bytes, envelope = payloads.estimate(
                r.event.action, r.event.project_id, r.event.row_ids, sizes
            )
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
        captured_at=row["captured_at"],
        storage=row["storage"],
        sync_end=row["sync_end"],
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
        created_at=row["created_at"],
        paused_from=row["paused_from"],
        paused_until=row["paused_until"],
        delete_payload=row["delete_payload"],
    )
