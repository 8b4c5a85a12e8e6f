"""Label Studio's webhook functions for application code, inside the caller's transaction.

Label Studio's guide has developers call ``emit_webhooks()``, ``emit_webhooks_for_instances()``,
``get_active_webhooks()`` and ``run_webhook()``, which POST while the request runs. These do the
same on the caller's own database connection, by calling outbox's SQL functions
(sql/0007_actions.sql): nothing is sent unless and until the caller's transaction commits.

Connections: psycopg 3 (``Connection`` and ``AsyncConnection``), SQLAlchemy (``Connection``,
``Session`` and their asyncio versions, on the psycopg or psycopg2 driver), and any DB-API
connection with a ``cursor()``, such as Django's ``django.db.connection``. With an async
connection each function returns an awaitable. Nothing here imports SQLAlchemy or Django: the kind
of connection is told by its type's module.

Errors: what Python can tell before asking the database raises ``EmitError`` (a ``ValueError``).
What the database refuses (an unknown action, an organization-only action with a project, …)
is raised by the caller's driver as it raises any database error (SQLSTATE 22023, the message
starting with ``outbox.emit:``), and aborts the caller's transaction like any failed statement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson

from outbox.sql import query

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    AsyncConn = psycopg.AsyncConnection[Any] | AsyncConnection | AsyncSession

T = TypeVar("T")
Rows = list[tuple[Any, ...]]


class EmitError(ValueError):
    """A call refused before it reached the database: a payload that is not a JSON object or
    array, a connection of a kind outbox cannot use."""


@dataclass(frozen=True)
class ActiveWebhook:
    """A webhook an event would go to (``get_active_webhooks``); no secret, no headers."""

    id: int
    project_id: int | None
    url: str
    send_payload: bool


# -- the functions ------------------------------------------------------------------------------


@overload
def emit(
    conn: AsyncConn, action: str, payload: Any, *, organization_id: int, project_id: int | None = None
) -> Awaitable[int]: ...
@overload
def emit(
    conn: object, action: str, payload: Any, *, organization_id: int, project_id: int | None = None
) -> int: ...
def emit(
    conn: Any, action: str, payload: Any, *, organization_id: int, project_id: int | None = None
) -> int | Awaitable[int]:
    """Record an event of a registered action in the caller's transaction; returns its id.

    After commit it goes to every matching webhook as ``{"action": action, <payload_key>:
    payload, "project": <the project object>}`` (no ``project`` when ``project_id`` is None).
    ``payload``: a JSON object or array (a dict or a list)."""
    params = (action, organization_id, project_id, _json(payload))
    return _then(_run(conn, "emit", params), _scalar)


@overload
def run_webhook(
    conn: AsyncConn, webhook_id: int, action: str, payload: Any, *, project_id: int | None = None
) -> Awaitable[int]: ...
@overload
def run_webhook(
    conn: object, webhook_id: int, action: str, payload: Any, *, project_id: int | None = None
) -> int: ...
def run_webhook(
    conn: Any, webhook_id: int, action: str, payload: Any, *, project_id: int | None = None
) -> int | Awaitable[int]:
    """Send one event of a registered action to one webhook, whatever actions it lists, through the
    normal pipeline (signed, retried, in the delivery log), once the caller's transaction commits.
    Its project is the webhook's unless ``project_id`` is given. Returns the event's id."""
    params = (webhook_id, action, _json(payload), project_id)
    return _then(_run(conn, "run_webhook", params), _scalar)


@overload
def get_active_webhooks(  # type: ignore[overload-overlap]
    conn: AsyncConn, organization_id: int, action: str, project_id: int | None = None
) -> Awaitable[list[ActiveWebhook]]: ...
@overload
def get_active_webhooks(
    conn: object, organization_id: int, action: str, project_id: int | None = None
) -> list[ActiveWebhook]: ...
def get_active_webhooks(
    conn: Any, organization_id: int, action: str, project_id: int | None = None
) -> list[ActiveWebhook] | Awaitable[list[ActiveWebhook]]:
    """The webhooks an event of ``action`` would go to if it were emitted now, by the relay's
    matching rules, in id order (as the caller's transaction sees them)."""
    params = (organization_id, action, project_id)
    return _then(_run(conn, "active_webhooks", params), _webhooks)


@overload
def emit_for(  # type: ignore[overload-overlap]
    conn: AsyncConn, action: str, ids: Sequence[int], *, project_id: int
) -> Awaitable[int]: ...
@overload
def emit_for(conn: object, action: str, ids: Sequence[int], *, project_id: int) -> int: ...
def emit_for(conn: Any, action: str, ids: Sequence[int], *, project_id: int) -> int | Awaitable[int]:
    """Send a built-in action for rows that exist (Label Studio's ``emit_webhooks_for_instances``):
    the relay builds the payload from the current rows, chunks and matches it exactly as for the
    same change captured. ``ids``: task ids for ``TASKS_CREATED``, annotation ids for the
    annotation actions (ignored for the project actions). Returns how many rows it covers."""
    if isinstance(ids, str | bytes) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise EmitError("outbox.emit_for: ids must be a list of integer row ids")
    return _then(_run(conn, "emit_for", (action, list(ids), project_id)), _scalar)


# -- payloads and results -----------------------------------------------------------------------


def _json(payload: Any) -> str:
    if isinstance(payload, Mapping) and not isinstance(payload, dict):
        payload = dict(payload)
    if not isinstance(payload, dict | list | tuple):
        raise EmitError(
            "outbox.emit: the payload must be a JSON object or array (a dict or a list), "
            f"not {type(payload).__name__}"
        )
    try:
        return orjson.dumps(payload, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()
    except TypeError as exc:  # orjson.JSONEncodeError
        raise EmitError(f"outbox.emit: the payload is not JSON: {exc}") from None


def _scalar(rows: Rows) -> int:
    return int(rows[0][0])


def _webhooks(rows: Rows) -> list[ActiveWebhook]:
    return [ActiveWebhook(int(r[0]), r[1], str(r[2]), bool(r[3])) for r in rows]


def _then(result: Rows | Awaitable[Rows], convert: Callable[[Rows], T]) -> T | Awaitable[T]:
    if isinstance(result, list):
        return convert(result)

    async def converted() -> T:
        return convert(await result)

    return converted()


# -- connections --------------------------------------------------------------------------------


def _run(conn: Any, name: str, params: tuple[Any, ...]) -> Rows | Awaitable[Rows]:
    """Run one named query on the caller's connection, in its transaction; the rows as tuples
    (an awaitable of them on an async connection)."""
    sql = query(name)
    module = type(conn).__module__
    if module.startswith("psycopg"):
        return _psycopg(conn, sql, params)
    if module.startswith("sqlalchemy"):
        return _sqlalchemy(conn, sql, params)
    if callable(getattr(conn, "cursor", None)):
        return _dbapi(conn, sql, params)
    raise EmitError(
        f"outbox.emit: cannot use a {type(conn).__qualname__} as a database connection: give a psycopg "
        "connection, a SQLAlchemy Connection or Session, or a DB-API connection such as Django's"
    )


def _psycopg(conn: Any, sql: str, params: tuple[Any, ...]) -> Rows | Awaitable[Rows]:
    from psycopg import AsyncConnection
    from psycopg.rows import tuple_row

    if isinstance(conn, AsyncConnection):

        async def run() -> Rows:
            async with conn.cursor(row_factory=tuple_row) as cursor:
                await cursor.execute(sql, params)
                return await cursor.fetchall()

        return run()
    with conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _sqlalchemy(conn: Any, sql: str, params: tuple[Any, ...]) -> Rows | Awaitable[Rows]:
    # exec_driver_sql hands the statement and its parameters to the driver as they are
    if type(conn).__module__.startswith("sqlalchemy.ext.asyncio"):

        async def run() -> Rows:
            connection = await conn.connection() if hasattr(conn, "get_bind") else conn
            result = await connection.exec_driver_sql(sql, params)
            return [tuple(row) for row in result.all()]

        return run()
    connection = conn.connection() if hasattr(conn, "get_bind") else conn  # a Session's connection
    return [tuple(row) for row in connection.exec_driver_sql(sql, params).all()]


def _dbapi(conn: Any, sql: str, params: tuple[Any, ...]) -> Rows:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
