"""Backfill: rows that exist, sent to one webhook on purpose (``outbox webhooks backfill``,
``POST /api/webhooks/<id>/backfill``), so that a new subscriber can catch up.

Matching is as of commit (docs/design.md §6): a webhook created after a change never gets it.
A backfill is the deliberate exception, for one webhook: one ``TASKS_CREATED`` event per project,
its tasks (all, or those created since a time) in id order, cut into chunks exactly as an import
is (relay/chunks.py: ``WEBHOOK_BATCH_SIZE`` rows and ``OUTBOX_MAX_BODY_BYTES``, a task over the
limit dead alone), its bodies built by the relay from the current rows as an import's are. The
events and deliveries are written by the relay's own ``insert_events``, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox import tables as t
from outbox.admin.errors import NotFound, invalid
from outbox.admin.models import MAX_INT, When
from outbox.admin.webhooks import notify_relays, transaction
from outbox.sql import query
from relay import chunks, payloads
from relay.actions import Action
from relay.events import Event
from relay.routing import Routed, Webhook, event_row, matches

# what a backfill can send: rows that exist, as their import sent them
SUPPORTED = (Action.TASKS_CREATED,)


class BackfillRequest(BaseModel):
    action: str = Field(description="The action to send the rows as: TASKS_CREATED.")
    project: int | None = Field(None, ge=1, le=MAX_INT, description="Only this project's rows.")
    since: When | None = Field(None, description="Only rows created at or after this time.")


class Backfilled(BaseModel):
    """What a backfill queued for the webhook."""

    webhook: int
    action: str
    events: int = Field(description="One per project that has rows.")
    deliveries: int = Field(description="POSTs: chunks of WEBHOOK_BATCH_SIZE rows at most.")
    rows: int


@dataclass(frozen=True)
class _Project:
    id: int
    row_ids: tuple[int, ...]
    row_bytes: tuple[int, ...]
    project_bytes: int | None


async def backfill(
    engine: AsyncEngine,
    webhook_id: int,
    request: BackfillRequest,
    *,
    batch_size: int,
    max_bytes: int,
) -> Backfilled:
    """Queue ``request.action`` for the existing rows to webhook ``webhook_id`` alone."""
    if request.action not in SUPPORTED:
        raise invalid(
            "action", f"A backfill sends {', '.join(SUPPORTED)}; {request.action[:100]!r} is not one of them."
        )
    w = t.webhook
    async with transaction(engine) as conn:
        row = (await conn.execute(select(w).where(w.c.id == webhook_id))).mappings().first()
        if row is None:
            raise NotFound("Webhook", webhook_id)
        webhook = Webhook(
            id=row["id"],
            organization_id=row["organization_id"],
            project_id=row["project_id"],
            is_active=True,  # a paused webhook gets them when resumed, as any delivery
            send_for_all_actions=row["send_for_all_actions"],
            actions=frozenset(row["actions"]),
            send_payload=row["send_payload"],
        )
        projects = await _projects(conn, webhook, request.project)
        routed: list[Routed] = []
        for project_id in projects:
            found = await _rows(conn, project_id, request.since)
            if not found.row_ids:
                continue
            event = Event(None, request.action, webhook.organization_id, project_id, found.row_ids)
            if not matches(webhook, event):
                refusal = f"Webhook {webhook_id} does not take {request.action}: see its actions."
                raise invalid("action", refusal)
            routed.append(_chunked(event, webhook, found, batch_size, max_bytes))
        if routed:
            await _insert(conn, routed, max_bytes)
            await notify_relays(conn)
    return Backfilled(
        webhook=webhook_id,
        action=request.action,
        events=len(routed),
        deliveries=sum(len(r.chunks) for r in routed),
        rows=sum(len(r.event.row_ids) for r in routed),
    )


async def _projects(conn: AsyncConnection, webhook: Webhook, project: int | None) -> list[int]:
    """The projects to send rows of: the webhook's own, or the one asked for, or all of its
    organization's."""
    p = t.project
    if webhook.project_id is not None:
        if project is not None and project != webhook.project_id:
            raise invalid("project", f"Webhook {webhook.id} is for project {webhook.project_id} only.")
        return [webhook.project_id]
    wanted = select(p.c.id).where(p.c.organization_id == webhook.organization_id).order_by(p.c.id)
    if project is not None:
        wanted = wanted.where(p.c.id == project)
    found = list((await conn.execute(wanted)).scalars())
    if project is not None and not found:
        organization = webhook.organization_id
        raise invalid("project", f"Project {project} is not a project of organization {organization}.")
    return found


async def _rows(conn: AsyncConnection, project_id: int, since: datetime | None) -> _Project:
    result = await conn.exec_driver_sql(query("backfill_tasks"), {"project_id": project_id, "since": since})
    rows = result.all()
    return _Project(
        project_id,
        tuple(r.id for r in rows),
        tuple(r.bytes for r in rows),
        rows[0].project_bytes if rows else None,
    )


def _chunked(event: Event, webhook: Webhook, found: _Project, batch_size: int, max_bytes: int) -> Routed:
    """The event cut as the relay cuts an import (relay/route.py's sizing, on the same estimates)."""
    assert event.project_id is not None
    sizes = payloads.Sizes(
        projects={event.project_id: found.project_bytes or 0},
        tasks=dict(zip(found.row_ids, found.row_bytes, strict=True)),
    )
    row_bytes, envelope = payloads.estimate(event.action, event.project_id, event.row_ids, sizes)
    plain = Routed(event, (webhook,), batch_size, tuple(chunks.by_rows(len(event.row_ids), batch_size)))
    return plain.sized(row_bytes, envelope, max_bytes) if webhook.send_payload else plain


async def _insert(conn: AsyncConnection, routed: list[Routed], max_bytes: int) -> None:
    events = [event_row(r, max_bytes) for r in routed]  # a backfill has no transaction: xid null
    await conn.exec_driver_sql(
        query("insert_events"),
        {
            "events": orjson.dumps(events).decode(),
            "settle": timedelta(0),  # the rows settled long ago
            "body_ords": [],
            "body_chunks": [],
            "bodies": [],
            "done": [],  # routing forgets the changes it routed; a backfill routed none
        },
    )
