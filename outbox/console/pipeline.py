"""The pipeline page: relays with their heartbeat, routing lag, queue depth, oldest pending age,
events and attempts per minute. It refreshes itself (htmx, every few seconds; a plain reload
without JavaScript)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from outbox.admin import metrics, pipeline
from outbox.api.common import Engine
from outbox.console import render
from outbox.console.common import Seen, router, shown

pages = router()
REFRESH_SECONDS = 5


@pages.get("/pipeline")
@shown
async def show(request: Request, visitor: Seen, engine: Engine) -> Response:
    context = {
        "snap": await metrics.snapshot(engine),
        "relays": await pipeline.relays(engine),
        "flow": await pipeline.flow(engine),
        "refresh": REFRESH_SECONDS,
    }
    template = "pipeline_panel.html" if request.headers.get("hx-request") == "true" else "pipeline.html"
    return render.page(request, visitor, template, context)
