"""The body a delivery sends, for people to read: the payload of its event chunk (built once by the
relay and shared by every webhook that gets it), or exactly ``{"action": A}`` for a webhook with
``send_payload`` off. Only the first ``limit`` bytes are read: bodies may be megabytes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox import tables as t
from outbox.admin.errors import NotFound
from outbox.admin.webhooks import transaction
from relay.payloads import action_only

DEFAULT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Body:
    text: str | None  # None: there is no body to show (see ``note``)
    size: int  # bytes of the whole body
    truncated: bool
    note: str | None = None  # why there is no body, or what the body is


async def delivery_body(engine: AsyncEngine, delivery_id: int, *, limit: int = DEFAULT_LIMIT) -> Body:
    """What delivery ``delivery_id`` sends (or sent), at most ``limit`` bytes of it, as text."""
    d, p, e, w = t.delivery, t.payload, t.event, t.webhook
    query = (
        select(
            e.c.action,
            w.c.send_payload,
            func.substring(p.c.body, 1, limit).label("head"),
            func.octet_length(p.c.body).label("size"),
            p.c.built_at,
            p.c.error,
        )
        .select_from(
            d.join(e, e.c.id == d.c.event_id)
            .join(w, w.c.id == d.c.webhook_id)
            .outerjoin(p, (p.c.event_id == d.c.event_id) & (p.c.chunk == d.c.chunk))
        )
        .where(d.c.id == delivery_id)
    )
    async with transaction(engine) as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("Delivery", delivery_id)
    if not row.send_payload:
        body = action_only(row.action)
        return Body(body.decode(), len(body), False, "The webhook sends the action only (send_payload off).")
    if row.error is not None:
        return Body(None, 0, False, f"No body was built: {row.error}")
    if row.head is None:
        return Body(None, 0, False, "The body is not built yet (it is built after the settle delay).")
    head = bytes(row.head)
    return Body(head.decode("utf-8", "replace"), int(row.size), int(row.size) > len(head))
