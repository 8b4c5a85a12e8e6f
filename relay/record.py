"""Record: a batch of attempts, the deliveries' states, webhook health and the webhooks to disable,
in one transaction; sql/queries.sql, section "relay: claiming and recording deliveries"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from psycopg.rows import DictRow

from outbox.sql import query
from relay.database import Conn, transaction
from relay.deliveries import (
    INT4_MAX,
    Judged,
    record_of,
)

LONGEST_DISABLE_AFTER = timedelta(days=36500)


@dataclass(frozen=True)
class Disabled:
    webhook_id: int
    reason: str


@dataclass(frozen=True)
class Recorded:
    """What recording a batch did besides logging its attempts."""

    disabled: list[Disabled]
    # deliveries made due at once because their webhook answered 2xx again
    hastened: int = 0


async def record_results(
    conn: Conn,
    results: Sequence[Judged],
    *,
    relay_id: UUID,
    disable_after: timedelta,
    disable_after_attempts: int,
) -> Recorded:
    """Write a batch of attempts, the delivery states, webhook health; make the waiting retries
    of a webhook that answers 2xx again due at once; disable webhooks that asked for it (410) or
    have failed for too long. Every value passes through ``deliveries.record_of`` first."""
    records = [record_of(r) for r in results]
    # Settings reach SQL too: now() minus the largest timedelta is no timestamp, and no webhook has
    # failed for longer than a century (nor more often than an integer counts).
    disable_after = min(disable_after, LONGEST_DISABLE_AFTER)
    disable_after_attempts = min(disable_after_attempts, INT4_MAX)
    health: dict[int, tuple[bool, int]] = {}
    recovered: set[int] = set()  # a success after failures within this batch
    for record in records:
        succeeded, failures = health.get(record.webhook_id, (False, 0))
        if record.state == "delivered":  # only a 2xx delivers
            if failures:
                recovered.add(record.webhook_id)
            health[record.webhook_id] = (True, 0)
        else:
            health[record.webhook_id] = (succeeded, failures + 1)
    to_disable = {r.webhook_id: r.disable_reason for r in records if r.disable_reason}
    back = [webhook for webhook, (succeeded, _) in health.items() if succeeded]
    # The connection decides durability: the recorder's commits without waiting for the WAL flush
    # (a result lost in a database crash means that delivery is sent again, same webhook-id).
    async with transaction(conn):
        recorded = await conn.execute(
            query("record_results"),
            {
                "relay_id": relay_id,
                "delivery_ids": [r.delivery_id for r in records],
                "attempts": [r.attempt for r in records],
                "states": [r.state for r in records],
                "delays": [r.delay for r in records],
                "started_at": [r.started_at for r in records],
                "durations": [r.duration_ms for r in records],
                "statuses": [r.status for r in records],
                "error_classes": [r.error_class for r in records],
                "errors": [r.error for r in records],
                "bodies": [r.response_body for r in records],
                "headers": [r.request_headers for r in records],
                "back": back,
                "recovered": sorted(recovered),
                "webhook_ids": list(health),
                "succeeded": [h[0] for h in health.values()],
                "failures": [h[1] for h in health.values()],
            },
        )
        disabled: list[DictRow] = []
        if to_disable:
            disabled += await (
                await conn.execute(
                    query("disable_webhooks"),
                    {"webhook_ids": list(to_disable), "reasons": list(to_disable.values())},
                )
            ).fetchall()
        failing = [w for w, (_, failures) in health.items() if failures]
        if failing:
            disabled += await (
                await conn.execute(
                    query("disable_failing_webhooks"),
                    {
                        "webhook_ids": failing,
                        "min_attempts": disable_after_attempts,
                        "min_duration": disable_after,
                    },
                )
            ).fetchall()
        counted = await recorded.fetchone()
    return Recorded(
        [Disabled(row["id"], row["disabled_reason"]) for row in disabled],
        int(counted["hastened"]) if counted is not None else 0,
    )
