"""The admin side's words for states, each written once as SQL (SQLAlchemy expressions) and read
by every listing, count and metric: a webhook's status, a failing delivery, a live relay, the
``webhook-id`` of a delivery.

The relay keeps its own copy of one of them in SQL: ``outbox.wake()`` (sql/0005_wake_plpgsql.sql)
counts a relay as alive for the same RELAY_ALIVE_SECONDS; tests/unit/test_states.py keeps the
two equal."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import ColumnElement, and_, case, func, literal

from outbox import tables as t

WebhookStatus = Literal["active", "failing", "paused", "disabled"]
WEBHOOK_STATUSES: tuple[WebhookStatus, ...] = ("active", "failing", "paused", "disabled")

# a relay whose heartbeat is older than this is not alive (it heart-beats every 15 s at most)
RELAY_ALIVE_SECONDS = 60


def webhook_status() -> ColumnElement[str]:
    """paused: by a user; disabled: by the relay, with a reason; failing: its last attempts
    failed (webhook_health counts them); else active. Needs webhook_health outer-joined."""
    w, h = t.webhook, t.webhook_health
    return case(
        (and_(~w.c.is_active, w.c.disabled_reason.is_not(None)), literal("disabled")),
        (~w.c.is_active, literal("paused")),
        (func.coalesce(h.c.consecutive_failures, 0) > 0, literal("failing")),
        else_=literal("active"),
    )


def failing() -> ColumnElement[bool]:
    """A delivery pending after at least one failed attempt."""
    d = t.delivery
    return and_(d.c.state == "pending", d.c.attempts > 0)


def relay_alive() -> ColumnElement[bool]:
    r = t.relay
    return r.c.heartbeat_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, RELAY_ALIVE_SECONDS)
