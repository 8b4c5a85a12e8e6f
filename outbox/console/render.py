"""Pages: Jinja2 templates shipped in the package, escaped everywhere (every value on a page comes
from the database or the request), answered with headers that keep them a page of this site only.

The Content-Security-Policy allows scripts and styles from this site's files alone (no inline
script, no inline style, nothing from elsewhere): a value that slipped past escaping still could
not run. Pages are never cached (they show live state, and one shows a secret).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from outbox import __version__
from outbox.api.auth import Visitor
from outbox.console import session
from relay.urls import redact_url

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(moment: datetime | None) -> str:
    """A time as people read it: UTC, to the second."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``5 min``, ``3 h 20 min``, ``2 d 4 h``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return duration(max(0.0, time.time() - moment.timestamp())) + " ago"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


environment = Environment(
    loader=PackageLoader("outbox.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# URLs are shown without credentials or query string (a broker's password, a token)
environment.filters.update(when=when, ago=ago, duration=duration, ms=milliseconds, shown_url=redact_url)
environment.globals.update(version=__version__)


def secure(request: Request) -> bool:
    """Whether the browser reached us over https (as uvicorn sees it: it takes X-Forwarded-Proto
    only from the addresses in FORWARDED_ALLOW_IPS, 127.0.0.1 by default)."""
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, *, max_age: int, path: str
) -> None:
    """The console's cookies are all HttpOnly and SameSite=Strict, and Secure over https."""
    response.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=secure(request)
    )


def set_session(response: Response, request: Request, value: str) -> None:
    set_cookie(response, request, session.COOKIE, value, max_age=session.LIFETIME_SECONDS, path="/")


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(session.COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request))


def page(
    request: Request,
    visitor: Visitor,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> HTMLResponse:
    """``template`` rendered for ``visitor``, with the CSRF token its forms carry. A visitor with
    no session yet (authentication off) gets one here, so that its forms can carry a token too."""
    key: bytes = request.app.state.console_key
    current = visitor.session
    issued = None
    if current is None and not visitor.by_header:
        current = issued = session.issue(key, time.time())
    html = environment.get_template(template).render(
        request=request,
        path=request.url.path,
        csrf=session.csrf_token(key, current) if current else "",
        auth=request.app.state.admin_token is not None,
        by_header=visitor.by_header,
        nav=True,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if issued is not None:
        set_session(response, request, issued)
    return response


def public_page(
    request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """A page for someone not logged in (the login form)."""
    html = environment.get_template(template).render(
        request=request, path=request.url.path, csrf="", auth=True, by_header=False, nav=False, **context
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def redirect(target: str) -> RedirectResponse:
    """POST-redirect-GET: the answer to every form that changed something."""
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
