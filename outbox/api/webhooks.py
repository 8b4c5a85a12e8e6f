"""``/api/webhooks/``: Label Studio's webhooks API, answering as Label Studio 1.23.2 does (fields,
defaults, status codes, error format), with outbox's fields added and two differences users asked
for: organization-level webhooks can be created, and a PATCH without ``actions`` keeps them.
Plus outbox's own operations on one webhook: test, rotate-secret, pause, resume, recover."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from outbox.admin import actions, deliveries, webhooks
from outbox.admin.errors import invalid
from outbox.admin.models import (
    MAX_INT,
    ActionInfo,
    DeliveryDetail,
    Recovered,
    RecoverRequest,
    SecretRotated,
    SecretRotation,
    Webhook,
    WebhookCreate,
    WebhookUpdate,
)
from outbox.api.auth import require_token
from outbox.api.common import Config, Engine, WebhookId, responses, route

public = APIRouter(prefix="/api/webhooks", tags=["Webhooks"])
router = APIRouter(prefix="/api/webhooks", tags=["Webhooks"], dependencies=[Depends(require_token)])


@route(public, "GET", "/info/", response_model=dict[str, ActionInfo], summary="Get all webhook actions")
async def info(
    engine: Engine,
    organization_only: Annotated[
        str | None,
        Query(
            alias="organization-only",
            description="`true`: only organization-only actions; any other value: only the others.",
        ),
    ] = None,
) -> dict[str, ActionInfo]:
    """Every action a webhook can subscribe to: name, description, payload key, and whether only
    organization-level webhooks get it: Label Studio's, then the custom ones registered in
    `outbox.action`. Public, as in Label Studio."""
    return actions.info(await actions.list_actions(engine), organization_only)


def _project_filter(project: str | None) -> webhooks.ProjectFilter:
    if project is None or project == "":
        return None
    if project == "null":
        return "null"
    if project.isdigit() and 0 < int(project) <= MAX_INT:
        return int(project)
    raise invalid("project", "Select a valid choice. That choice is not one of the available choices.")


@route(
    router,
    "GET",
    "/",
    response_model=list[Webhook],
    summary="List all webhooks",
    responses=responses(400, 401),
)
async def list_webhooks(
    engine: Engine,
    project: Annotated[
        str | None,
        Query(
            description="Project id, or `null` for organization-level webhooks.",
            pattern="^([1-9][0-9]{0,9}|null)?$",
        ),
    ] = None,
    organization: Annotated[int | None, Query(ge=1, le=MAX_INT, description="Organization id.")] = None,
) -> list[Webhook]:
    return await webhooks.list_webhooks(engine, project=_project_filter(project), organization=organization)


@route(
    router,
    "POST",
    "/",
    response_model=Webhook,
    status_code=201,
    summary="Create a webhook",
    responses=responses(400, 401),
)
async def create_webhook(engine: Engine, settings: Config, body: WebhookCreate) -> Webhook:
    """Without `project`, an organization-level webhook (it also gets PROJECT_CREATED and
    PROJECT_DELETED). The organization is the project's; else `organization`; else the database's
    only organization. At most OUTBOX_MAX_WEBHOOKS_PER_ORGANIZATION per organization."""
    return await webhooks.create(engine, body, max_per_organization=settings.max_webhooks_per_organization)


@route(
    router,
    "GET",
    "/{webhook_id:int}/",
    response_model=Webhook,
    summary="Get webhook info",
    responses=responses(401, 404),
)
async def get_webhook(engine: Engine, webhook_id: WebhookId) -> Webhook:
    return await webhooks.get(engine, webhook_id)


@route(
    router,
    "PUT",
    "/{webhook_id:int}/",
    response_model=Webhook,
    summary="Save webhook info",
    responses=responses(400, 401, 404),
)
async def put_webhook(
    engine: Engine, settings: Config, webhook_id: WebhookId, body: WebhookCreate
) -> Webhook:
    """`url` is required; fields not sent keep their values; `project` cannot change."""
    return await webhooks.update(engine, webhook_id, body, secret_grace=settings.secret_grace)


@route(
    router,
    "PATCH",
    "/{webhook_id:int}/",
    response_model=Webhook,
    summary="Update webhook info",
    responses=responses(400, 401, 404),
)
async def patch_webhook(
    engine: Engine, settings: Config, webhook_id: WebhookId, body: WebhookUpdate
) -> Webhook:
    """Only the fields sent change (`actions` too: omitted, they are kept). A new `secret` keeps
    the old one signing for OUTBOX_SECRET_GRACE; `is_active: false` pauses, `true` resumes."""
    return await webhooks.update(engine, webhook_id, body, secret_grace=settings.secret_grace)


@route(
    router,
    "DELETE",
    "/{webhook_id:int}/",
    status_code=204,
    response_class=Response,
    summary="Delete webhook info",
    responses=responses(401, 404),
)
async def delete_webhook(engine: Engine, webhook_id: WebhookId) -> Response:
    """The webhook goes with its deliveries and their attempt log."""
    await webhooks.delete(engine, webhook_id)
    return Response(status_code=204)


@route(
    router,
    "POST",
    "/{webhook_id:int}/test",
    response_model=DeliveryDetail,
    status_code=201,
    summary="Send a test event (PING)",
    responses=responses(401, 404, 409),
)
async def test_webhook(
    engine: Engine,
    webhook_id: WebhookId,
    wait: Annotated[
        float, Query(ge=0, le=30, description="Seconds to wait for the first attempt's outcome.")
    ] = 0,
) -> DeliveryDetail:
    """Queues `{"action": "PING", "webhook": {"id": N}}` for this webhook alone, through the
    normal pipeline (signed, logged, retried). With `wait`, answers once a relay has made the
    first attempt (at once when no relay is running)."""
    delivery_id = await webhooks.send_test(engine, webhook_id)
    return await deliveries.wait_for_outcome(engine, delivery_id, wait)


@route(
    router,
    "POST",
    "/{webhook_id:int}/rotate-secret",
    response_model=SecretRotated,
    summary="Rotate the signing secret",
    responses=responses(400, 401, 404),
)
async def rotate_secret(
    engine: Engine,
    settings: Config,
    webhook_id: WebhookId,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> SecretRotated:
    """A new secret (generated unless one is sent; a generated one is in this answer only). The
    old secret also signs for OUTBOX_SECRET_GRACE (default 24 h), so receivers can switch."""
    secret = body.secret if body is not None else None
    return await webhooks.rotate_secret(engine, webhook_id, secret, grace=settings.secret_grace)


@route(
    router,
    "POST",
    "/{webhook_id:int}/pause",
    response_model=Webhook,
    summary="Pause a webhook",
    responses=responses(401, 404),
)
async def pause(engine: Engine, webhook_id: WebhookId) -> Webhook:
    """Stops sending; new events still queue deliveries for it, sent once it is resumed."""
    return await webhooks.set_active(engine, webhook_id, False)


@route(
    router,
    "POST",
    "/{webhook_id:int}/resume",
    response_model=Webhook,
    summary="Resume a webhook",
    responses=responses(401, 404),
)
async def resume(engine: Engine, webhook_id: WebhookId) -> Webhook:
    """Also re-enables a webhook the relay disabled, clearing its failure count."""
    return await webhooks.set_active(engine, webhook_id, True)


@route(
    router,
    "POST",
    "/{webhook_id:int}/recover",
    response_model=Recovered,
    summary="Redeliver failed and dead deliveries",
    responses=responses(400, 401, 404),
)
async def recover(engine: Engine, webhook_id: WebhookId, body: RecoverRequest) -> Recovered:
    """Every delivery of this webhook created in `[since, until)` that is dead, or pending after a
    failed attempt, is made due now (same `webhook-id`). Deliveries in flight are left alone."""
    return await deliveries.recover(engine, webhook_id, since=body.since, until=body.until)
