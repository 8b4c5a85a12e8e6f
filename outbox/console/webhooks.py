"""The webhooks pages: every webhook with its health; one webhook with its settings, recent
deliveries and what can be done to it (edit, pause, resume, test, rotate the secret, recover a
time range, delete). Each operation is the admin layer's, as behind the API and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from outbox.admin import actions, adopt, deliveries, metrics, pipeline, webhooks
from outbox.admin.errors import Invalid, flatten, from_validation_error
from outbox.admin.models import WebhookCreate, WebhookUpdate
from outbox.api.auth import Visitor
from outbox.api.common import Config, Engine, WebhookId
from outbox.console import forms, render
from outbox.console.common import Seen, notice, router, shown

pages = router()

RECENT = 20


def _errors(exc: Invalid) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, message in flatten(exc.errors):
        found.setdefault(name.split(".")[0], []).append(message)
    return found


@pages.get("/")
@shown
async def index(request: Request, visitor: Seen, engine: Engine) -> Response:
    hooks = await webhooks.list_webhooks(engine)
    counts = await pipeline.webhook_counts(engine)
    snap = await metrics.snapshot(engine)
    context = {
        "webhooks": hooks,
        "counts": counts,
        "empty": pipeline.WebhookCounts(),
        "snap": snap,
        "notice": notice(request),
    }
    template = "webhooks_table.html" if request.headers.get("hx-request") == "true" else "webhooks.html"
    return render.page(request, visitor, template, context)


async def _form_page(
    request: Request,
    visitor: Visitor,
    engine: AsyncEngine,
    *,
    values: dict[str, Any],
    webhook: Any = None,
    errors: dict[str, list[str]] | None = None,
) -> Response:
    # the registry's actions: Label Studio's and the custom ones (outbox.action)
    names = [a.name for a in await actions.list_actions(engine)]
    context = {"values": values, "webhook": webhook, "errors": errors or {}, "all_actions": names}
    return render.page(request, visitor, "webhook_form.html", context, status=400 if errors else 200)


@pages.get("/webhooks/new")
async def new_form(request: Request, visitor: Seen, engine: Engine) -> Response:
    return await _form_page(request, visitor, engine, values=forms.blank_values())


@pages.post("/webhooks/new")
async def create(
    request: Request, visitor: Seen, engine: Engine, settings: Config, form: forms.Submitted
) -> Response:
    try:
        data = WebhookCreate.model_validate(forms.webhook_input(form, creating=True, current_headers={}))
        created = await webhooks.create(
            engine, data, max_per_organization=settings.max_webhooks_per_organization
        )
    except ValidationError as exc:
        return await _form_page(
            request,
            visitor,
            engine,
            values=forms.values_from(form),
            errors=_errors(from_validation_error(exc)),
        )
    except Invalid as exc:
        return await _form_page(request, visitor, engine, values=forms.values_from(form), errors=_errors(exc))
    return render.redirect(f"/webhooks/{created.id}?notice=created")


@pages.get("/webhooks/{webhook_id:int}")
@shown
async def show(request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId) -> Response:
    webhook = await webhooks.get(engine, webhook_id)
    counts = (await pipeline.webhook_counts(engine)).get(webhook_id, pipeline.WebhookCounts())
    recent = await deliveries.list_deliveries(engine, webhook_id, limit=RECENT)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    context = {
        "webhook": webhook,
        "counts": counts,
        "recent": recent.results,
        "more": recent.next is not None,
        "since": since,
        "notice": notice(request),
        "redelivered": request.query_params.get("n", "")
        if request.query_params.get("n", "").isdigit()
        else None,
        "header_names": list(webhook.headers),
    }
    return render.page(request, visitor, "webhook.html", context)


@pages.get("/webhooks/{webhook_id:int}/edit")
@shown
async def edit_form(request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId) -> Response:
    webhook = await webhooks.get(engine, webhook_id)
    return await _form_page(request, visitor, engine, values=forms.values_of(webhook), webhook=webhook)


@pages.post("/webhooks/{webhook_id:int}/edit")
@shown
async def edit(
    request: Request,
    visitor: Seen,
    engine: Engine,
    settings: Config,
    webhook_id: WebhookId,
    form: forms.Submitted,
) -> Response:
    webhook = await webhooks.get(engine, webhook_id)
    try:
        data = WebhookUpdate.model_validate(
            forms.webhook_input(form, creating=False, current_headers=webhook.headers)
        )
        await webhooks.update(engine, webhook_id, data, secret_grace=settings.secret_grace)
    except ValidationError as exc:
        errors = _errors(from_validation_error(exc))
        return await _form_page(
            request, visitor, engine, values=forms.values_from(form), webhook=webhook, errors=errors
        )
    except Invalid as exc:
        return await _form_page(
            request, visitor, engine, values=forms.values_from(form), webhook=webhook, errors=_errors(exc)
        )
    return render.redirect(f"/webhooks/{webhook_id}?notice=saved")


@pages.post("/webhooks/{webhook_id:int}/pause")
@shown
async def pause(
    request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId, form: forms.Submitted
) -> Response:
    await webhooks.set_active(engine, webhook_id, False)
    return render.redirect(f"/webhooks/{webhook_id}?notice=paused")


@pages.post("/webhooks/{webhook_id:int}/resume")
@shown
async def resume(
    request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId, form: forms.Submitted
) -> Response:
    await webhooks.set_active(engine, webhook_id, True)
    return render.redirect(f"/webhooks/{webhook_id}?notice=resumed")


@pages.post("/webhooks/{webhook_id:int}/test")
@shown
async def test(
    request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId, form: forms.Submitted
) -> Response:
    delivery_id = await webhooks.send_test(engine, webhook_id)
    return render.redirect(f"/deliveries/{delivery_id}?notice=test")


@pages.post("/webhooks/{webhook_id:int}/rotate-secret")
@shown
async def rotate_secret(
    request: Request,
    visitor: Seen,
    engine: Engine,
    settings: Config,
    webhook_id: WebhookId,
    form: forms.Submitted,
) -> Response:
    """The new secret is on this answer only (not a redirect: it is shown once, never stored
    anywhere the browser could show it again; the page is not cached)."""
    rotated = await webhooks.rotate_secret(engine, webhook_id, None, grace=settings.secret_grace)
    return render.page(request, visitor, "secret.html", {"rotated": rotated, "webhook": rotated.webhook})


def _moment(text: str, field_name: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid({field_name: ["Use a date and time, e.g. 2026-01-31T12:00."]}) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pages.post("/webhooks/{webhook_id:int}/recover")
@shown
async def recover(
    request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId, form: forms.Submitted
) -> Response:
    since = _moment(form.get("since"), "since")
    if since is None:
        raise Invalid({"since": ["Say from when: deliveries created since then are recovered."]})
    until = _moment(form.get("until"), "until")
    recovered = await deliveries.recover(engine, webhook_id, since=since, until=until)
    return render.redirect(f"/webhooks/{webhook_id}?notice=recovered&n={recovered.redelivered}")


@pages.get("/webhooks/{webhook_id:int}/delete")
@shown
async def delete_form(request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId) -> Response:
    webhook = await webhooks.get(engine, webhook_id)
    counts = (await pipeline.webhook_counts(engine)).get(webhook_id, pipeline.WebhookCounts())
    return render.page(request, visitor, "delete.html", {"webhook": webhook, "counts": counts})


@pages.post("/webhooks/{webhook_id:int}/delete")
@shown
async def delete(
    request: Request, visitor: Seen, engine: Engine, webhook_id: WebhookId, form: forms.Submitted
) -> Response:
    await webhooks.delete(engine, webhook_id)
    return render.redirect("/?notice=deleted")


@pages.get("/adopt")
@shown
async def adopt_plan(request: Request, visitor: Seen, engine: Engine, settings: Config) -> Response:
    """What adopting Label Studio's own webhooks would do (a dry run: nothing changes)."""
    report = await adopt.adopt(
        engine, dry_run=True, deactivate=True, max_per_organization=settings.max_webhooks_per_organization
    )
    return render.page(request, visitor, "adopt.html", {"report": report, "done": False})


@pages.post("/adopt")
@shown
async def adopt_now(
    request: Request, visitor: Seen, engine: Engine, settings: Config, form: forms.Submitted
) -> Response:
    report = await adopt.adopt(
        engine,
        deactivate=form.checked("deactivate"),
        max_per_organization=settings.max_webhooks_per_organization,
    )
    return render.page(request, visitor, "adopt.html", {"report": report, "done": True})
