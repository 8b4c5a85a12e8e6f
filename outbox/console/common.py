"""What every console page module shares: the visitor dependency, the router they hang from, the
notices shown after a redirect, and how an admin error becomes a page."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outbox.admin.errors import AdminError, Invalid, flatten
from outbox.api.auth import Visitor, require_visitor
from outbox.console import render

Seen = Annotated[Visitor, Depends(require_visitor)]

# What a redirect's ``?notice=`` says; only these words are shown (a notice is never echoed).
NOTICES = {
    "created": "Webhook created.",
    "saved": "Changes saved.",
    "paused": "Webhook paused: its deliveries wait until it is resumed.",
    "resumed": "Webhook resumed.",
    "deleted": "Webhook deleted, with its deliveries.",
    "test": "Test event queued: the page refreshes until its first attempt arrives.",
    "retried": "Delivery due again: a relay sends it now.",
    "recovered": "Failed and dead deliveries of the range are due again.",
}


def router() -> APIRouter:
    """A router of console pages: hidden from the API schema, each needing a visitor."""
    return APIRouter(include_in_schema=False, dependencies=[Depends(require_visitor)])


def notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def problem(request: Request, visitor: Visitor, exc: AdminError) -> Response:
    """An admin error as a page with its status (404 for a webhook that is gone, 409 for an
    operation the state does not allow, 400 for bad input)."""
    details = (
        [f"{name}: {message}" for name, message in flatten(exc.errors)] if isinstance(exc, Invalid) else []
    )
    return render.page(
        request, visitor, "problem.html", {"detail": str(exc.detail), "details": details}, status=exc.status
    )


P = ParamSpec("P")


def shown(endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Answer the admin errors of ``endpoint`` (which takes ``request`` and ``visitor``) as pages."""

    @functools.wraps(endpoint)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except AdminError as exc:
            request: Any = kwargs["request"]
            visitor: Any = kwargs["visitor"]
            return problem(request, visitor, exc)

    return wrapper
