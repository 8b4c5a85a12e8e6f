"""Matching: which webhooks get an event (docs/design.md §6, Label Studio's rules).

Same organization; a project-level webhook gets only its project's events and never the
organization-only actions; an organization-level webhook gets every event of the organization;
the webhook is active; it takes all actions or lists this one (opt-in actions only when listed);
and it was subscribed when the event's transaction committed (docs/decisions.md, "Matching").
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from relay import chunks
from relay.actions import CHUNKED, OPT_IN, ORGANIZATION_ONLY
from relay.chunks import Chunk
from relay.events import Event
from relay.payloads import DELETED_ROWS


@dataclass(frozen=True)
class Webhook:
    """The part of a webhook that routing looks at."""

    id: int
    organization_id: int
    project_id: int | None
    is_active: bool
    send_for_all_actions: bool
    actions: frozenset[str]
    send_payload: bool
    # since when it exists (None: always, as in tests of the other rules)
    created_at: datetime | None = None
    # its last pause, if it was made active again since: [paused_from, paused_until)
    paused_from: datetime | None = None
    paused_until: datetime | None = None
    # what its delete events list: "ids" (Label Studio's {"id": N}) or "rows" (the deleted rows)
    delete_payload: str = "ids"


def subscribed(webhook: Webhook, event: Event) -> bool:
    """Whether the webhook existed, active, when the event's changes were captured: a change
    captured before it was created, or during its last pause, is a backlog it must not receive."""
    captured = event.captured_at
    if captured is None:
        return True
    if webhook.created_at is not None and captured < webhook.created_at:
        return False
    if webhook.paused_from is not None and webhook.paused_until is not None:
        return not webhook.paused_from <= captured < webhook.paused_until
    return True


def matches(webhook: Webhook, event: Event) -> bool:
    """Whether ``webhook`` gets ``event``."""
    if not webhook.is_active or event.organization_id != webhook.organization_id:
        return False
    if webhook.project_id is not None and (
        webhook.project_id != event.project_id or event.action in ORGANIZATION_ONLY
    ):
        return False
    if not subscribed(webhook, event):
        return False
    if event.action in OPT_IN:
        return event.action in webhook.actions
    return webhook.send_for_all_actions or event.action in webhook.actions


def route(event: Event, webhooks: Iterable[Webhook]) -> list[Webhook]:
    """The webhooks that get ``event``, in id order."""
    return sorted((w for w in webhooks if matches(w, event)), key=lambda w: w.id)


@dataclass(frozen=True)
class Routed:
    """An event with the webhooks it goes to and how its payload is split into POSTs."""

    event: Event
    webhooks: tuple[Webhook, ...]
    # the most rows one POST holds: WEBHOOK_BATCH_SIZE for chunked actions, else all of them
    chunk_size: int
    chunks: tuple[Chunk, ...]
    # a delete event for the webhooks whose delete_payload is 'rows': its body lists the rows
    deleted_rows: bool = False

    @functools.cached_property  # asked several times per event while routing: 1.6 % of a drain
    def needs_payload(self) -> bool:
        """Whether a body must be built (webhooks with send_payload off get only the action)."""
        return any(w.send_payload for w in self.webhooks)

    def sized(self, row_bytes: Sequence[int], envelope: int, max_bytes: int) -> Routed:
        """The same event, split by bytes as well as rows (``row_bytes``: each row's estimated
        size, in ``event.row_ids`` order; ``envelope``: what every body holds besides them). Actions
        Label Studio sends whole (deletes list every id) stay one chunk: only its size is known."""
        bound = max_bytes if self.event.action in CHUNKED else None
        split = chunks.split(row_bytes, max_rows=self.chunk_size, max_bytes=bound, envelope=envelope)
        return replace(self, chunks=tuple(split))


def plan_emitted(event: Event, target: int | None, webhooks: Iterable[Webhook], size: int) -> Routed:
    """An emitted event's route: every matching webhook, or only ``target`` (``run_webhook``,
    whatever actions it lists) while it is active. One chunk of no rows, of ``size`` bytes."""
    if target is None:
        chosen = route(event, webhooks)
    else:
        chosen = [w for w in webhooks if w.id == target and w.is_active]
    return Routed(event, tuple(chosen), 1, (Chunk(0, 0, size, size),))


def plan(events: Iterable[Event], webhooks: Iterable[Webhook], batch_size: int) -> list[Routed]:
    """Route every event, and split chunked actions into POSTs of ``batch_size`` rows (``sized``
    then bounds them by bytes too, once the rows' sizes are known)."""
    candidates = list(webhooks)
    routed = []
    for event in events:
        rows = len(event.row_ids)
        chunk_size = batch_size if event.action in CHUNKED else max(1, rows)
        split = tuple(chunks.by_rows(rows, chunk_size))
        matched = route(event, candidates)
        with_rows = [w for w in matched if event.action in DELETED_ROWS and w.delete_payload == "rows"]
        ids_only = [w for w in matched if w not in with_rows]
        # one stored body per event: webhooks that want the deleted rows get an event of their own
        if ids_only or not with_rows:
            routed.append(Routed(event, tuple(ids_only), chunk_size, split))
        if with_rows:
            routed.append(Routed(event, tuple(with_rows), chunk_size, split, deleted_rows=True))
    return routed


def too_large_reason(event: Event, chunk: Chunk, max_bytes: int) -> str | None:
    """Why a chunk's body is not built: one row that alone is over the byte budget (or the
    project, which every body holds); None when it fits."""
    if not chunks.too_large(chunk, max_bytes):
        return None
    if chunk.envelope > max_bytes:  # no row is the cause: every body of the event is too large
        row = f" (the project {event.project_id} alone takes {chunk.envelope} bytes)"
    else:
        row = f" (row {event.row_ids[chunk.start]})" if chunk.rows == 1 else ""
    size = f"{chunk.bytes / 1048576:.1f} MiB" if chunk.bytes >= 1048576 else f"{chunk.bytes} bytes"
    return (
        f"the body would take about {size}{row}, over OUTBOX_MAX_BODY_BYTES ({max_bytes} bytes): "
        "not built, not sent"
    )


def event_row(routed: Routed, max_bytes: int) -> dict[str, object]:
    """One routed event as sql/queries.sql's ``insert_events`` reads it (a JSON object per event,
    its chunks cut): the relay's routing and the admin's backfill write events through it alike."""
    event = routed.event
    return {
        "xid": None if event.xid is None else str(event.xid),
        "action": event.action,
        "organization_id": event.organization_id,
        "project_id": event.project_id,
        "row_ids": list(event.row_ids),
        "chunk_size": routed.chunk_size,
        "chunk_starts": [c.start for c in routed.chunks],
        "chunk_ends": [c.end for c in routed.chunks],
        "chunk_bytes": [c.bytes for c in routed.chunks],
        "chunk_errors": [too_large_reason(event, c, max_bytes) for c in routed.chunks],
        "webhook_ids": [w.id for w in routed.webhooks],
        "needs_payload": routed.needs_payload,
    }
