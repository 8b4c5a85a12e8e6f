"""Claim: lease due deliveries (committed before any request is made) and fetch the bodies they
need; sql/queries.sql, section "relay: claiming and recording deliveries"."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

import orjson

from outbox.sql import query
from relay.database import Conn
from relay.deliveries import (
    Claimed,
)

# 'clai(m)' in ASCII: the space of per-webhook advisory locks taken while claiming.
CLAIM_LOCK_SPACE = 0x636C6169  # an int4: the two-key form of advisory locks


class BodyCache:
    """Recently built bodies, so that a fan-out fetches each payload once."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, key: tuple[int, int]) -> bytes | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
        return body

    def put(self, key: tuple[int, int], body: bytes) -> None:
        if key in self._items:
            return
        self._items[key] = body
        self._bytes += len(body)
        while self._bytes > self._max and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)


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


async def release_leases(conn: Conn, relay_id: UUID, delivery_ids: list[int]) -> None:
    """Hand back the deliveries this relay still holds (by id: no index covers leased_by)."""
    if delivery_ids:
        await conn.execute(query("release_leases"), {"relay_id": relay_id, "delivery_ids": delivery_ids})
