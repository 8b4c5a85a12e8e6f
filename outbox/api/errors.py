"""Every error the API answers, in Label Studio's format, and never a stack trace:

``{"id": "<uuid>", "status_code": 400, "version": "...", "detail": "Validation error",
"exc_info": null, "validation_errors": {"url": ["Enter a valid URL: ..."]}}``

``validation_errors`` is present for 400s about fields. A database that cannot serve (down, or
outbox not installed in it) answers 503 and logs one line. Unexpected failures answer 500 with the
same shape and an id that is also in the server's log line, so an operator can find the traceback
(logged once; SQL statement parameters are hidden by the engine).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from outbox import __version__
from outbox.admin import database
from outbox.admin.errors import AdminError, FieldErrors, Invalid, field_errors

log = logging.getLogger("outbox.api")


class Unauthorized(AdminError):
    status = 401


def error_response(
    status: int,
    detail: str,
    validation_errors: FieldErrors | None = None,
    headers: dict[str, str] | None = None,
    error_id: str | None = None,
    *,
    close: bool = False,
) -> JSONResponse:
    """The error body; ``close`` asks the server to close the connection after it (when the
    request's body is left unread, so that it is not read at all)."""
    body: dict[str, Any] = {
        "id": error_id or str(uuid.uuid4()),
        "status_code": status,
        "version": __version__,
        "detail": detail,
        "exc_info": None,
    }
    if validation_errors is not None:
        body["validation_errors"] = validation_errors
    if close:
        headers = {**(headers or {}), "Connection": "close"}
    return JSONResponse(body, status_code=status, headers=headers)


def unauthorized(detail: str, *, close: bool = False) -> JSONResponse:
    return error_response(401, detail, headers={"WWW-Authenticate": 'Token realm="outbox"'}, close=close)


async def _admin_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AdminError)
    if isinstance(exc, Unauthorized):
        return unauthorized(exc.detail)
    errors = exc.errors if isinstance(exc, Invalid) else None
    return error_response(exc.status, exc.detail, errors)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot serve is the operator's to fix, not a bug: 503 and one log line."""
    assert isinstance(exc, DBAPIError)
    detail = database.unavailable(exc)
    if detail is None:
        return unexpected(request.method, request.url.path, exc)
    about = "database unavailable" if detail == database.UNAVAILABLE else detail.rstrip(".")
    log.warning("%s (%s %s: %s)", about, request.method, request.url.path, database.describe(exc))
    return error_response(503, detail)


async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    """Every pooled connection busy for the pool's whole timeout (a database that hangs): the same
    503 as a database that is down, not a bug."""
    log.warning("database unavailable (%s %s: no free connection in time)", request.method, request.url.path)
    return error_response(503, database.UNAVAILABLE)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error["loc"][:1] == ("path",) for error in errors):
        # /api/webhooks/abc/ names no webhook: Label Studio answers 404 too
        return error_response(404, "Not found.")
    for error in errors:
        if error["type"] == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            return error_response(400, f"JSON parse error - {reason}")
    return error_response(400, "Validation error", field_errors(errors, skip=1))


_HTTP_DETAILS = {404: "Not found.", 413: "Request body too large."}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for candidate in request.app.router.routes:
        match, _ = candidate.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(candidate, "methods", None) or ())
        match, _ = candidate.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(candidate, "methods", None) or ())
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        detail = f'Method "{request.method}" not allowed.'
        headers["Allow"] = ", ".join(allowed_methods(request))
    else:
        detail = _HTTP_DETAILS.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, detail, headers=headers or None)


def unexpected(method: str, path: str, exc: BaseException) -> JSONResponse:
    """A 500 for a failure nothing expected; its traceback is logged here, once."""
    error_id = str(uuid.uuid4())
    log.error("error %s on %s %s", error_id, method, path, exc_info=exc)
    return error_response(500, f"Internal server error (id {error_id}).", error_id=error_id)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return unexpected(request.method, request.url.path, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AdminError, _admin_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
    # a backstop: outbox.api.app.RequestLimits answers unexpected failures of the routes itself,
    # since Starlette re-raises after this handler (and uvicorn logs a second traceback)
    app.add_exception_handler(Exception, _unexpected)
