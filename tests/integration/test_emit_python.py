"""outbox.emit, run_webhook, get_active_webhooks and emit_for from Python, on each kind of
connection an application has (outbox/emit.py), against a real relay and receiver.

Django is not installed here: its ``django.db.connection`` is stood in for by ``DjangoLike``, a
psycopg connection behind what Django's connection offers outbox (``cursor()`` returning a cursor
wrapper whose ``execute(sql, params)`` takes ``%s`` parameters), which is the DB-API path that
Django's connection takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import outbox
from outbox.emit import EmitError
from tests.support import lsdb

pytestmark = pytest.mark.anyio


class _CursorWrapper:
    """As Django's CursorWrapper: the driver's cursor behind execute/fetch/close."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any = None) -> Any:
        return self._cursor.execute(sql, params)

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def close(self) -> None:
        self._cursor.close()

    def __enter__(self) -> _CursorWrapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DjangoLike:
    """What ``django.db.connection`` offers: ``cursor()``, ``commit()``, ``rollback()``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def cursor(self) -> _CursorWrapper:
        return _CursorWrapper(self._conn.cursor())

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()


KINDS = [
    "psycopg",
    "psycopg-async",
    "sqlalchemy-connection",
    "sqlalchemy-session",
    "sqlalchemy-async-connection",
    "sqlalchemy-async-session",
    "django",
]


async def in_transaction(kind: str, url: str, work: Callable[[Any], Any], *, commit: bool) -> Any:
    """Run ``work(conn)`` (awaited when it returns an awaitable) in one transaction on a ``kind``
    connection, then commit or roll back. Returns what ``work`` returned."""

    async def call(conn: Any) -> Any:
        result = work(conn)
        return await result if inspect.isawaitable(result) else result

    if kind == "psycopg":
        with psycopg.connect(url) as conn:
            result = await call(conn)
            conn.commit() if commit else conn.rollback()
    elif kind == "django":
        with psycopg.connect(url) as raw:
            django = DjangoLike(raw)
            result = await call(django)
            django.commit() if commit else django.rollback()
    elif kind == "psycopg-async":
        async with await psycopg.AsyncConnection.connect(url) as aconn:
            result = await call(aconn)
            await (aconn.commit() if commit else aconn.rollback())
    elif kind.startswith("sqlalchemy-async"):

        async def connect() -> Any:
            return await psycopg.AsyncConnection.connect(url)

        engine = create_async_engine("postgresql+psycopg://", async_creator=connect)
        try:
            if kind.endswith("session"):
                async with AsyncSession(engine) as session:
                    result = await call(session)
                    await (session.commit() if commit else session.rollback())
            else:
                async with engine.connect() as connection:
                    result = await call(connection)
                    await (connection.commit() if commit else connection.rollback())
        finally:
            await engine.dispose()
    else:
        sync_engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url))
        try:
            if kind.endswith("session"):
                with Session(sync_engine) as sync_session:
                    result = await call(sync_session)
                    sync_session.commit() if commit else sync_session.rollback()
            else:
                with sync_engine.connect() as sync_connection:
                    result = await call(sync_connection)
                    sync_connection.commit() if commit else sync_connection.rollback()
        finally:
            sync_engine.dispose()
    return result


@pytest.fixture
def ls(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.project(conn, 1, 1)
    conn.execute(
        "insert into outbox.action (name, title, payload_key) values ('MODEL_TRAINED', 'Model trained', 'model')"
    )
    conn.execute("delete from outbox.change")
    return conn


@pytest.mark.parametrize("kind", KINDS)
async def test_each_connection_kind_emits_inside_its_transaction(
    kind, ls, database_url, receiver, start_relay
):
    hook = lsdb.webhook(ls, receiver.url, project_id=1)
    trained = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    async with start_relay():

        def rolled_back(conn: Any) -> Any:
            return outbox.emit(conn, "MODEL_TRAINED", {"n": "rolled back"}, organization_id=1, project_id=1)

        await in_transaction(kind, database_url, rolled_back, commit=False)

        def committed(conn: Any) -> Any:
            async def both() -> Any:
                first = outbox.emit(
                    conn, "MODEL_TRAINED", {"n": "emitted", "at": trained}, organization_id=1, project_id=1
                )
                event_id = await first if inspect.isawaitable(first) else first
                second = outbox.run_webhook(conn, hook, "MODEL_TRAINED", {"n": "run"})
                await second if inspect.isawaitable(second) else second
                found = outbox.get_active_webhooks(conn, 1, "MODEL_TRAINED", project_id=1)
                return event_id, await found if inspect.isawaitable(found) else found

            return both()

        event_id, active = await in_transaction(kind, database_url, committed, commit=True)
        assert isinstance(event_id, int)
        assert active == [outbox.ActiveWebhook(hook, 1, receiver.url, True)]
        ls.execute("select outbox.emit('MODEL_TRAINED', 1, 1, '{\"n\": \"marker\"}')")
        requests = await receiver.wait_until(lambda got: any(r.json["model"]["n"] == "marker" for r in got))
    assert sorted(r.json["model"]["n"] for r in requests) == ["emitted", "marker", "run"]
    emitted = next(r.json for r in requests if r.json["model"]["n"] == "emitted")
    assert emitted["model"] == {"n": "emitted", "at": "2026-01-31T12:00:00Z"}
    assert list(emitted) == ["action", "model", "project"] and emitted["project"]["id"] == 1


@pytest.mark.parametrize("kind", ["psycopg", "sqlalchemy-session", "django"])
async def test_a_refusal_names_the_action_and_aborts_nothing_but_the_callers_statement(
    kind, ls, database_url
):
    def unknown(conn: Any) -> Any:
        return outbox.emit(conn, "NOT_REGISTERED", {}, organization_id=1)

    with pytest.raises(Exception, match='unknown action "NOT_REGISTERED"'):
        await in_transaction(kind, database_url, unknown, commit=True)
    assert ls.execute("select count(*) from outbox.event").fetchone()["count"] == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("text", "must be a JSON object or array"),
        (42, "not int"),
        (None, "not NoneType"),
        ({"when": object()}, "the payload is not JSON"),
        ({1: "non-string key"}, "the payload is not JSON"),
    ],
)
def test_payloads_that_are_not_json_objects_or_arrays_are_refused_before_the_database(ls, payload, message):
    with pytest.raises(EmitError, match=message):
        outbox.emit(ls, "MODEL_TRAINED", payload, organization_id=1)
    assert ls.execute("select count(*) from outbox.event").fetchone()["count"] == 0


def test_an_object_that_is_no_connection_is_refused_with_what_to_give():
    with pytest.raises(EmitError, match="cannot use a int as a database connection"):
        outbox.emit(42, "MODEL_TRAINED", {}, organization_id=1)


def test_lists_and_tuples_are_arrays(ls):
    with ls.transaction():
        outbox.emit(ls, "MODEL_TRAINED", [1, 2], organization_id=1)
        outbox.emit(ls, "MODEL_TRAINED", (3,), organization_id=1)
    stored = ls.execute("select payload from outbox.emitted order by event_id").fetchall()
    assert [r["payload"] for r in stored] == [[1, 2], [3]]


@pytest.mark.parametrize("kind", ["psycopg-async", "django"])
async def test_emit_for_writes_the_change_a_trigger_would_have(kind, ls, database_url):
    ls.execute("insert into task (id, data, project_id) values (70, '{}', 1), (71, '{}', 1)")
    ls.execute("delete from outbox.change")

    def send(conn: Any) -> Any:
        return outbox.emit_for(conn, "TASKS_CREATED", [71, 70], project_id=1)

    assert await in_transaction(kind, database_url, send, commit=True) == 2
    change = ls.execute("select table_name, op, project_id, row_ids from outbox.change").fetchone()
    assert change == {"table_name": "task", "op": "INSERT", "project_id": 1, "row_ids": [71, 70]}


def test_emit_for_takes_integer_ids_only(ls):
    for ids in (["70"], [True], "70"):
        with pytest.raises(EmitError, match="ids must be a list of integer row ids"):
            outbox.emit_for(ls, "TASKS_CREATED", ids, project_id=1)  # type: ignore[arg-type]
