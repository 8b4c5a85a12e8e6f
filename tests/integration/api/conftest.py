"""Fixtures that start the admin API: a real uvicorn server on 127.0.0.1, on a fresh database."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI

from outbox.api import create_app
from outbox.config import Settings
from tests.support.waiting import wait_until

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass(frozen=True)
class ApiServer:
    """A running admin API: ``url``, and clients with (or without) the admin token."""

    url: str
    database_url: str
    settings: Settings
    token: str | None = ADMIN_TOKEN

    def client(self, token: str | None = ADMIN_TOKEN, scheme: str = "Token") -> httpx.Client:
        headers = {"Authorization": f"{scheme} {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def async_client(self, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Token {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 until the block ends."""
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it every
    # keep-alive request waits 40 ms (Nagle against delayed ACKs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "the admin API's server thread died"
        return bool(server.started)

    wait_until(started, timeout=10, what="the admin API to start", interval=0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def api_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": None, "admin_token": ADMIN_TOKEN}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def seeded(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Label Studio's organization 1 with projects 1 and 2; the seeding's own changes are dropped
    (not under test, and work queued without a relay makes /readyz answer 503)."""
    conn.execute("insert into organization (id, title) values (1, 'org')")
    conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1), (2, 'p2', 1)")
    conn.execute("delete from outbox.change")
    return conn


@pytest.fixture
def start_api(database_url: str) -> Iterator[Callable[..., ApiServer]]:
    """``start_api(**settings)`` serves the admin API on ``database_url`` until the test ends."""
    with_stack: list[Any] = []

    def start(*, admin_token: str | None = ADMIN_TOKEN, **overrides: Any) -> ApiServer:
        settings = api_settings(**overrides)
        app = create_app(settings, database_url, admin_token=admin_token)
        context = serve(app)
        url = context.__enter__()
        with_stack.append(context)
        return ApiServer(url, database_url, settings, admin_token)

    yield start
    for context in reversed(with_stack):
        context.__exit__(None, None, None)


@pytest.fixture
def api(start_api: Callable[..., ApiServer], seeded: psycopg.Connection[Any]) -> ApiServer:
    """The admin API on a database with organization 1 and projects 1 and 2."""
    return start_api()


@pytest.fixture(scope="module")
def module_api(postgres_server: Any, templates: Any) -> Iterator[ApiServer]:
    """One admin API for a whole module, on a database of its own with organization 1, projects 1
    and 2, webhook 1 and its delivery 1 (for tests that make many requests, e.g. schemathesis)."""
    from tests.conftest import _create_database, _drop_database

    name = f"test_api_{uuid.uuid4().hex[:8]}"
    url = _create_database(postgres_server, name, template=templates.installed)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("insert into organization (id, title) values (1, 'org')")
            conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1), (2, 'p2', 1)")
        settings = api_settings()
        with serve(create_app(settings, url, admin_token=ADMIN_TOKEN)) as base:
            server = ApiServer(base, url, settings)
            with server.client() as client:
                client.post("/api/webhooks/", json={"url": "http://127.0.0.1:9/hook", "project": 1})
                client.post("/api/webhooks/1/test")
            yield server
    finally:
        _drop_database(postgres_server, name)
