"""Retention: what is past OUTBOX_RETENTION (dead deliveries: OUTBOX_DEAD_RETENTION) is deleted
in small batches, each its own transaction; sql/queries.sql, section "retention"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from outbox.sql import query
from relay.database import Conn


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
