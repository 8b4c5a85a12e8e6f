"""The admin API's application factory, and how ``outbox api`` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox import __version__
from outbox.admin.database import create_engine
from outbox.api import errors, health, log, webhooks
from outbox.api.errors import error_response
from outbox.config import Settings

MAX_BODY_BYTES = 1024 * 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

DESCRIPTION = """\
Label Studio's webhooks API (`/api/webhooks/`, same fields, defaults, status codes and error
format as Label Studio 1.23.2, plus outbox's fields), the delivery log and replay, health and
metrics. Authenticate with `Authorization: Token <OUTBOX_ADMIN_TOKEN>` (as Label Studio) or
`Authorization: Bearer <OUTBOX_ADMIN_TOKEN>`; `GET /api/webhooks/info/`, `/healthz`, `/readyz`
and this schema are public.
"""


INVALID_RESPONSE = {
    "description": "Invalid input: `validation_errors` says which field and why.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


class ConfigurationError(Exception):
    """The API cannot start as configured; the message says what to change."""


def check_auth(settings: Settings, host: str, no_auth: bool) -> str | None:
    """The token requests must carry, or None when authentication is off (only with
    ``--no-auth`` on a loopback address: an open admin API on a network is a takeover)."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if no_auth:
        if host not in LOOPBACK:
            raise ConfigurationError(f"--no-auth is allowed only when binding to 127.0.0.1, not {host}")
        return None
    if not token:
        raise ConfigurationError(
            "OUTBOX_ADMIN_TOKEN is not set: set it (clients send `Authorization: Token <it>`), "
            "or pass --no-auth to serve on 127.0.0.1 without authentication"
        )
    if len(token) < 16:
        raise ConfigurationError("OUTBOX_ADMIN_TOKEN is too short: use at least 16 characters")
    return token


class RequestLimits:
    """Refuse, before any route runs, request bodies larger than ``MAX_BODY_BYTES`` (413, by
    their Content-Length) and query strings with a parameter without a name (400)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = None
            length = dict(scope["headers"]).get(b"content-length", b"0")
            query = scope.get("query_string", b"").decode("latin-1")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                response = error_response(413, f"Request body larger than {MAX_BODY_BYTES} bytes.")
            elif any(not name for name, _ in parse_qsl(query, keep_blank_values=True)):
                response = error_response(400, "Malformed query string: a parameter has no name.")
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings, database_url: str, *, admin_token: str | None) -> FastAPI:
    """The ASGI app on ``database_url``; ``admin_token`` None turns authentication off (see
    ``check_auth``)."""
    engine = create_engine(database_url, application_name="outbox-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(
        title="outbox admin API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.admin_token = admin_token
    errors.install(app)
    app.add_middleware(RequestLimits)
    app.include_router(webhooks.public)
    app.include_router(webhooks.router)
    app.include_router(log.router)
    app.include_router(health.router)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the 400 this API answers for invalid input in place of the 422 that
    FastAPI documents (and that never happens here: see outbox.api.errors)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema["paths"].values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", INVALID_RESPONSE)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
