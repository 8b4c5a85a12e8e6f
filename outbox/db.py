"""Connections to the Label Studio database, configured the same way everywhere: the relay's, the
CLI's and migrations', and the admin API's engine all connect through this module.

Sessions run in UTC so timestamps come back ready to serialise with a ``Z``, without JIT
(``session_parameters``); jsonb is parsed with orjson where rows are dicts. DSNs are masked before
they reach a log line or an error message.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads

APPLICATION_NAME = "outbox"

_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")
# libpq's own messages quote the string they could not parse, password included: each is mapped
# to a description of the problem (first match wins), never echoed.
_PARSE_PROBLEMS = (
    ("percent-encoded", "a bad percent-escape (write % itself as %25, and @ : / ? # as %40 %3A %2F %3F %23)"),
    ("query parameter", "an unknown query parameter"),
    ("IPv6", "an unterminated [IPv6 host]"),
    ("quoted string", "an unterminated quoted value"),
)
_CONNINFO_HELP = "use postgresql://user:password@host:5432/dbname or libpq key=value pairs"


class DatabaseUrlError(ValueError):
    """DATABASE_URL cannot be a PostgreSQL connection string; the message never holds its value."""


def check_database_url(dsn: str, variable: str) -> dict[str, str]:
    """Parse ``dsn`` as libpq would, or raise DatabaseUrlError naming ``variable`` and the problem.

    Checked once, before anything connects: psycopg's own parse errors, raised later and deeper,
    quote the whole string.
    """
    if not dsn.strip():
        raise DatabaseUrlError(f"{variable}: empty; {_CONNINFO_HELP}")
    scheme = _SCHEME.match(dsn)
    if scheme and scheme.group(1).lower() not in ("postgresql", "postgres"):
        raise DatabaseUrlError(
            f"{variable}: the scheme {scheme.group(1).lower()}:// is not PostgreSQL's; {_CONNINFO_HELP}"
        )
    try:
        return conninfo_to_dict(dsn)  # type: ignore[return-value]
    except psycopg.ProgrammingError as exc:
        reason = str(exc)
        problem = next((text for key, text in _PARSE_PROBLEMS if key in reason), None)
        what = f"has {problem}" if problem else "cannot be parsed"
        raise DatabaseUrlError(f"{variable}: {what}; {_CONNINFO_HELP}") from None


def dsn_secrets(dsn: str) -> list[str]:
    """The password of ``dsn`` in every form it may be printed in: as written, percent-decoded,
    as libpq parses it. Best effort on strings that do not parse: they are refused, but a log
    handler set up before that must still hide them."""
    found: set[str] = set()
    scheme = _SCHEME.match(dsn)
    if scheme:
        rest = dsn[scheme.end() :]
        # userinfo ends at the first or (with a raw @ in the password) the last @
        for end in {rest.find("@"), rest.rfind("@")} - {-1}:
            user, sep, password = rest[:end].partition(":")
            if sep and password:
                found.update((password, unquote(password)))
    # key=value pairs, and ?password= in a URL's query
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]+)", dsn):
        raw = match.group(1)
        found.update((raw, unquote(raw), re.sub(r"\\(.)", r"\1", raw.strip("'"))))
    try:
        parsed = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        parsed = {}
    if parsed.get("password"):
        found.add(str(parsed["password"]))
    return sorted((s for s in found if s), key=len, reverse=True)


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced, safe for logs and errors."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DATABASE_URL>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def session_parameters(application_name: str, connect_timeout: float) -> dict[str, Any]:
    """What every connection of outbox is opened with (libpq keywords)."""
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
    durable: bool = True,
) -> psycopg.AsyncConnection[DictRow]:
    """An async connection returning rows as dicts. Not ``durable``: its commits return before
    their WAL is flushed (for writes whose loss in a database crash only repeats work)."""
    parameters = session_parameters(application_name, connect_timeout)
    if not durable:
        parameters["options"] += " -c synchronous_commit=off"
    conn = await psycopg.AsyncConnection.connect(
        dsn, autocommit=autocommit, row_factory=dict_row, **parameters
    )
    set_json_loads(orjson.loads, conn)
    return conn


def connect_sync(
    dsn: str, *, autocommit: bool = False, application_name: str = APPLICATION_NAME
) -> psycopg.Connection[DictRow]:
    """A blocking connection returning rows as dicts (CLI and migrations)."""
    conn = psycopg.Connection.connect(
        dsn, autocommit=autocommit, row_factory=dict_row, **session_parameters(application_name, 5.0)
    )
    set_json_loads(orjson.loads, conn)
    return conn


async def connect_plain(
    dsn: str, *, application_name: str = APPLICATION_NAME, connect_timeout: float = 5.0
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """An async connection with psycopg's own row and json handling, for SQLAlchemy (which reads
    rows by position and parses json itself)."""
    return await psycopg.AsyncConnection.connect(dsn, **session_parameters(application_name, connect_timeout))
