"""Token authentication: ``Authorization: Token <t>`` as Label Studio's clients send it, or
``Authorization: Bearer <t>``; the token is ``OUTBOX_ADMIN_TOKEN``. Tokens are compared in constant
time and never logged.

Which routes need the token is said once, by their ``require_token`` dependency (which also puts
the scheme in the OpenAPI schema). ``outbox.api.app.RequestLimits`` checks the token of requests
to those routes from their headers, before anything reads the body: a client without the token
cannot make the server read, let alone buffer, what it sends. The dependency checks it again.

The console's pages (``outbox.console``) are guarded the same way by ``require_visitor``: the admin
token in ``Authorization`` works there too, or else a session cookie issued at login
(``outbox.console.session``). Without either, a page answers a redirect to the login form, from
the headers alone as well."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from fastapi import Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from outbox.api.errors import Unauthorized
from outbox.console import session

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


@dataclass(frozen=True)
class Visitor:
    """Who a console request comes from: a client that sent the admin token (``by_header``: it
    needs no CSRF token, since no browser adds that header to a request by itself), or a browser
    with a session (``session`` None: authentication is off and it has no cookie yet)."""

    by_header: bool
    session: str | None


class LoginRequired(Exception):
    """A console request without the token or a session."""


def visitor(headers: Headers, state: Any, now: float | None = None) -> Visitor | None:
    """The console visitor of a request with ``headers`` to the app whose ``state`` holds
    ``admin_token`` and ``console_key``; None if it must log in. A wrong token in
    ``Authorization`` is refused even with a valid cookie (it is nobody's mistake to ignore)."""
    expected: str | None = state.admin_token
    authorization = headers.get("authorization")
    if expected is not None and authorization is not None:
        try:
            check(authorization, expected)
        except Unauthorized:
            return None
        return Visitor(by_header=True, session=None)
    cookie = cookie_parser(headers.get("cookie", "")).get(session.COOKIE)
    current = session.verify(state.console_key, cookie, time.time() if now is None else now)
    if current is not None:
        return Visitor(by_header=False, session=current)
    if expected is None:
        return Visitor(by_header=False, session=None)
    return None


async def require_visitor(request: Request) -> Visitor:
    """A dependency of every console route but the login form's."""
    found = visitor(request.headers, request.app.state)
    if found is None:
        raise LoginRequired()
    return found


def login_required(scope: Scope, *, close: bool = False) -> Response:
    """The answer to a console request without the token or a session: a redirect to the login
    form that comes back here (htmx's background requests get ``HX-Redirect`` instead, which htmx
    follows with the whole page)."""
    # after login, back to the page asked for (a form's target is no page: the home page then)
    back = "/"
    if scope.get("method") in ("GET", "HEAD"):
        query = scope.get("query_string", b"").decode("latin-1")
        back = scope.get("path", "/") + (f"?{query}" if query else "")
    target = "/login" if back == "/" else f"/login?next={quote(back, safe='/')}"
    headers = {"Cache-Control": "no-store"}
    if close:
        headers["Connection"] = "close"
    if Headers(scope=scope).get("hx-request") == "true":
        return Response(status_code=401, headers={**headers, "HX-Redirect": target})
    return RedirectResponse(target, status_code=303, headers=headers)


Guard = Literal["token", "visitor"]
GUARDS: dict[Callable[..., Any], Guard] = {require_token: "token", require_visitor: "visitor"}


def _guard(dependant: Dependant) -> Guard | None:
    for dependency in dependant.dependencies:
        found = GUARDS.get(dependency.call) if dependency.call is not None else None
        found = found or _guard(dependency)
        if found is not None:
            return found
    return None


class Guards:
    """Which of ``routes`` need the token (``require_token``) or a console visitor
    (``require_visitor``); routes that are not FastAPI's, the schema and its pages, need neither."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = [
            (route, _guard(route.dependant) if isinstance(route, APIRoute) else None) for route in routes
        ]

    def needed(self, scope: Scope) -> Guard | None:
        """What the route that will serve ``scope`` (the first that fully matches, as the router
        picks it) needs. None matching: the router answers 404 or 405, without."""
        for route, guard in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return guard
        return None
