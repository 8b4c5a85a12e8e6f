"""What every route module shares: the engine and settings of the running app, the error body as
documented in the OpenAPI schema, and routes that answer with and without a trailing slash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.admin.models import MAX_INT
from outbox.config import Settings


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Engine = Annotated[AsyncEngine, Depends(_engine)]
Config = Annotated[Settings, Depends(_settings)]
WebhookId = Annotated[int, Path(ge=1, le=MAX_INT, description="Webhook id.", examples=[1])]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Delivery id.", examples=[1])]


class ErrorBody(BaseModel):
    """Label Studio's error format."""

    id: str
    status_code: int
    version: str
    detail: str
    exc_info: None = None
    validation_errors: dict[str, Any] | None = Field(
        None, description="Field name to its problems (list items keyed by index)."
    )


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Invalid input: `validation_errors` says which field and why.",
        401: "Missing or invalid token.",
        404: "No such webhook or delivery.",
        409: "Not possible in the current state (e.g. the webhook is paused).",
        413: "Request body too large.",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


def route(
    router: APIRouter, method: str, path: str, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``path`` and, hidden from the schema, the same path without (or with) its
    trailing slash, so that neither form answers with a redirect."""

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, endpoint, methods=[method], **options)
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        hidden = {**options, "include_in_schema": False}
        hidden.pop("operation_id", None)
        router.add_api_route(other, endpoint, methods=[method], **hidden)
        return endpoint

    return register
