"""``POST /api/webhooks/adopt``: copy Label Studio's own webhooks into outbox (``outbox webhooks
adopt`` from the shell, and the console's button, do the same)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from outbox.admin import adopt
from outbox.api.auth import require_token
from outbox.api.common import Config, Engine, responses, route

router = APIRouter(prefix="/api/webhooks", tags=["Webhooks"], dependencies=[Depends(require_token)])


@route(
    router,
    "POST",
    "/adopt",
    response_model=adopt.AdoptReport,
    summary="Adopt Label Studio's own webhooks",
    responses=responses(400, 401, 409),
)
async def adopt_webhooks(
    engine: Engine, settings: Config, body: adopt.AdoptRequest | None = None
) -> adopt.AdoptReport:
    """Copy each of Label Studio's webhooks (its settings page's: url, headers, send_payload,
    send_for_all_actions, actions, project, organization) into outbox, once: Label Studio
    webhooks adopted before are reported, not copied again. `deactivate` sets Label Studio's
    copies inactive in the same transaction, so receivers do not get everything twice; `dry_run`
    changes nothing. A webhook outbox cannot take is skipped with the reason, and stays active in
    Label Studio. Header values are never in the answer. 409 when the database has no Label
    Studio webhook tables."""
    request = body or adopt.AdoptRequest.model_validate({})
    return await adopt.adopt(
        engine,
        project=request.project,
        deactivate=request.deactivate,
        dry_run=request.dry_run,
        max_per_organization=settings.max_webhooks_per_organization,
    )
