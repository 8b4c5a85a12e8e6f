"""Hardening of the admin API (issue 9), against a real uvicorn on 127.0.0.1 and real PostgreSQL.

Item 4: request bodies. An unauthenticated request is refused from its headers alone, its body
never read; an authenticated body is cut off as soon as more than 1 MiB arrived, chunked or not.
These tests speak HTTP/1.1 over raw sockets, since an HTTP client would send the whole body before
reading the answer.

Item 8: the database. On a database where `outbox migrate` never ran, or with the database down,
routes answer 503 with one clear message and the server logs one line, never a traceback, never
the DSN's password. Those tests run `outbox api` as a process, to read its whole log output.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route

from outbox.api import create_app
from outbox.api.app import MAX_BODY_BYTES, ROUTERS
from outbox.console import site
from tests.integration.api.conftest import ADMIN_TOKEN, api_settings
from tests.integration.conftest import OUTBOX_CLI, OwnPostgres, _environment
from tests.support.waiting import wait_until_answering

# What the 401 has always looked like (Label Studio's body and header); nothing else changes.
NOT_PROVIDED = "Authentication credentials were not provided."
WWW_AUTHENTICATE = 'Token realm="outbox"'
# Routes anyone may call; everything else needs the admin token.
PUBLIC = {
    ("GET", "/api/webhooks/info/"),
    ("GET", "/api/webhooks/info"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
SECRET = "Sup3rS3cret"
DEADLINE = 15.0  # seconds: far above what any answer here takes, only there to fail, not to hang


# -- raw HTTP/1.1 ------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after this answer

    def json(self) -> Any:
        return json.loads(self.body)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
    sock.settimeout(DEADLINE)
    return sock


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> Answer:
    """One response (with a Content-Length, as every answer of this API has), then whether the
    server closed the connection after it. A timeout fails the test."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the answer"
        rest += chunk
    closed = headers.get("connection", "").lower() == "close"
    if closed:
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    return Answer(int(status_line.split()[1]), headers, rest[:length], closed)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@contextmanager
def _sending(sock: socket.socket, chunks: Iterator[bytes]) -> Iterator[list[int]]:
    """Send ``chunks`` from a thread while the block reads; yields [bytes sent so far]. The
    server may close the connection in the middle: the sender then stops."""
    sent = [0]

    def send() -> None:
        try:
            for data in chunks:
                sock.sendall(data)
                sent[0] += len(data)
        except OSError:
            pass  # the server refused and closed: what these tests expect

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        with contextlib.suppress(OSError):  # already closed by the server
            sock.shutdown(socket.SHUT_RDWR)
        thread.join(DEADLINE)


def _token_header() -> dict[str, str]:
    return {"Authorization": f"Token {ADMIN_TOKEN}"}


# -- item 4: bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/webhooks/"),
        ("PATCH", "/api/webhooks/1/"),
        ("PUT", "/api/webhooks/1"),
        ("POST", "/api/webhooks/1/rotate-secret"),
        ("POST", "/api/webhooks/1/recover"),
        ("POST", "/api/deliveries/1/retry"),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
def test_unauthenticated_chunked_body_is_refused_from_the_headers(api, method, path, token):
    """Issue 9 item 4: a chunked request without the token gets its 401 before it sends any of
    its body (the server read only the headers), with the same body and WWW-Authenticate header
    as every 401, and the connection is closed instead of waiting for (or reading) the body."""
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    with _connect(api.url) as sock:
        sock.sendall(_head(method, path, headers))
        answer = _read_answer(sock)
    assert answer.status == 401
    assert answer.json()["detail"] == (NOT_PROVIDED if token is None else "Invalid token.")
    assert answer.json()["status_code"] == 401 and answer.json()["exc_info"] is None
    assert answer.headers["www-authenticate"] == WWW_AUTHENTICATE
    assert answer.closed


