"""issue 9 item 12: attaching outbox to (or detaching it from) a live Label Studio never freezes
Label Studio's writes.

DDL on Label Studio's tables needs an ACCESS EXCLUSIVE lock. Waiting for one behind a long
transaction (an import) used to make every later write to the table queue behind the waiting
request, for as long as that transaction lasted. Now each attempt waits at most
``migrations.LOCK_TIMEOUT``, then steps aside and retries with backoff, saying what it waits on.

Each test holds an uncommitted ``insert into task`` open on one connection (the import), runs
``migrate``/``uninstall`` in a thread on a second, and writes to ``task`` from a third while the
second is queued for its lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox import db, migrations
from tests.integration.test_migrations import CAPTURE_TRIGGERS
from tests.support.waiting import wait_until

# A Label Studio write may wait for outbox's lock request at most LOCK_TIMEOUT (0.5 s), twice when
# its commit also checks a foreign key onto a table outbox holds: "well under" this bound.
WRITE_BOUND = 2.0
# Without the fix such a write waits until this statement timeout, and the test fails there.
WRITER_STATEMENT_TIMEOUT = "5s"
# How many times a write has to get through while outbox is queued for its lock: twice shows that
# each new attempt steps aside again (each costs a lock timeout and a growing pause: 5 s for three).
WRITES = 2


def connect(url: str) -> psycopg.Connection[Any]:
    return db.connect_sync(url, autocommit=True)


def attached_triggers(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "select count(*) from pg_trigger t join pg_class c on c.oid = t.tgrelid"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and t.tgname like 'outbox%%'"
    ).fetchone()
    assert row is not None
    return int(row["count"])


class Background:
    """Runs ``target`` in a thread; ``result()`` returns its value or raises its exception."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self._value = target()
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self, timeout: float = 30.0) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._value


