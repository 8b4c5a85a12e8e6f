"""Logging in with the admin token, once, and out.

The token is checked in constant time (``outbox.api.auth.check``) and then forgotten: the browser
keeps only a session cookie (HttpOnly, SameSite=Strict, Secure over https). The login form is
protected by a double submit (its field and a SameSite=Strict cookie must agree) and refuses
requests another site made, so no other site can log a browser in; a session is always issued
fresh, so none can be planted before login either.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from outbox.api import auth
from outbox.api.errors import Unauthorized
from outbox.console import forms, render, session

router = APIRouter(include_in_schema=False)

Next = Annotated[str, Query(alias="next", max_length=2000)]


def _form(request: Request, target: str, *, error: str | None = None, status: int = 200) -> Response:
    nonce = session.login_nonce()
    response = render.public_page(
        request, "login.html", {"nonce": nonce, "next": target, "error": error}, status=status
    )
    render.set_cookie(
        response, request, session.LOGIN_COOKIE, nonce, max_age=session.LOGIN_SECONDS, path="/login"
    )
    return response


@router.get("/login")
async def login_form(request: Request, target: Next = "/") -> Response:
    if auth.visitor(request.headers, request.app.state) is not None:
        return render.redirect(session.local_path(target))
    return _form(request, session.local_path(target))


@router.post("/login")
async def login(request: Request) -> Response:
    reason = forms.cross_site(request)
    if reason is not None:
        raise forms.Forbidden(reason)
    form = await forms.read(request)
    target = session.local_path(form.get("next"))
    if not session.same_value(request.cookies.get(session.LOGIN_COOKIE), form.get("nonce")):
        # an expired form, or a form of another site
        return _form(request, target, error="The login form expired: enter the token again.", status=403)
    expected = request.app.state.admin_token
    if expected is not None:
        try:
            auth.check(f"Token {form.get('token')}", expected)
        except Unauthorized:
            return _form(request, target, error="That is not the admin token.", status=401)
    response = render.redirect(target)
    render.set_session(response, request, session.issue(request.app.state.console_key, time.time()))
    response.delete_cookie(session.LOGIN_COOKIE, path="/login")
    return response


# (forms.Submitted needs a visitor: RequestLimits refuses a logout without one from its headers)
@router.post("/logout")
async def logout(request: Request, form: forms.Submitted) -> Response:
    response = render.redirect("/login" if request.app.state.admin_token is not None else "/")
    render.clear_session(response, request)
    return response
