"""How the pipeline is doing, for the console: the relays and their heartbeats, how far routing
lags behind capture, events and attempts per minute, and each webhook's deliveries by state.

The queue figures (depth, oldest pending, deliveries by state) are ``outbox.admin.metrics``'s
snapshot; this module adds what a person looking at the pipeline needs besides, read the same
way: a few cheap statements in one read-only transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox import tables as t
from outbox.admin import states
from outbox.admin.states import RELAY_ALIVE_SECONDS

RATE_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Relay:
    id: str
    hostname: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float  # seconds since its last heartbeat
    waiting: bool  # idle and listening for NOTIFY

    @property
    def alive(self) -> bool:
        return self.heartbeat_age < RELAY_ALIVE_SECONDS


@dataclass(frozen=True)
class Flow:
    """What moves through the pipeline, over the last ``RATE_WINDOW_SECONDS``."""

    events_per_minute: float
    attempts_per_minute: float
    failures_per_minute: float
    # seconds the oldest captured change has waited to be routed (0 when none waits): the lag
    # between Label Studio's commit and its event
    routing_lag: float


@dataclass(frozen=True)
class WebhookCounts:
    pending: int = 0
    failing: int = 0  # pending after a failed attempt
    dead: int = 0


def _ago(seconds: int) -> object:
    return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def relays(engine: AsyncEngine) -> list[Relay]:
    """Every relay registered, most recent heartbeat first (a relay that stopped cleanly has
    removed itself; one that died stays until housekeeping removes it)."""
    r = t.relay
    age = func.extract("epoch", func.now() - r.c.heartbeat_at)
    query = select(r, age.label("age")).order_by(r.c.heartbeat_at.desc(), r.c.id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        await conn.rollback()
    return [
        Relay(
            id=str(row.id),
            hostname=row.hostname,
            pid=row.pid,
            version=row.version,
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            heartbeat_age=max(0.0, float(row.age)),
            waiting=row.waiting,
        )
        for row in rows
    ]


async def flow(engine: AsyncEngine) -> Flow:
    """Events and attempts per minute, and the routing lag."""
    e, a, c = t.event, t.attempt, t.change
    window = _ago(RATE_WINDOW_SECONDS)
    success = and_(a.c.error_class.is_(None), a.c.status_code.between(200, 299))
    async with engine.connect() as conn:
        events = (await conn.execute(select(func.count()).where(e.c.created_at >= window))).scalar_one()
        attempts, failures = (
            await conn.execute(
                select(func.count(), func.count().filter(~success)).where(a.c.started_at >= window)
            )
        ).one()
        lag = (
            await conn.execute(
                select(func.coalesce(func.extract("epoch", func.now() - func.min(c.c.captured_at)), 0))
            )
        ).scalar_one()
        await conn.rollback()
    minutes = RATE_WINDOW_SECONDS / 60
    return Flow(
        events_per_minute=events / minutes,
        attempts_per_minute=attempts / minutes,
        failures_per_minute=failures / minutes,
        routing_lag=max(0.0, float(lag)),
    )


async def webhook_counts(engine: AsyncEngine) -> dict[int, WebhookCounts]:
    """Each webhook's pending, failing and dead deliveries (webhooks with none are left out)."""
    d = t.delivery
    pending = d.c.state == "pending"
    query = (
        select(
            d.c.webhook_id,
            func.count().filter(pending),
            func.count().filter(states.failing()),
            func.count().filter(d.c.state == "dead"),
        )
        .where(d.c.state != "delivered")
        .group_by(d.c.webhook_id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        await conn.rollback()
    return {row[0]: WebhookCounts(pending=row[1], failing=row[2], dead=row[3]) for row in rows}
