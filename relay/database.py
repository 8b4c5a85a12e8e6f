"""The relay's database connections: one that comes back by itself (capped exponential backoff,
each kind of trouble logged once), and transactions with their statements pipelined."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
from psycopg.rows import DictRow

from outbox import db
from outbox.sql import query
from relay.config import RelayConfig

log = logging.getLogger("outbox.relay")


Conn = psycopg.AsyncConnection[DictRow]


# Connection trouble (a restart, a network cut) and anything else the database refuses: the relay
# logs it, reconnects with backoff and carries on; it never exits for them.
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


DATABASE_ERRORS = (psycopg.Error,)


# Errors that mean outbox's schema is missing here, or older than this relay.
NOT_INSTALLED_ERRORS = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
)


class Stopped(Exception):
    """The relay is stopping: a database wait gives up."""


def _trouble(exc: BaseException) -> str:
    """What kind of trouble a database error is: a lost or refused connection, outbox not
    installed, or anything else (each is reported its own way)."""
    if isinstance(exc, CONNECTION_ERRORS):
        return "connection"
    if isinstance(exc, NOT_INSTALLED_ERRORS):
        return "not installed"
    return "error"


def _backoff(failures: int) -> float:
    return min(10.0, 0.1 * 2.0 ** min(failures - 1, 16)) * random.uniform(0.8, 1.2)


class Database:
    """One connection that comes back by itself: capped exponential backoff with jitter.

    The backoff grows with every failure, of connecting or of a statement, and resets only once a
    statement succeeded (``succeeded``): a database that accepts connections but refuses every
    statement is retried at the same pace as one that is down. Each kind of trouble is logged when
    it starts, then now and then, and its end once. ``interrupt`` makes every wait give up
    (``Stopped``), for a relay that is stopping.
    """

    def __init__(self, dsn: str, purpose: str, config: RelayConfig, *, durable: bool = True) -> None:
        self._dsn = dsn
        self._purpose = purpose
        self._durable = durable
        self._config = config
        self._conn: Conn | None = None
        self._failures = 0
        self._trouble: str | None = None
        self._backoff_due = False
        self._interrupted = False
        self._waiting: anyio.CancelScope | None = None

    def interrupt(self) -> None:
        """Give up the wait in progress and every later one."""
        self._interrupted = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def get(self) -> Conn:
        if self._backoff_due:  # the last statement failed: wait before the next one
            self._backoff_due = False
            await self._wait(anyio.sleep, _backoff(self._failures))
        while self._conn is None or self._conn.closed:
            if self._interrupted:
                raise Stopped
            try:
                self._conn = await self._wait(
                    db.connect,
                    self._dsn,
                    autocommit=True,
                    application_name=f"outbox-relay-{self._purpose}",
                    connect_timeout=self._config.connect_timeout,
                    durable=self._durable,
                )
            except CONNECTION_ERRORS as exc:
                self._note("unreachable", first_line(exc))
            except psycopg.ProgrammingError:
                # a URL psycopg cannot parse: its message quotes the URL, password and all
                self._note("malformed", "")
            else:
                break
            await self._wait(anyio.sleep, _backoff(self._failures))
        return self._conn

    async def _wait(self, wait: Any, *args: Any, **kwargs: Any) -> Any:
        """``await wait(*args, **kwargs)``, unless ``interrupt`` comes first."""
        if self._interrupted:
            raise Stopped
        with anyio.CancelScope() as scope:
            self._waiting = scope
            try:
                return await wait(*args, **kwargs)
            finally:
                self._waiting = None
        raise Stopped

    def _note(self, trouble: str, detail: str) -> None:
        """Count a failure; log it when this kind of trouble starts, and now and then after."""
        self._failures += 1
        new = trouble != self._trouble
        self._trouble = trouble
        if not (new or self._failures == 5 or self._failures % 20 == 0):
            return
        purpose = self._purpose
        if trouble == "unreachable":
            log.warning("database unreachable (%s): %s; retrying", purpose, detail)
        elif trouble == "malformed":
            log.error("the database URL cannot be parsed (%s): fix DATABASE_URL; retrying", purpose)
        elif trouble == "connection":
            log.warning("lost the database connection (%s): %s", purpose, detail)
        elif trouble == "not installed":
            log.error(
                "outbox is not installed in this database, or its schema is older than this relay:"
                " run `outbox migrate` (%s: %s); retrying",
                purpose,
                detail,
            )
        else:
            log.error("database error (%s), %s; retrying", purpose, detail)

    async def failed(self, exc: BaseException) -> None:
        """A statement raised: back off before the next one; forget the connection unless it is
        still usable (a connection that broke is reconnected)."""
        trouble = _trouble(exc)
        detail = first_line(exc)
        self._note(trouble, detail if trouble != "error" else f"{type(exc).__name__}: {detail}")
        self._backoff_due = True
        conn = self._conn
        if (
            trouble == "connection"
            or conn is None
            or conn.broken
            or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            await self.close()

    def succeeded(self) -> None:
        """A statement succeeded: the backoff starts again from the beginning."""
        if not self._failures:
            return
        if self._trouble in ("unreachable", "connection"):
            log.info("database connection restored (%s)", self._purpose)
        elif self._trouble == "not installed":
            log.info("outbox is installed now (%s): working", self._purpose)
        else:
            log.info("database statements succeed again (%s)", self._purpose)
        self._failures = 0
        self._trouble = None

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                await conn.close()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@asynccontextmanager
async def transaction(conn: Conn) -> AsyncIterator[None]:
    """One transaction with its statements pipelined (fewer round trips).

    It commits as its connection does (``Database(durable=False)``: without waiting for the WAL
    flush), unless ``without_flush`` is called inside: for transactions whose loss in a database
    crash only repeats work. Every claim is durable and comes before any request is sent, and a WAL
    flush covers everything written before it, so no request ever goes out for a change the
    database could still forget.
    """
    async with conn.pipeline(), conn.transaction():
        yield


async def without_flush(conn: Conn) -> None:
    """Let the current transaction commit without waiting for the WAL flush."""
    await conn.execute(query("commit_without_flush"))
