"""The admin side's database access: SQLAlchemy 2 Core on async psycopg.

Connections are made by psycopg itself from ``DATABASE_URL`` as given (a URL or a libpq
``key=value`` string, which SQLAlchemy's URL parser does not take), with the same session settings
as the relay's: UTC, an application name. Statement parameters are kept out of exception messages,
since they can hold secrets and header values.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from outbox.admin.errors import AdminError, Invalid, invalid


def create_engine(
    dsn: str,
    *,
    application_name: str = "outbox-admin",
    connect_timeout: float = 5.0,
    pool_size: int | None = 5,
) -> AsyncEngine:
    """An engine on ``dsn``; ``pool_size=None`` opens a connection per use (the CLI)."""

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            dsn,
            application_name=application_name,
            connect_timeout=max(1, round(connect_timeout)),
            options="-c TimeZone=UTC",
        )

    pool: dict[str, Any] = (
        {"poolclass": NullPool}
        if pool_size is None
        else {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
    )
    return create_async_engine("postgresql+psycopg://", async_creator=connect, hide_parameters=True, **pool)


# Which webhook field a CHECK failure is about, by the start of the message sql/0001_schema.sql
# raises, or by the constraint's name.
_CHECK_FIELDS = (
    ("webhook url", "url"),
    ("webhook header", "headers"),
    ("webhook actions", "actions"),
    ("webhook secret", "secret"),
    ("webhook_max_concurrency", "max_concurrency"),
    ("webhook_rate_limit", "rate_limit"),
    ("webhook_timeout", "timeout"),
    ("webhook_retry_schedule", "retry_schedule"),
)


def translate(exc: DBAPIError) -> AdminError | None:
    """A database refusal caused by the request's data, as a 400; None for anything else.

    The Python validation runs first, so this is a backstop: a rule the database enforces that the
    Python side does not know yet still answers 400, never 500.
    """
    original = exc.orig
    if not isinstance(original, psycopg.Error):
        return None
    if isinstance(original, psycopg.errors.CheckViolation):
        diag = original.diag
        message = diag.message_primary or "a value breaks a rule of outbox.webhook"
        about = f"{message} {diag.constraint_name or ''}"
        for start, field in _CHECK_FIELDS:
            if about.startswith(start) or (diag.constraint_name or "").startswith(start):
                return invalid(field, message)
        return invalid("non_field_errors", message)
    if isinstance(original, psycopg.errors.NumericValueOutOfRange):
        return invalid("non_field_errors", "A number is out of range.")
    if isinstance(original, psycopg.errors.DataError | psycopg.errors.IntegrityError):
        return Invalid({"non_field_errors": ["The database refused a value of this request."]})
    return None