def test_unauthenticated_body_is_refused_while_the_client_sends(api):
    """Issue 9 item 4: a client already streaming an endless chunked body without a token gets
    its 401 while it is still sending; the server stops reading and closes the connection."""

    def endless() -> Iterator[bytes]:
        while True:
            yield _chunk(b"x" * 65536)

    with _connect(api.url) as sock:
        sock.sendall(_head("POST", "/api/webhooks/", {"Transfer-Encoding": "chunked"}))
        with _sending(sock, endless()):
            answer = _read_answer(sock)
    assert answer.status == 401 and answer.json()["detail"] == NOT_PROVIDED
    assert answer.headers["www-authenticate"] == WWW_AUTHENTICATE
    assert answer.closed


def test_every_route_but_the_public_ones_refuses_before_reading(api):
    """Issue 9 item 4: the middleware's idea of which routes are public is the routes' own
    (their `require_token` dependency), for every route the app serves, hidden ones included."""
    app = create_app(api_settings(), api.database_url, admin_token=ADMIN_TOKEN)
    routers = [r.original_router for r in app.router.routes if hasattr(r, "original_router")]
    assert routers == list(ROUTERS)  # the middleware knows every router the app serves
    # the console's pages and static files: tests/integration/console/test_console_security.py
    own = [r for r in app.router.routes if not hasattr(r, "original_router") and not isinstance(r, Mount)]
    api_routers = [router for router in ROUTERS if router not in site.ROUTERS]
    checked = 0
    for route in [*own, *(route for router in api_routers for route in router.routes)]:
        assert isinstance(route, APIRoute | Route), route
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            path = route.path.replace("{webhook_id:int}", "1").replace("{delivery_id:int}", "1")
            with _connect(api.url) as sock:
                sock.sendall(_head(method, path, {"Transfer-Encoding": "chunked"}))
                if (method, route.path) in PUBLIC:
                    sock.sendall(_chunk(b"") if method != "GET" else b"0\r\n\r\n")
                    answer = _read_answer(sock)
                    assert answer.status < 400, (method, path, answer)
                else:
                    answer = _read_answer(sock)
                    assert answer.status == 401, (method, path, answer)
                    assert answer.json()["detail"] == NOT_PROVIDED
            checked += 1
    assert checked >= 38


