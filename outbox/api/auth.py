"""Token authentication: ``Authorization: Token <t>`` as Label Studio's clients send it, or
``Authorization: Bearer <t>``; the token is ``OUTBOX_ADMIN_TOKEN``. Tokens are compared in constant
time and never logged."""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

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
