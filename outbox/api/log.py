"""The delivery log: events, a webhook's deliveries, one delivery with its attempts, retrying it.
Lists are newest first, paginated by an opaque cursor (`next` of one page is `cursor` of the next).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from outbox.admin import deliveries
from outbox.admin.deliveries import MAX_PAGE, StateFilter
from outbox.admin.models import (
    MAX_INT,
    DeliveryDetail,
    DeliveryPage,
    EventAction,
    EventPage,
    When,
)
from outbox.api.auth import require_token
from outbox.api.common import DeliveryId, Engine, WebhookId, responses, route

router = APIRouter(tags=["Delivery log"], dependencies=[Depends(require_token)])

Since = Annotated[When | None, Query(description="Created at or after (ISO 8601).")]
Until = Annotated[When | None, Query(description="Created before (ISO 8601).")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next` of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]


@route(
    router,
    "GET",
    "/api/events/",
    response_model=EventPage,
    summary="List events",
    responses=responses(400, 401),
)
async def list_events(
    engine: Engine,
    action: Annotated[EventAction | None, Query(description="e.g. TASKS_CREATED")] = None,
    project: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    organization: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> EventPage:
    """Events routed from Label Studio's changes (and PINGs), with their deliveries by state."""
    return await deliveries.list_events(
        engine,
        action=action,
        project=project,
        organization=organization,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


StateQuery = Annotated[
    StateFilter | None,
    Query(
        description="pending, failing (pending after a failed attempt; `failed` is the same), "
        "delivered or dead."
    ),
]


@route(
    router,
    "GET",
    "/api/webhooks/{webhook_id:int}/deliveries/",
    response_model=DeliveryPage,
    summary="List a webhook's deliveries",
    responses=responses(400, 401, 404),
)
async def list_webhook_deliveries(
    engine: Engine,
    webhook_id: WebhookId,
    state: StateQuery = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> DeliveryPage:
    return await deliveries.list_deliveries(
        engine, webhook_id, state=state, since=since, until=until, cursor=cursor, limit=limit
    )


@route(
    router,
    "GET",
    "/api/deliveries/",
    response_model=DeliveryPage,
    summary="List deliveries across webhooks",
    responses=responses(400, 401, 404),
)
async def list_deliveries(
    engine: Engine,
    state: StateQuery = None,
    webhook: Annotated[int | None, Query(ge=1, le=MAX_INT, description="Only this webhook's.")] = None,
    project: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    action: Annotated[EventAction | None, Query(description="e.g. TASKS_CREATED")] = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> DeliveryPage:
    """Every webhook's deliveries, newest first: `?state=failing` or `?state=dead` finds what
    needs attention without knowing which webhook (an unknown `webhook` is a 404)."""
    return await deliveries.list_deliveries(
        engine,
        webhook,
        state=state,
        project=project,
        action=action,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


@route(
    router,
    "GET",
    "/api/deliveries/{delivery_id:int}/",
    response_model=DeliveryDetail,
    summary="Get a delivery with its attempts",
    responses=responses(401, 404),
)
async def get_delivery(engine: Engine, delivery_id: DeliveryId) -> DeliveryDetail:
    return await deliveries.get_delivery(engine, delivery_id)


@route(
    router,
    "POST",
    "/api/deliveries/{delivery_id:int}/retry",
    response_model=DeliveryDetail,
    summary="Retry a delivery now",
    responses=responses(401, 404, 409),
)
async def retry_delivery(engine: Engine, delivery_id: DeliveryId) -> DeliveryDetail:
    """Due now, whatever its state, with the same `webhook-id`; a dead delivery gets one more
    attempt. Refused (409) while a relay is attempting it."""
    return await deliveries.retry(engine, delivery_id)