def test_authenticated_chunked_body_over_the_limit_gets_413(api):
    """Issue 9 item 4: a chunked body (no Content-Length) is cut off with a 413 as soon as more
    than 1 MiB arrived, not read to its end; the server closes the connection."""
    limit_reached = threading.Event()

    def body() -> Iterator[bytes]:
        sent = 0
        while sent <= 64 * MAX_BODY_BYTES:  # bounded: before the fix the server reads it all
            sent += 65536
            if sent > MAX_BODY_BYTES:
                limit_reached.set()
            yield _chunk(b" " * 65536)
        yield b"0\r\n\r\n"

    headers = {**_token_header(), "Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    with _connect(api.url) as sock:
        sock.sendall(_head("POST", "/api/webhooks/", headers))
        with _sending(sock, body()) as sent:
            answer = _read_answer(sock)
            at_answer = sent[0]
    assert answer.status == 413, answer
    assert answer.json()["detail"] == f"Request body larger than {MAX_BODY_BYTES} bytes."
    assert answer.closed
    assert limit_reached.is_set() and at_answer < 64 * MAX_BODY_BYTES


def test_declared_length_over_the_limit_gets_413_before_the_body(api):
    """Issue 9 item 4: a Content-Length over 1 MiB is refused from the headers."""
    headers = {**_token_header(), "Content-Length": str(MAX_BODY_BYTES + 1)}
    with _connect(api.url) as sock:
        sock.sendall(_head("POST", "/api/webhooks/", headers))
        answer = _read_answer(sock)
    assert answer.status == 413 and answer.closed


def test_a_lying_content_length_reads_only_what_it_declares(api):
    """Issue 9 item 4: a Content-Length of 20 followed by 2 MiB: the body is 20 bytes (answered
    400, invalid JSON), what follows is no request (the server answers 400 and closes), and the
    server serves the next client normally."""
    headers = {**_token_header(), "Content-Length": "20", "Content-Type": "application/json"}
    with _connect(api.url) as sock:
        sock.sendall(_head("POST", "/api/webhooks/", headers))
        with _sending(sock, iter([b'{"url": "http://127.', b"x" * (2 * MAX_BODY_BYTES)])):
            first = _read_answer(sock)
    assert first.status == 400 and first.json()["detail"].startswith("JSON parse error")
    with httpx.Client(base_url=api.url, headers=_token_header()) as client:
        assert client.get("/api/webhooks/").status_code == 200


def test_authenticated_bodies_within_the_limit_still_work(api):
    """Issue 9 item 4: bodies up to 1 MiB, chunked or with a Content-Length, reach the route."""
    body = json.dumps({"url": "http://127.0.0.1:9/hook", "project": 1}).encode()
    padded = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"  # exactly the limit
    with _connect(api.url) as sock:
        headers = {**_token_header(), "Transfer-Encoding": "chunked", "Content-Type": "application/json"}
        sock.sendall(_head("POST", "/api/webhooks/", headers))
        for start in range(0, len(padded), 100_000):
            sock.sendall(_chunk(padded[start : start + 100_000]))
        sock.sendall(b"0\r\n\r\n")
        chunked = _read_answer(sock)
        headers = {**_token_header(), "Content-Length": str(len(body)), "Content-Type": "application/json"}
        sock.sendall(_head("POST", "/api/webhooks/", headers) + body)
        sized = _read_answer(sock)  # the same connection: it was kept alive
    assert chunked.status == 201, chunked.body
    assert sized.status == 201, sized.body
    assert not sized.closed
    with httpx.Client(base_url=api.url, headers=_token_header()) as client:
        assert len(client.get("/api/webhooks/").json()) == 2
        assert client.post("/api/webhooks/1/pause").json()["is_active"] is False


# -- item 8: the database ----------------------------------------------------------------------


@dataclass
class ApiProcess:
    url: str
    log: Path
    pid: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def spawn_api(tmp_path: Path) -> Iterator[Callable[[str], ApiProcess]]:
    """``spawn_api(database_url)`` runs ``outbox api`` on 127.0.0.1 until the test ends; its whole
    output (stdout and stderr, uvicorn's too) goes to a file."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(database_url: str) -> ApiProcess:
        port = _free_port()
        log = tmp_path / f"api-{len(started)}.log"
        env = _environment(database_url, {"OUTBOX_ADMIN_TOKEN": ADMIN_TOKEN, "OUTBOX_LOG_LEVEL": "INFO"})
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(OUTBOX_CLI), "api", "--port", str(port)],
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url + "/healthz", proc, timeout=DEADLINE, status=200, output=log.read_text)
        return ApiProcess(url, log, proc.pid)

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


PROTECTED_CALLS = [
    ("GET", "/api/webhooks/", None),
    ("POST", "/api/webhooks/", {"url": "http://127.0.0.1:9/hook", "project": 1}),
    ("GET", "/api/webhooks/1/", None),
    ("PATCH", "/api/webhooks/1/", {"description": "x"}),
    ("POST", "/api/webhooks/1/test", None),
    ("GET", "/api/events/", None),
    ("GET", "/api/deliveries/1/", None),
    ("POST", "/api/deliveries/1/retry", None),
    ("GET", "/metrics", None),
]


def _call_all(api: ApiProcess) -> list[httpx.Response]:
    with httpx.Client(base_url=api.url, headers=_token_header(), timeout=30) as client:
        return [client.request(method, path, json=body) for method, path, body in PROTECTED_CALLS]


def _assert_one_line_each(output: str, marker: str, count: int) -> None:
    assert "Traceback" not in output, output
    assert "Exception in ASGI application" not in output, output
    assert SECRET not in output
    lines = [line for line in output.splitlines() if marker in line]
    assert len(lines) == count, output


def test_a_database_without_outbox_answers_503_run_migrate(spawn_api, ls_database_url):
    """Issue 9 item 8: on a database where `outbox migrate` never ran, every route answers 503
    saying so, in Label Studio's error format, and the server logs one line per request."""
    import psycopg

    with psycopg.connect(ls_database_url, autocommit=True) as conn:
        conn.execute("insert into organization (id, title) values (1, 'org')")
        conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1)")
    api = spawn_api(ls_database_url)
    answers = _call_all(api)
    for (method, path, _), answer in zip(PROTECTED_CALLS, answers, strict=True):
        assert answer.status_code == 503, (method, path, answer.text)
        body = answer.json()
        assert set(body) == {"id", "status_code", "version", "detail", "exc_info"}
        assert body["status_code"] == 503 and body["exc_info"] is None
        assert body["detail"] == "outbox is not installed in this database: run `outbox migrate`."
    ready = httpx.get(api.url + "/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    _assert_one_line_each(api.output(), "outbox is not installed", len(PROTECTED_CALLS))


def test_nothing_listening_answers_503_database_unavailable(spawn_api):
    """Issue 9 item 8: with nothing listening at the database's address, routes answer 503
    "database unavailable", the server logs one line per request, no traceback, and the DSN's
    password is nowhere in its output."""
    port = _free_port()  # nothing listens there
    api = spawn_api(f"postgresql://u:{SECRET}@127.0.0.1:{port}/x")
    answers = _call_all(api)
    for (method, path, _), answer in zip(PROTECTED_CALLS, answers, strict=True):
        assert answer.status_code == 503, (method, path, answer.text)
        assert answer.json()["detail"] == "Database unavailable."
        assert SECRET not in answer.text
    ready = httpx.get(api.url + "/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["database"].startswith("unreachable")
    _assert_one_line_each(api.output(), "database unavailable", len(PROTECTED_CALLS))


def test_database_stopped_under_a_running_api_answers_503(spawn_api, own_postgres: OwnPostgres):
    """Issue 9 item 8: the database stops while the API holds pooled connections: 503 "database
    unavailable", one line per request, no traceback, no password."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute(f"create role u login password '{SECRET}' superuser")
        conn.execute("insert into organization (id, title) values (1, 'org')")
        conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1)")
    api = spawn_api(make_conninfo(own_postgres.url, user="u", password=SECRET))
    with httpx.Client(base_url=api.url, headers=_token_header(), timeout=30) as client:
        assert (
            client.post("/api/webhooks/", json={"url": "http://127.0.0.1:9/", "project": 1}).status_code
            == 201
        )
        assert client.get("/api/webhooks/").status_code == 200
        own_postgres.stop()
        answers = [client.get("/api/webhooks/"), client.get("/api/webhooks/1/"), client.get("/metrics")]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["detail"] == "Database unavailable."
    assert httpx.get(api.url + "/readyz", timeout=30).status_code == 503
    _assert_one_line_each(api.output(), "database unavailable", len(answers))


def test_an_unexpected_500_logs_one_traceback_without_parameters_nor_dsn(spawn_api, installed_database_url):
    """Issue 9 item 8: an unexpected database error is a 500 whose id is in the log with one
    traceback (not two), which carries the statement but neither its parameters (a header value
    here) nor the DSN's password."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(installed_database_url, autocommit=True) as conn:
        conn.execute("insert into organization (id, title) values (1, 'org')")
        conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1)")
        # a trigger failing as a bug in outbox's schema would: an error no rule expects
        conn.execute(
            "create function outbox.test_fail() returns trigger language plpgsql as"
            " $$ begin raise exception 'unexpected failure' using errcode = 'XX000'; end $$"
        )
        conn.execute(
            "create trigger test_fail before insert on outbox.webhook"
            " for each row execute function outbox.test_fail()"
        )
    api = spawn_api(make_conninfo(installed_database_url, password=SECRET))
    hook = {"url": "http://127.0.0.1:9/", "project": 1, "headers": {"X-Key": "HeaderVa1ue"}}
    with httpx.Client(base_url=api.url, headers=_token_header(), timeout=30) as client:
        answer = client.post("/api/webhooks/", json=hook)
    assert answer.status_code == 500
    error_id = answer.json()["id"]
    assert answer.json()["detail"] == f"Internal server error (id {error_id})."
    output = api.output()
    assert "Exception in ASGI application" not in output, output  # uvicorn's second traceback
    assert len([line for line in output.splitlines() if " ERROR " in line]) == 1, output
    assert error_id in output and "INSERT INTO outbox.webhook" in output
    assert "HeaderVa1ue" not in output and SECRET not in output


# (a malformed DATABASE_URL never reaches the API: `outbox api` refuses it in one line, exit 2,
# without the password: tests/acceptance/test_cli_hardening.py)


# -- the pure decisions, property-based --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 300_000), max_size=12), ends=st.booleans())
def test_the_body_is_read_up_to_the_limit_and_no_further(sizes, ends):
    """Issue 9 item 4: whatever the chunks, the body comes whole if it is at most 1 MiB, else a 413
    as soon as the chunk crossing the limit arrived: nothing after it is asked for."""
    import anyio
    from starlette.responses import Response

    from outbox.api.app import _read_body

    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": bytes([i % 256]) * size, "more_body": True}
        for i, size in enumerate(sizes)
    ]
    if ends:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    else:
        messages.append({"type": "http.disconnect"})
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return messages[asked - 1]

    result = anyio.run(_read_body, receive)
    crossing = next((i for i in range(len(sizes)) if sum(sizes[: i + 1]) > MAX_BODY_BYTES), None)
    if crossing is not None:
        assert isinstance(result, Response) and result.status_code == 413
        assert asked == crossing + 1
    elif ends:
        assert result == b"".join(m["body"] for m in messages)
    else:
        assert result is None  # the client went away: nothing to answer


