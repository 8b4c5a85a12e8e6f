"""The admin API's application factory, and how ``outbox api`` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox import __version__
from outbox.admin.database import create_engine
from outbox.api import actions, adopt, auth, errors, health, log, webhooks
from outbox.api.errors import error_response
from outbox.config import Settings
from outbox.console import session, site

MAX_BODY_BYTES = 1024 * 1024
# Every router of the app, in the order it matches them; RequestLimits reads from their routes
# which need the token or a console visitor (the app's own routes, the schema and its pages, and
# the console's static files, are public).
ROUTERS = (
    webhooks.public, webhooks.router, adopt.router, actions.router, log.router, health.router,
    *site.ROUTERS,
)  # fmt: skip
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

DESCRIPTION = """\
Label Studio's webhooks API (`/api/webhooks/`, same fields, defaults, status codes and error
format as Label Studio 1.23.2, plus outbox's fields), the delivery log and replay, health and
metrics. Authenticate with `Authorization: Token <OUTBOX_ADMIN_TOKEN>` (as Label Studio) or
`Authorization: Bearer <OUTBOX_ADMIN_TOKEN>`; `GET /api/webhooks/info/`, `/healthz`, `/readyz`
and this schema are public. The web console is at `/`.
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
    """What every request goes through before any route runs, in this order:

    - a request to a route that needs the token (see ``outbox.api.auth``) without it: 401 from
      its headers alone, its body never read (and the connection closed if it has one); a console
      page without the token or a session: a redirect to the login form, the same way;
    - a query string with a parameter without a name: 400;
    - a body larger than ``MAX_BODY_BYTES``: 413 from its Content-Length, or, chunked or not, as
      soon as more than that arrived, so that no more is read (the connection is then closed).

    A body within the limit is read here and handed to the route whole. Failures nothing
    expected are answered here too, as a 500 logged once (Starlette's own handler re-raises)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        """``routes``: every route of ``ROUTERS``, in the order the app matches them."""
        self.app = app
        self.guards = auth.Guards(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        has_body = "transfer-encoding" in headers or length not in (None, "0")
        refusal = self._refusal(scope, headers, has_body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        if isinstance(body, Response):
            await body(scope, receive, send)
            return
        await self._serve(scope, _replay(body, receive), send)

    def _refusal(self, scope: Scope, headers: Headers, has_body: bool) -> Response | None:
        state = scope["app"].state
        guard = self.guards.needed(scope)
        if guard == "token" and state.admin_token is not None:
            try:
                auth.check(headers.get("authorization"), state.admin_token)
            except errors.Unauthorized as exc:
                return errors.unauthorized(exc.detail, close=has_body)
        elif guard == "visitor" and auth.visitor(headers, state) is None:
            return auth.login_required(scope, close=has_body)
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            return _too_large()
        query = scope.get("query_string", b"").decode("latin-1")
        if any(not name for name, _ in parse_qsl(query, keep_blank_values=True)):
            return error_response(400, "Malformed query string: a parameter has no name.", close=has_body)
        return None

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise  # too late for an answer: the server closes the connection
            response = errors.unexpected(scope["method"], scope["path"], exc)
            await response(scope, receive, send)


def _too_large() -> Response:
    return error_response(413, f"Request body larger than {MAX_BODY_BYTES} bytes.", close=True)


async def _read_body(receive: Receive) -> bytes | Response | None:
    """The request's body, or a 413 as soon as it is larger than ``MAX_BODY_BYTES`` (whatever its
    Content-Length said), or None if the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` in one message, then what the server gives (only a
    disconnect is left)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
    app.state.console_key = session.key_for(admin_token)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    site.install(app)
    app.add_middleware(RequestLimits, routes=[route for router in ROUTERS for route in router.routes])
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
