"""The admin side's database access: SQLAlchemy 2 Core on async psycopg.

Connections are made by ``outbox.db`` from ``DATABASE_URL`` as given (a URL or a libpq
``key=value`` string, which SQLAlchemy's URL parser does not take), with the same session settings
as the relay's and the CLI's (``outbox.db.session_parameters``). Statement parameters are kept out
of exception messages, since they can hold secrets and header values, and the DSN's password out of
connection errors.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from outbox import db
from outbox.admin.errors import AdminError, Invalid, invalid


def create_engine(
    dsn: str,
    *,
    application_name: str = "outbox-admin",
    connect_timeout: float = 5.0,
    pool_size: int | None = 5,
) -> AsyncEngine:
    """An engine on ``dsn``; ``pool_size=None`` opens a connection per use (the CLI)."""
    password = _password(dsn)

    async def connect() -> psycopg.AsyncConnection[Any]:
        try:
            return await db.connect_plain(
                dsn, application_name=application_name, connect_timeout=connect_timeout
            )
        except psycopg.ProgrammingError:
            # psycopg quotes a connection string it cannot parse, password included
            raise psycopg.OperationalError(MALFORMED_URL) from None
        except psycopg.OperationalError as exc:
            if password and password in str(exc):
                raise psycopg.OperationalError(str(exc).replace(password, "****")) from None
            raise

    pool: dict[str, Any] = (
        {"poolclass": NullPool}
        if pool_size is None
        else {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
    )
    return create_async_engine("postgresql+psycopg://", async_creator=connect, hide_parameters=True, **pool)


MALFORMED_URL = "DATABASE_URL is not a valid PostgreSQL URL or connection string"
NOT_INSTALLED = "outbox is not installed in this database: run `outbox migrate`."
UNAVAILABLE = "Database unavailable."

# What a database without outbox (or with its migrations behind) answers: an object that
# `outbox migrate` creates is missing.
_MISSING = (
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedObject,
)
# SQLSTATE classes (and codes) of a database that cannot serve at all: no connection (08), refused
# credentials (28), no such database (3D), out of connections (53), shutting down (57P0x).
_DOWN_CLASSES = ("08", "28", "3D", "53")
_DOWN_CODES = ("57P01", "57P02", "57P03")


def _password(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password")
        return str(password) if password else None
    except psycopg.ProgrammingError:
        return None  # unparsable: connect() never echoes it either


def unavailable(exc: DBAPIError) -> str | None:
    """Why the database cannot serve outbox at all (a 503: the request itself is fine), or None
    for a failure of this request. ``NOT_INSTALLED`` or ``UNAVAILABLE``."""
    original = exc.orig
    if isinstance(original, _MISSING):
        return NOT_INSTALLED
    if exc.connection_invalidated:
        return UNAVAILABLE
    if isinstance(original, psycopg.OperationalError):
        state = original.sqlstate
        if state is None or state[:2] in _DOWN_CLASSES or state in _DOWN_CODES:
            return UNAVAILABLE
    return None


def describe(exc: DBAPIError) -> str:
    """One line for the log: psycopg's class and the first line of its message (statement
    parameters are never in it, nor the DSN's password: see ``create_engine``)."""
    original = exc.orig if exc.orig is not None else exc
    first = (str(original).strip().splitlines() or [""])[0]
    return f"{type(original).__name__}: {first[:300]}"


# Which webhook field a CHECK failure is about, by the start of the message sql/0001_schema.sql
# raises, or by the constraint's name.
_CHECK_FIELDS = (
    ("webhook url", "url"),
    ("webhook header", "headers"),
    ("webhook actions", "actions"),
    ("webhook secret", "secret"),
    # the webhook_scope trigger (sql/0002_webhook_scope.sql)
    ("webhook organization", "organization"),
    ("webhook project", "project"),
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