# SQLSTATEs by what they say about the database, as outbox.admin.database decides.
MISSING = ["3F000", "42P01", "42703", "42883", "42704"]
DOWN = ["08000", "08003", "08006", "08001", "08004", "53300", "57P01", "57P02", "57P03"]
REQUEST = ["22001", "22003", "22P02", "23505", "23514", "23503", "40001", "40P01", "57014", "42601"]


@settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(MISSING + DOWN + REQUEST),
    invalidated=st.booleans(),
    message=st.text(max_size=50),
)
def test_database_failures_are_told_apart_by_sqlstate(code, invalidated, message):
    """Issue 9 item 8: a missing outbox object says `outbox migrate`; a database that cannot serve
    (or a connection SQLAlchemy dropped) is "unavailable"; what the request itself caused (bad data,
    a conflict, a timeout) is neither, so it stays a 400 or a 500."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    from outbox.admin import database

    original = psycopg.errors.lookup(code)(message)
    assert original.sqlstate == code
    error = DBAPIError("select 1", None, original, connection_invalidated=invalidated)
    decided = database.unavailable(error)
    if code in MISSING:
        assert decided == database.NOT_INSTALLED
    elif code in DOWN or invalidated:
        assert decided == database.UNAVAILABLE
    else:
        assert decided is None
    line = database.describe(error)  # what the log says: one line, whatever the message
    assert len(line.splitlines()) == 1 and line.startswith(f"{type(original).__name__}: ")


@pytest.mark.anyio
async def test_an_exhausted_connection_pool_answers_503_not_500(monkeypatch):
    """Item 8: every pooled connection busy past the pool's timeout (a database that hangs) is the
    database being unavailable, like a database that is down: 503, never a 500."""
    import httpx
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from outbox.admin import webhooks as admin_webhooks
    from outbox.api.app import create_app
    from outbox.config import Settings

    async def exhausted(*args, **kwargs):
        raise PoolTimeout("QueuePool limit of size 5 overflow 5 reached, connection timed out")

    monkeypatch.setattr(admin_webhooks, "list_webhooks", exhausted)
    app = create_app(Settings(database_url=None), "postgresql://127.0.0.1:1/x", admin_token=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        answer = await client.get("/api/webhooks/")
    assert answer.status_code == 503
    assert answer.json()["detail"] == "Database unavailable."
