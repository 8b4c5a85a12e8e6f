"""The recorder: one task per relay that writes attempt results in batches (``record``), so that
send tasks never wait for the database.

Through database outages a batch is retried with growing backoff (its results stay in memory
meanwhile). A batch the database, or psycopg, refuses for what it holds is split until the refused
result is alone; that one is recorded as an internal error, so no result, however malformed, holds
up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

import anyio
import psycopg
from anyio.streams.memory import MemoryObjectReceiveStream

from relay import record
from relay.config import RelayConfig
from relay.database import Database, first_line
from relay.deliveries import Judged, unrecordable

log = logging.getLogger("outbox.relay")

RECORD_BATCH = 1000

# (results written, whether a retry may be due at once)
# (the deliveries whose results were written, whether a retry may be due at once)
OnRecorded = Callable[[list[int], bool], None]


def refused(exc: BaseException) -> bool:
    """Whether writing results failed because of what they hold (a value the database or psycopg
    refuses), rather than the database's state (down, outbox missing, a deadlock): only the
    former is found by splitting the batch."""
    if isinstance(exc, psycopg.Error):
        return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
    return True  # turning a value into a parameter failed (TypeError, UnicodeEncodeError, ...)


class Recorder:
    def __init__(
        self, database: Database, relay_id: UUID, config: RelayConfig, on_recorded: OnRecorded
    ) -> None:
        self._database = database
        self._relay_id = relay_id
        self._config = config
        self._on_recorded = on_recorded

    async def run(self, results: MemoryObjectReceiveStream[Judged], done: anyio.Event) -> None:
        """Write what arrives, in batches, until the stream ends; then set ``done``."""
        async with results:
            while True:
                try:
                    batch = [await results.receive()]
                except anyio.EndOfStream:
                    break
                while len(batch) < RECORD_BATCH:
                    try:
                        batch.append(results.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                hastened = await self.write(batch)
                self._on_recorded(
                    [r.delivery.id for r in batch], bool(hastened) or any(r.state == "pending" for r in batch)
                )
        done.set()

    async def write(self, batch: list[Judged]) -> int:
        """Write one batch; returns how many waiting deliveries became due at once."""
        database, hastened = self._database, 0
        parts: list[tuple[list[Judged], bool]] = [(batch, False)]  # (results, substituted)
        while parts:
            part, substituted = parts.pop()
            try:
                conn = await database.get()
                recorded = await record.record_results(
                    conn,
                    part,
                    relay_id=self._relay_id,
                    disable_after=self._config.disable_after,
                    disable_after_attempts=self._config.disable_after_attempts,
                )
            except Exception as exc:  # noqa: BLE001 - sorted below; cancellation passes
                if not refused(exc):
                    await database.failed(exc)
                    parts.append((part, substituted))
                elif len(part) > 1:
                    half = len(part) // 2
                    parts += [(part[half:], substituted), (part[:half], substituted)]
                else:
                    _substitute(part[0], exc, parts, substituted)
                continue
            database.succeeded()
            hastened += recorded.hastened
            for webhook in recorded.disabled:
                log.warning("webhook %d disabled: %s", webhook.webhook_id, webhook.reason)
        return hastened


def _substitute(
    result: Judged, exc: Exception, parts: list[tuple[list[Judged], bool]], substituted: bool
) -> None:
    """One result the database refused: record it as an internal error instead, or, if even
    that was refused, leave it (its lease expires and the delivery is sent again)."""
    reason = f"{type(exc).__name__}: {first_line(exc)}"[:300]
    delivery = result.delivery
    if substituted:
        log.error(
            "could not record attempt %d of delivery %d even as an internal error (%s);"
            " it is sent again once its lease expires",
            delivery.attempt_number,
            delivery.id,
            reason,
        )
        return
    log.error(
        "the database refused the result of attempt %d of delivery %d (%s); recorded as an internal error",
        delivery.attempt_number,
        delivery.id,
        reason,
    )
    parts.append(([unrecordable(result, reason)], True))
