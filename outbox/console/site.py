"""The console as part of the admin API's app: its routers, its static files (CSS, htmx and the
console's own script, shipped in the package: nothing is fetched from elsewhere), and the answers
to a visitor who must log in or a form that may come from another site."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from outbox.api import auth
from outbox.console import deliveries, forms, login, pipeline, render, webhooks

ROUTERS = (login.router, webhooks.pages, deliveries.pages, pipeline.pages)
STATIC = files("outbox.console") / "static"


async def _login_required(request: Request, exc: Exception) -> Response:
    return auth.login_required(request.scope)


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, forms.Forbidden)
    return render.public_page(request, "forbidden.html", {"reason": exc.reason}, status=403)


def install(app: FastAPI) -> None:
    """Serve the static files and answer the console's own refusals (its routers are among the
    app's ROUTERS, so that RequestLimits guards them)."""
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_exception_handler(auth.LoginRequired, _login_required)
    app.add_exception_handler(forms.Forbidden, _forbidden)
