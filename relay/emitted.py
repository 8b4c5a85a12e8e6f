"""Emitted events (``outbox.emit``, ``outbox.run_webhook``; sql/0007_actions.sql): routed with the
changes of their transaction, built with the other payloads; sql/queries.sql, section "relay:
emitted events".

An emitting transaction leaves one marker row in ``outbox.change``; the route stage hands its
changes here and this is the only code that looks for markers, so captured changes cost nothing
more. The events exist already (the caller got their ids): routing matches them against the
webhooks of the moment, as it does captured changes, writes their payload rows and deliveries,
and forgets those no webhook gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
from psycopg.rows import DictRow

from outbox.sql import query
from relay import chunks, payloads
from relay.actions import BUILT_IN
from relay.database import Conn
from relay.events import Event
from relay.routing import Routed, Webhook, plan_emitted

# outbox.change.table_name of an emitting transaction's marker
MARKER = "emitted"


async def route(
    conn: Conn,
    changes: Sequence[DictRow],
    webhooks: Sequence[Webhook],
    *,
    settle: timedelta,
    max_bytes: int,
) -> list[Routed]:
    """Route the events emitted by the transactions of ``changes`` (rows of ``take_changes``,
    none held), in the caller's routing transaction. No statement unless some change is a marker."""
    xids = [row["xid"] for row in changes if row["table_name"] == MARKER]
    if not xids:
        return []
    captured = _captured(changes)
    rows = await (await conn.execute(query("take_emitted"), {"xids": xids})).fetchall()
    routed = [
        plan_emitted(
            Event(
                int(r["xid"]), r["action"], r["organization_id"], r["project_id"], (), captured.get(r["xid"])
            ),
            r["webhook_id"],
            webhooks,
            payloads.emitted_estimate(r["size"], r["project_bytes"], r["project_id"] is not None),
        )
        for r in rows
    ]
    if routed:
        targets = [(r["event_id"], w.id) for r, x in zip(rows, routed, strict=True) for w in x.webhooks]
        await conn.execute(
            query("route_emitted"),
            {
                "event_ids": [r["event_id"] for r in rows],
                "needs_payload": [x.needs_payload for x in routed],
                "sizes": [x.chunks[0].bytes for x in routed],
                "errors": [_too_large(x, max_bytes) for x in routed],
                "target_events": [event_id for event_id, _ in targets],
                "target_webhooks": [webhook_id for _, webhook_id in targets],
                "settle": settle,
            },
        )
    return [x for x in routed if x.webhooks]


def _captured(changes: Sequence[DictRow]) -> dict[str, datetime]:
    """When each transaction's last change was captured, by xid: an emitted event is matched as of
    its transaction's commit like a captured change (docs/decisions.md, "Matching"), so a webhook
    created, or paused, after it never gets it however late it is routed."""
    captured: dict[str, datetime] = {}
    for row in changes:
        at = row["captured_at"]
        if at is not None and (row["xid"] not in captured or at > captured[row["xid"]]):
            captured[row["xid"]] = at
    return captured


def _too_large(routed: Routed, max_bytes: int) -> str | None:
    """Why an emitted event's body is not built: over the byte budget, as a captured row would be."""
    chunk = routed.chunks[0]
    if not chunks.too_large(chunk, max_bytes):
        return None
    size = f"{chunk.bytes / 1048576:.1f} MiB" if chunk.bytes >= 1048576 else f"{chunk.bytes} bytes"
    return (
        f"the body of {routed.event.action} would take about {size}, over OUTBOX_MAX_BODY_BYTES "
        f"({max_bytes} bytes): not built, not sent"
    )


async def fetch_payloads(conn: Conn, event_ids: Sequence[tuple[int, str]]) -> dict[int, payloads.Emitted]:
    """The stored payloads of the emitted events among ``(event id, action)`` pairs about to be
    built, by event id. No statement when none is emitted (every built-in action's body is built
    from rows)."""
    wanted = [event_id for event_id, action in event_ids if action not in BUILT_IN]
    if not wanted:
        return {}
    rows = await (await conn.execute(query("fetch_emitted"), {"event_ids": wanted})).fetchall()
    return {r["event_id"]: payloads.Emitted(r["payload_key"], orjson.Fragment(r["payload"])) for r in rows}