@contextmanager
def an_import_in_progress(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A Label Studio transaction that inserted a task and has not committed yet. Enter it after
    outbox's connection, so that a failing test ends the import before closing that connection."""
    with db.connect_sync(url) as holder:
        holder.execute("insert into task (data, project_id) values ('{\"import\": true}', 1)")
        yield holder
        if not holder.closed:
            holder.rollback()


def seed(url: str) -> None:
    with connect(url) as conn:
        conn.execute("insert into organization (id, title) values (1, 'o')")
        conn.execute("insert into project (id, organization_id) values (1, 1)")


def queued_for_a_lock(observer: psycopg.Connection[Any], pid: int) -> bool:
    row = observer.execute(
        "select exists (select from pg_locks where pid = %s and not granted) as queued", (pid,)
    ).fetchone()
    return bool(row and row["queued"])


def label_studio_writes_get_through(url: str, outbox_pid: int, work: Background) -> list[float]:
    """While outbox is queued for its lock, a write to ``task`` from a third connection commits
    within WRITE_BOUND; WRITES times, each time outbox queues again. Returns the seconds taken."""
    taken = []
    with connect(url) as observer, connect(url) as writer:
        writer.execute(f"set statement_timeout = '{WRITER_STATEMENT_TIMEOUT}'")
        for n in range(WRITES):
            wait_until(
                lambda: queued_for_a_lock(observer, outbox_pid) or not work.running,
                timeout=30,
                what="outbox is queued for a lock on Label Studio's tables",
            )
            assert work.running, "outbox finished while the import was still open"
            started = time.monotonic()
            writer.execute(
                "insert into task (data, project_id) values (jsonb_build_object('n', %s::int), 1)", (n,)
            )
            taken.append(time.monotonic() - started)
            assert taken[-1] < WRITE_BOUND, f"a Label Studio write waited {taken[-1]:.2f}s behind outbox"
            # the next write must meet outbox's next attempt, not this one
            wait_until(
                lambda: not queued_for_a_lock(observer, outbox_pid) or not work.running,
                timeout=30,
                what="outbox's attempt ended",
            )
    return taken


@pytest.fixture(params=["first install", "re-apply of capture.sql"])
def attaching_url(request: pytest.FixtureRequest) -> str:
    """A Label Studio database outbox is attached to for the first time, or re-attached to
    (capture.sql changed: uninstall.sql and capture.sql run again)."""
    if request.param == "first install":
        url: str = request.getfixturevalue("ls_database_url")
    else:
        url = request.getfixturevalue("installed_database_url")
        with connect(url) as conn:
            conn.execute("update outbox.schema_migrations set checksum = 'old' where name = 'capture.sql'")
    seed(url)
    return url


def test_migrate_waits_beside_an_import_not_in_front_of_label_studio(
    attaching_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 9 item 12: while `migrate` waits for an open import, Label Studio's other writes to
    `task` still commit; `migrate` reports what it waits on, and completes once the import commits."""
    caplog.set_level(logging.INFO, logger="outbox.migrate")
    waits: list[migrations.LockWait] = []
    with connect(attaching_url) as conn, an_import_in_progress(attaching_url) as holder:
        holder_pid = holder.info.backend_pid
        work = Background(lambda: migrations.migrate(conn, on_wait=waits.append))
        label_studio_writes_get_through(attaching_url, conn.info.backend_pid, work)
        holder.commit()
        applied = work.result()
    assert "capture.sql" in [m.name for m in applied]
    assert waits, "migrate never said it was waiting"
    first = waits[0]
    assert first.what == "capture.sql"
    # oldest transaction first: the import (a write of ours may be finishing beside it)
    assert (first.holders[0].relation, first.holders[0].pid) == ("public.task", holder_pid)
    assert first.holders[0].transaction_seconds is not None
    assert f"public.task held by pid {holder_pid}" in str(first)
    logged = [r for r in caplog.records if r.name == "outbox.migrate" and r.levelno == logging.WARNING]
    assert any(f"pid {holder_pid}" in r.getMessage() for r in logged)
    with connect(attaching_url) as check:
        assert attached_triggers(check) == CAPTURE_TRIGGERS
        assert check.execute("select count(*) from task").fetchone()["count"] == 1 + WRITES


def test_uninstall_waits_beside_an_import_not_in_front_of_label_studio(installed_database_url: str) -> None:
    """issue 9 item 12: `uninstall` behaves the same: Label Studio's writes pass while it waits."""
    seed(installed_database_url)
    waits: list[migrations.LockWait] = []
    with connect(installed_database_url) as conn, an_import_in_progress(installed_database_url) as holder:
        work = Background(lambda: migrations.uninstall(conn, on_wait=waits.append))
        label_studio_writes_get_through(installed_database_url, conn.info.backend_pid, work)
        holder.commit()
        work.result()
    assert waits and waits[0].what == "uninstall"
    assert waits[0].holders[0].relation == "public.task"
    with connect(installed_database_url) as check:
        assert attached_triggers(check) == 0


def test_migrate_gives_up_after_its_deadline_with_a_clear_error(ls_database_url: str) -> None:
    """issue 9 item 12: past `deadline` seconds, `migrate` stops with one line naming the table and
    the transaction it waited for, having attached nothing; run again later, it completes."""
    seed(ls_database_url)
    with connect(ls_database_url) as conn, an_import_in_progress(ls_database_url) as holder:
        with pytest.raises(migrations.LockTimeout) as gave_up:
            migrations.migrate(conn, deadline=2.0)
        message = str(gave_up.value)
        assert "\n" not in message
        assert f"public.task held by pid {holder.info.backend_pid}" in message
        assert "gave up after" in message
        assert attached_triggers(conn) == 0
        holder.commit()
        assert [m.name for m in migrations.migrate(conn)] == ["capture.sql"]


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    waited=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    deadline=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    lock_timeout=st.floats(min_value=0.01, max_value=10, allow_nan=False),
)
def test_retries_never_outlast_the_deadline(
    attempt: int, waited: float, deadline: float, lock_timeout: float
) -> None:
    """issue 9 item 12: the pause before the next attempt is positive, at most RETRY_MAX, and the
    next attempt ends by the deadline; None (give up) only when no attempt fits any more."""
    delay = migrations.retry_delay(attempt, waited, deadline=deadline, lock_timeout=lock_timeout)
    if delay is None:
        assert waited + migrations.RETRY_MIN + lock_timeout > deadline
    else:
        assert migrations.RETRY_MIN <= delay <= migrations.RETRY_MAX
        assert waited + delay + lock_timeout <= deadline + 1e-9


@given(attempt=st.integers(min_value=0, max_value=60))
def test_backoff_grows_up_to_its_cap(attempt: int) -> None:
    """issue 9 item 12: far from the deadline, each pause is at least the one before."""
    far = 1e9
    now = migrations.retry_delay(attempt, 0.0, deadline=far, lock_timeout=0.5)
    after = migrations.retry_delay(attempt + 1, 0.0, deadline=far, lock_timeout=0.5)
    assert now is not None and after is not None and now <= after
    assert after == migrations.RETRY_MAX or after > now
