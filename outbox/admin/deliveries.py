"""The delivery log and replay, behind both the admin API and the CLI: events, deliveries with
their attempts, retrying one delivery, recovering a webhook's failed and dead deliveries over a
time range.

Retrying keeps the delivery's ``webhook-id`` (receivers dedupe on it) and its attempt count, so the
log stays truthful: attempt numbers go on from where they were. A dead delivery made due again gets
one more attempt past its schedule (the relay declares a delivery dead only after an attempt whose
number has used up the schedule); if that one fails too it is dead again, and can be retried again.
A pending delivery that already failed is simply made due now and keeps its schedule.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox import tables as t
from outbox.admin import states, validation
from outbox.admin.errors import Conflict, NotFound, invalid
from outbox.admin.models import (
    Attempt,
    Delivery,
    DeliveryCounts,
    DeliveryDetail,
    DeliveryPage,
    Event,
    EventPage,
    Recovered,
)
from outbox.admin.webhooks import consistent_read, notify_relays, transaction
from relay.deliveries import message_id

d = t.delivery
e = t.event
a = t.attempt

# "failing": pending after at least one failed attempt ("failed" is its older name, kept).
StateFilter = Literal["pending", "failing", "delivered", "dead", "failed"]
MAX_PAGE = 500
RECOVER_BATCH = 500

Progress = Callable[[int, int], Awaitable[None] | None]


# -- cursors ---------------------------------------------------------------------------------


def encode_cursor(last_id: int) -> str:
    """Opaque to clients: the position after which the next page starts."""
    return base64.urlsafe_b64encode(f"before:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        last_id = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("cursor", "Invalid cursor: pass the `next` of a previous page.") from None
    if kind != "before" or not 0 < last_id < 2**63:
        raise invalid("cursor", "Invalid cursor: pass the `next` of a previous page.")
    return last_id


def utc(moment: datetime | None) -> datetime | None:
    """Times without a zone are taken as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _range(column: Any, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    since, until = utc(since), utc(until)
    if since is not None and until is not None and until <= since:
        raise invalid("until", "Must be later than since.")
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def _page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise invalid("limit", f"Ensure this value is between 1 and {MAX_PAGE}.")
    return limit


# -- deliveries --------------------------------------------------------------------------------


def _in_flight() -> ColumnElement[bool]:
    # `is not null` first: a null lease must make this false, not null (which NOT keeps null)
    return and_(d.c.state == "pending", d.c.lease_until.is_not(None), d.c.lease_until >= func.now())


def _delivery_query() -> Select[Any]:
    return select(d, e.c.action, _in_flight().label("in_flight")).select_from(
        d.join(e, e.c.id == d.c.event_id)
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        webhook=row.webhook_id,
        event=row.event_id,
        action=row.action,
        project=row.project_id,
        chunk=row.chunk,
        message_id=message_id(row.message_id),
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
        in_flight=bool(row.in_flight),
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _failed() -> ColumnElement[bool]:
    """Deliveries a recovery redelivers: dead, or pending after at least one failed attempt."""
    return or_(d.c.state == "dead", states.failing())


async def _require_webhook(conn: AsyncConnection, webhook_id: int) -> None:
    found = (await conn.execute(select(t.webhook.c.id).where(t.webhook.c.id == webhook_id))).first()
    if found is None:
        raise NotFound("Webhook", webhook_id)


async def list_deliveries(
    engine: AsyncEngine,
    webhook_id: int | None = None,
    *,
    state: StateFilter | None = None,
    project: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> DeliveryPage:
    """Deliveries, newest first: one webhook's (``webhook_id``) or all webhooks'; ``state``
    ``"failing"`` (or ``"failed"``) means pending after a failed attempt."""
    query = _delivery_query().where(*_range(d.c.created_at, since, until))
    if webhook_id is not None:
        query = query.where(d.c.webhook_id == webhook_id)
    if state in ("failing", "failed"):
        query = query.where(states.failing())
    elif state is not None:
        query = query.where(d.c.state == state)
    if project is not None:
        query = query.where(d.c.project_id == project)
    if action is not None:
        query = query.where(e.c.action == action)
    if cursor is not None:
        query = query.where(d.c.id < decode_cursor(cursor))
    size = _page_size(limit)
    async with transaction(engine) as conn:
        if webhook_id is not None:
            await _require_webhook(conn, webhook_id)
        rows = (await conn.execute(query.order_by(d.c.id.desc()).limit(size + 1))).all()
    results = [_delivery(row) for row in rows[:size]]
    more = len(rows) > size
    return DeliveryPage(results=results, next=encode_cursor(results[-1].id) if more else None)


async def _detail(conn: AsyncConnection, delivery_id: int) -> DeliveryDetail:
    row = (await conn.execute(_delivery_query().where(d.c.id == delivery_id))).first()
    if row is None:
        raise NotFound("Delivery", delivery_id)
    attempts = (
        await conn.execute(select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.attempt, a.c.id))
    ).all()
    return DeliveryDetail(
        **_delivery(row).model_dump(),
        # the attempt log's columns are the Attempt model's fields (the rest are ignored)
        attempt_log=[Attempt.model_validate(dict(r._mapping)) for r in attempts],
    )


async def get_delivery(engine: AsyncEngine, delivery_id: int) -> DeliveryDetail:
    """One delivery with every attempt made, in order."""
    async with consistent_read(engine) as conn:
        return await _detail(conn, delivery_id)


def _due_now() -> dict[str, Any]:
    return {
        "state": "pending",
        "next_attempt_at": func.now(),
        "finished_at": None,
        "lease_until": None,
        "leased_by": None,
    }


async def retry(engine: AsyncEngine, delivery_id: int) -> DeliveryDetail:
    """Make one delivery due now, whatever its state (a delivered one is sent again, with the same
    ``webhook-id``); refused while a relay is attempting it."""
    async with transaction(engine) as conn:
        updated = (
            await conn.execute(
                d.update().where(d.c.id == delivery_id, ~_in_flight()).values(**_due_now()).returning(d.c.id)
            )
        ).first()
        if updated is None:
            exists = (await conn.execute(select(d.c.id).where(d.c.id == delivery_id))).first()
            if exists is None:
                raise NotFound("Delivery", delivery_id)
            raise Conflict(
                f"Delivery {delivery_id} is being attempted right now; retry it once that attempt "
                "has finished."
            )
        await notify_relays(conn)
        return await _detail(conn, delivery_id)


async def recover(
    engine: AsyncEngine,
    webhook_id: int,
    *,
    since: datetime,
    until: datetime | None = None,
    progress: Progress | None = None,
    batch: int = RECOVER_BATCH,
) -> Recovered:
    """Make due again every failed or dead delivery of a webhook created in ``[since, until)``,
    in batches of ``batch`` (one transaction each), reporting ``progress(done, total)``."""
    until = utc(until) or datetime.now(UTC)
    window = _range(d.c.created_at, since, until)
    wanted = and_(d.c.webhook_id == webhook_id, _failed(), ~_in_flight(), *window)
    async with transaction(engine) as conn:
        await _require_webhook(conn, webhook_id)
        total = (await conn.execute(select(func.count()).select_from(d).where(wanted))).scalar_one()
    done, last_id = 0, 0
    if progress is not None:
        await _report(progress, done, total)
    while True:
        chosen = (
            select(d.c.id)
            .where(wanted, d.c.id > last_id)
            .order_by(d.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with transaction(engine) as conn:
            ids = (
                (
                    await conn.execute(
                        d.update().where(d.c.id.in_(chosen)).values(**_due_now()).returning(d.c.id)
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                await notify_relays(conn)
        if not ids:
            break
        done += len(ids)
        last_id = max(ids)
        if progress is not None:
            await _report(progress, done, max(total, done))
    return Recovered(webhook=webhook_id, since=utc(since) or since, until=until, redelivered=done)


async def _report(progress: Progress, done: int, total: int) -> None:
    result = progress(done, total)
    if result is not None:
        await result


async def relays_alive(conn: AsyncConnection) -> int:
    """Relays whose heartbeat is recent."""
    alive = select(func.count()).select_from(t.relay).where(states.relay_alive())
    return int((await conn.execute(alive)).scalar_one())


async def wait_for_outcome(engine: AsyncEngine, delivery_id: int, seconds: float) -> DeliveryDetail:
    """The delivery once its first attempt is recorded, or as it is after ``seconds`` (at
    once when no relay is alive to make the attempt)."""
    async with consistent_read(engine) as conn:
        detail = await _detail(conn, delivery_id)
        alive = await relays_alive(conn)
    if seconds <= 0 or not alive:
        return detail
    with anyio.move_on_after(seconds):
        while detail.state == "pending" and not detail.attempt_log:
            await anyio.sleep(0.05)
            async with consistent_read(engine) as conn:
                detail = await _detail(conn, delivery_id)
    return detail


# -- events ------------------------------------------------------------------------------------


async def list_events(
    engine: AsyncEngine,
    *,
    action: str | None = None,
    project: int | None = None,
    organization: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> EventPage:
    """Events newest first, with how many of their deliveries are in each state."""
    # not only registered ones: events of an action removed since stay in the log
    if action is not None and not validation.ACTION_NAME.match(action):
        raise invalid("action", "Not an action name: see GET /api/webhooks/info/ (or PING).")
    counts = (
        select(
            func.count().filter(d.c.state == "pending").label("pending"),
            func.count().filter(d.c.state == "delivered").label("delivered"),
            func.count().filter(d.c.state == "dead").label("dead"),
        )
        .where(d.c.event_id == e.c.id)
        .lateral("counts")
    )
    query = (
        select(
            e.c.id,
            e.c.action,
            e.c.organization_id,
            e.c.project_id,
            func.cardinality(e.c.row_ids).label("row_count"),
            e.c.chunk_size,
            e.c.created_at,
            counts.c.pending,
            counts.c.delivered,
            counts.c.dead,
        )
        .select_from(e.join(counts, true()))
        .where(*_range(e.c.created_at, since, until))
    )
    if action is not None:
        query = query.where(e.c.action == action)
    if project is not None:
        query = query.where(e.c.project_id == project)
    if organization is not None:
        query = query.where(e.c.organization_id == organization)
    if cursor is not None:
        query = query.where(e.c.id < decode_cursor(cursor))
    size = _page_size(limit)
    async with transaction(engine) as conn:
        rows = (await conn.execute(query.order_by(e.c.id.desc()).limit(size + 1))).all()
    results = [
        Event(
            id=row.id,
            action=row.action,
            organization=row.organization_id,
            project=row.project_id,
            row_count=row.row_count or 0,
            chunk_size=row.chunk_size,
            created_at=row.created_at,
            deliveries=DeliveryCounts(pending=row.pending, delivered=row.delivered, dead=row.dead),
        )
        for row in rows[:size]
    ]
    more = len(rows) > size
    return EventPage(results=results, next=encode_cursor(results[-1].id) if more else None)
