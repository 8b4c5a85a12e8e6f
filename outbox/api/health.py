"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from outbox.admin import metrics
from outbox.api.auth import require_token
from outbox.api.common import Engine, responses

router = APIRouter(tags=["Health"])


class Alive(BaseModel):
    status: Literal["UP"] = "UP"


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    database: str
    migrations: str
    pending: list[str]
    relays: str


@router.get("/healthz", response_model=Alive, summary="The process is up")
async def healthz() -> Alive:
    """Answers while the process runs; touches nothing else."""
    return Alive()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="The database answers, migrations are current, and queued work has a relay",
    responses={503: {"model": Ready, "description": "Not ready: see `database`, `migrations` and `relays`."}},
)
async def readyz(engine: Engine) -> JSONResponse:
    state = await metrics.readiness(engine)
    body = Ready(
        status="ready" if state.ready else "not ready",
        database=state.database,
        migrations=state.migrations,
        pending=list(state.pending),
        relays=state.relays,
    )
    return JSONResponse(body.model_dump(), status_code=200 if state.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_token)],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        **responses(401),
    },
)
async def prometheus_metrics(engine: Engine) -> Response:
    """Read from outbox's tables at each scrape (see docs/api.md for every metric). Needs the
    admin token, e.g. Prometheus' `authorization: {credentials: <token>}` (Bearer)."""
    snap = await metrics.snapshot(engine)
    return Response(generate_latest(metrics.registry(snap)), media_type=CONTENT_TYPE_LATEST)
