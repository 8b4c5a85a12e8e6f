"""Presence: a relay registers, beats its heart, declares itself waiting (so that the capture
triggers NOTIFY) and unregisters; sql/queries.sql, section "relay: presence and wake-ups"."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from outbox.sql import query
from relay.database import Conn


async def register(conn: Conn, relay_id: UUID, version: str) -> None:
    await conn.execute(
        query("register_relay"),
        {
            "relay_id": relay_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "version": version,
        },
    )


async def heartbeat(conn: Conn, relay_id: UUID) -> None:
    await conn.execute(query("heartbeat"), {"relay_id": relay_id})


async def unregister(conn: Conn, relay_id: UUID) -> None:
    await conn.execute(query("unregister_relay"), {"relay_id": relay_id})


@dataclass(frozen=True)
class Waiting:
    """What a relay found when it declared itself waiting."""

    has_changes: bool
    next_due: datetime | None
    now: datetime

    def seconds_until_due(self) -> float | None:
        if self.next_due is None:
            return None
        return max(0.0, (self.next_due - self.now).total_seconds())


async def set_waiting(conn: Conn, relay_id: UUID) -> Waiting:
    """Raise this relay's waiting flag (capture triggers start to NOTIFY) and look for work once
    more: a transaction that committed before the flag was visible sent no notification."""
    row = await (await conn.execute(query("set_waiting"), {"relay_id": relay_id})).fetchone()
    assert row is not None
    due = [t for t in (row["next_build"], row["next_attempt"]) if t is not None]
    return Waiting(row["has_changes"], min(due) if due else None, row["now"])
