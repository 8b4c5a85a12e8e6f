"""Running the admin operations (``outbox.admin``) from the command line: on DATABASE_URL, with
the API's validation and messages, its JSON for ``--json``; and the option values they take.

Errors are one line on stderr and exit status 2; with ``--json`` the API's error body is printed
on stdout too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from outbox.cli.common import CliError, database_url
from outbox.config import Settings, parse_duration

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# What only the admin commands need (SQLAlchemy, the admin operations, rich tables) is imported
# inside them, to keep `outbox relay` quick to start.

T = TypeVar("T")

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
WebhookArg = Annotated[int, typer.Argument(help="Webhook id.", min=1)]
DeliveryArg = Annotated[int, typer.Argument(help="Delivery id.", min=1)]


def run(settings: Settings, operation: Callable[[AsyncEngine], Awaitable[T]], *, as_json: bool = False) -> T:
    """Run one admin operation on DATABASE_URL; admin errors become CLI errors."""
    import anyio

    from outbox.admin.database import create_engine
    from outbox.admin.errors import AdminError, Invalid

    url = database_url(settings)

    async def main() -> T:
        engine = create_engine(url, application_name="outbox-cli", pool_size=None)
        try:
            return await operation(engine)
        finally:
            await engine.dispose()

    try:
        return anyio.run(main)
    except AdminError as exc:
        if as_json:
            body: dict[str, Any] = {"status_code": exc.status, "detail": exc.detail}
            if isinstance(exc, Invalid):
                body["validation_errors"] = exc.errors
            typer.echo(json.dumps(body))
        raise CliError(str(exc)) from None
    # other expected failures (a database that refuses, lacks outbox…): outbox.cli.expected_error


def validated(model: type[BaseModel], data: dict[str, Any], as_json: bool, what: str = "webhook") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from outbox.admin.errors import from_validation_error

        error = from_validation_error(exc)
        if as_json:
            typer.echo(
                json.dumps({"status_code": 400, "detail": error.detail, "validation_errors": error.errors})
            )
        raise CliError(f"invalid {what}: {error}") from None


def print_json(value: Any) -> None:
    data: Any
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json", by_alias=True)
    else:
        data = [item.model_dump(mode="json", by_alias=True) for item in value]
    typer.echo(json.dumps(data, indent=2))


def parse_when(value: str | None, option: str) -> datetime | None:
    """ISO 8601 (a time without zone is UTC), or a duration ago: ``30m``, ``2h``, ``7d``."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        raise CliError(
            f"{option}: not a time: use ISO 8601 (2026-01-31T12:00:00Z) or a duration ago (30m, 2h, 7d)"
        ) from None


def parse_headers(values: list[str] | None) -> dict[str, str] | None:
    if values is None:
        return None
    headers = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep:
            raise CliError('--header: use "Name: value"')
        headers[name.strip()] = value.strip()
    return headers


def parse_number(value: str, option: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CliError(f"{option}: not a number: {value[:20]}") from None


def parse_schedule(value: str | None) -> list[int] | None:
    if value is None or value == "default":
        return None
    try:
        return [round(parse_duration(item).total_seconds()) for item in value.split(",")]
    except ValueError:
        raise CliError('--retry-schedule: e.g. "0,5s,5m,30m", or "default"') from None
