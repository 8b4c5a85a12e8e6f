"""``/api/actions/``: the action registry (``outbox.action``): list, register, remove custom
actions; and ``POST /api/webhooks/<id>/backfill``, existing rows sent to one webhook on purpose.
``GET /api/webhooks/info/`` (Label Studio's) lists the same actions in Label Studio's shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from outbox.admin import actions, backfill
from outbox.api.auth import require_token
from outbox.api.common import Config, Engine, WebhookId, responses, route

router = APIRouter(tags=["Actions"], dependencies=[Depends(require_token)])

ActionName = Annotated[str, Path(max_length=100, description="Action name.", examples=["MODEL_TRAINED"])]


@route(
    router,
    "GET",
    "/api/actions/",
    response_model=list[actions.RegisteredAction],
    summary="List every action",
    responses=responses(401),
)
async def list_actions(engine: Engine) -> list[actions.RegisteredAction]:
    """Label Studio's built-in actions, then the custom ones, in registration order."""
    return list(await actions.list_actions(engine))


@route(
    router,
    "POST",
    "/api/actions/",
    response_model=actions.RegisteredAction,
    status_code=201,
    summary="Register a custom action",
    responses=responses(400, 401, 409),
)
async def add_action(engine: Engine, body: actions.ActionCreate) -> actions.RegisteredAction:
    """Webhooks may then list it; application code sends it with `outbox.emit`."""
    return await actions.add(engine, body)


@route(
    router,
    "DELETE",
    "/api/actions/{name}/",
    status_code=204,
    summary="Remove a custom action",
    responses=responses(401, 404, 409),
)
async def remove_action(engine: Engine, name: ActionName) -> Response:
    """Refused (409) for a built-in action, and for one that some webhook lists (named)."""
    await actions.remove(engine, name)
    return Response(status_code=204)


@route(
    router,
    "POST",
    "/api/webhooks/{webhook_id:int}/backfill",
    response_model=backfill.Backfilled,
    status_code=201,
    summary="Send existing rows to one webhook",
    responses=responses(400, 401, 404),
)
async def backfill_webhook(
    engine: Engine, settings: Config, webhook_id: WebhookId, body: backfill.BackfillRequest
) -> backfill.Backfilled:
    """One TASKS_CREATED per project (the webhook's, `project`, or all of its organization's) with
    its tasks (created at or after `since`), in chunks as an import: for this webhook alone."""
    return await backfill.backfill(
        engine,
        webhook_id,
        body,
        batch_size=settings.webhook_batch_size,
        max_bytes=settings.max_body_bytes,
    )
