"""Token authentication: ``Authorization: Token <t>`` as Label Studio's clients send it, or
``Authorization: Bearer <t>``; the token is ``OUTBOX_ADMIN_TOKEN``. Tokens are compared in constant
time and never logged.

Which routes need the token is said once, by their ``require_token`` dependency (which also puts
the scheme in the OpenAPI schema). ``outbox.api.app.RequestLimits`` checks the token of requests
to those routes from their headers, before anything reads the body: a client without the token
cannot make the server read, let alone buffer, what it sends. The dependency checks it again."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from fastapi import Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from outbox.api.errors import Unauthorized

NOT_PROVIDED = "Authentication credentials were not provided."
INVALID = "Invalid token."

scheme = APIKeyHeader(
    name="Authorization",
    scheme_name="AdminToken",
    description="`Token <OUTBOX_ADMIN_TOKEN>` (as Label Studio) or `Bearer <OUTBOX_ADMIN_TOKEN>`.",
    auto_error=False,
)


def check(authorization: str | None, expected: str | None) -> None:
    """Raise Unauthorized unless ``authorization`` carries ``expected`` (None: auth is off)."""
    if expected is None:
        return
    if not authorization or not authorization.strip():
        raise Unauthorized(NOT_PROVIDED)
    kind, _, token = authorization.strip().partition(" ")
    if kind.lower() not in ("token", "bearer") or not token.strip():
        raise Unauthorized(INVALID)
    given = token.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected.encode()):
        raise Unauthorized(INVALID)


async def require_token(request: Request, authorization: str | None = Security(scheme)) -> None:
    """A dependency of every route that needs authentication."""
    check(authorization, request.app.state.admin_token)


def _depends_on_token(dependant: Dependant) -> bool:
    return any(d.call is require_token or _depends_on_token(d) for d in dependant.dependencies)


class TokenRoutes:
    """Which of ``routes`` need the token: those with the ``require_token`` dependency (routes
    that are not FastAPI's, the schema and its pages, have none)."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = [
            (route, isinstance(route, APIRoute) and _depends_on_token(route.dependant)) for route in routes
        ]

    def needed(self, scope: Scope) -> bool:
        """Whether the route that will serve ``scope`` (the first that fully matches, as the
        router picks it) needs the token. None matching: the router answers 404 or 405, without."""
        for route, needs_token in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return needs_token
        return False
