"""The deliveries pages: every webhook's deliveries, filtered by state, webhook, project and
action; one delivery with its body and every attempt (status, duration, error, response excerpt,
request headers masked); retrying it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from starlette.responses import Response

from outbox.admin import actions, deliveries, payloads, webhooks
from outbox.admin.errors import Invalid
from outbox.admin.models import MAX_INT, Attempt
from outbox.api.common import DeliveryId, Engine
from outbox.console import forms, render
from outbox.console.common import Seen, notice, router, shown
from relay.actions import PING

pages = router()

STATES = ("pending", "failing", "delivered", "dead")
PAGE = 50
# headers of an attempt that are outbox's own and never secret; every other value is shown masked
# (the relay logs static header values masked already: this holds even for older rows)
PLAIN_HEADERS = frozenset(
    {"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"}
)


def _id(text: str, name: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) <= MAX_INT:
        raise Invalid({name: ["A valid id is required."]})
    return int(text)


def readable(body: payloads.Body) -> str | None:
    """A whole JSON body indented, to be read; anything else as it is."""
    if body.text is None or body.truncated:
        return body.text
    try:
        return orjson.dumps(orjson.loads(body.text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return body.text


def masked_headers(attempt: Attempt) -> dict[str, str]:
    return {
        name: str(value) if name.lower() in PLAIN_HEADERS else forms.MASK
        for name, value in attempt.request_headers.items()
    }


@pages.get("/deliveries")
@shown
async def index(request: Request, visitor: Seen, engine: Engine) -> Response:
    query = request.query_params
    state = query.get("state", "")
    action = query.get("action", "")
    if state and state not in STATES:
        raise Invalid({"state": [f"One of {', '.join(STATES)}."]})
    names = [a.name for a in await actions.list_actions(engine)] + [PING]
    if action and action not in names:
        raise Invalid({"action": ["Not a known action."]})
    webhook = _id(query.get("webhook", ""), "webhook")
    project = _id(query.get("project", ""), "project")
    cursor = query.get("cursor") or None
    found = await deliveries.list_deliveries(
        engine,
        webhook,
        state=state or None,  # type: ignore[arg-type]
        project=project,
        action=action or None,
        cursor=cursor,
        limit=PAGE,
    )
    filters: dict[str, Any] = {
        "state": state,
        "webhook": "" if webhook is None else str(webhook),
        "project": "" if project is None else str(project),
        "action": action,
    }
    kept = {name: value for name, value in filters.items() if value}
    context = {
        "deliveries": found.results,
        "filters": filters,
        "states": STATES,
        "actions": names,
        "webhooks": await webhooks.list_webhooks(engine),
        "next_page": f"/deliveries?{urlencode({**kept, 'cursor': found.next})}" if found.next else None,
        "first_page": f"/deliveries?{urlencode(kept)}" if cursor else None,
    }
    template = "deliveries_table.html" if request.headers.get("hx-request") == "true" else "deliveries.html"
    return render.page(request, visitor, template, context)


@pages.get("/deliveries/{delivery_id:int}")
@shown
async def show(request: Request, visitor: Seen, engine: Engine, delivery_id: DeliveryId) -> Response:
    detail = await deliveries.get_delivery(engine, delivery_id)
    body = await payloads.delivery_body(engine, delivery_id)
    context = {
        "delivery": detail,
        "body": body,
        "body_text": readable(body),
        "attempts": [(attempt, masked_headers(attempt)) for attempt in reversed(detail.attempt_log)],
        "notice": notice(request),
        # pending: the page follows it until it is settled
        "live": detail.state == "pending",
    }
    template = "delivery_panel.html" if request.headers.get("hx-request") == "true" else "delivery.html"
    return render.page(request, visitor, template, context)


@pages.post("/deliveries/{delivery_id:int}/retry")
@shown
async def retry(
    request: Request, visitor: Seen, engine: Engine, delivery_id: DeliveryId, form: forms.Submitted
) -> Response:
    await deliveries.retry(engine, delivery_id)
    return render.redirect(f"/deliveries/{delivery_id}?notice=retried")
