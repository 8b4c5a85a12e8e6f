"""Housekeeping: heartbeats (so that capture triggers and other relays know this one is alive),
and retention: every relay prunes a little now and then, in small batches."""

from __future__ import annotations

import logging
import random
import time
from uuid import UUID

import anyio

from relay import presence, retention
from relay.config import RelayConfig
from relay.database import DATABASE_ERRORS, Database, Stopped

log = logging.getLogger("outbox.relay")

HEARTBEAT_INTERVAL = 15.0
PRUNE_INTERVAL = 60.0


class Housekeeping:
    def __init__(self, database: Database, relay_id: UUID, config: RelayConfig, rng: random.Random) -> None:
        self._database = database
        self._relay_id = relay_id
        self._config = config
        self._rng = rng

    async def run(self) -> None:
        database, config = self._database, self._config
        interval = min(HEARTBEAT_INTERVAL, config.poll_interval * 5)
        next_prune = time.monotonic() + self._rng.uniform(0, PRUNE_INTERVAL)
        try:
            while True:
                await anyio.sleep(interval)
                try:
                    conn = await database.get()
                    await presence.heartbeat(conn, self._relay_id)
                    database.succeeded()
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_INTERVAL
                        pruned = await retention.prune(
                            conn,
                            retention=config.retention,
                            dead_retention=config.dead_retention,
                            max_batches=20,
                        )
                        if pruned.deliveries or pruned.events:
                            log.info(
                                "pruned %d deliveries and %d events past retention",
                                pruned.deliveries,
                                pruned.events,
                            )
                except Stopped:
                    return
                except DATABASE_ERRORS as exc:
                    await database.failed(exc)
        finally:
            await database.close()
