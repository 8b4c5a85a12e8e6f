"""Connections to the Label Studio database, configured the same way everywhere.

Sessions run in UTC so timestamps come back ready to serialise with a ``Z``; jsonb is parsed with
orjson. DSNs are masked before they reach a log line or an error message.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads

APPLICATION_NAME = "outbox"


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced, safe for logs and errors."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DATABASE_URL>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def _params(application_name: str, connect_timeout: float) -> dict[str, Any]:
    return {
        "application_name": application_name,
        "connect_timeout": max(1, round(connect_timeout)),
        # JIT compiles for the planner's estimates, not the rows: jsonb_to_recordset and
        # generate_series look huge to it, and JIT cost 16 ms on a 1-event routing statement.
        "options": "-c TimeZone=UTC -c jit=off",
    }


async def connect(
    dsn: str,
    *,
    autocommit: bool = False,
    application_name: str = APPLICATION_NAME,
    connect_timeout: float = 5.0,
) -> psycopg.AsyncConnection[DictRow]:
    """An async connection returning rows as dicts."""
    conn = await psycopg.AsyncConnection.connect(
        dsn,
        autocommit=autocommit,
        row_factory=dict_row,
        **_params(application_name, connect_timeout),
    )
    set_json_loads(orjson.loads, conn)
    return conn


def connect_sync(
    dsn: str, *, autocommit: bool = False, application_name: str = APPLICATION_NAME
) -> psycopg.Connection[DictRow]:
    """A blocking connection returning rows as dicts (CLI and migrations)."""
    conn = psycopg.Connection.connect(
        dsn, autocommit=autocommit, row_factory=dict_row, **_params(application_name, 5.0)
    )
    set_json_loads(orjson.loads, conn)
    return conn
