"""The migrations runner behind ``outbox migrate`` and ``outbox uninstall``.

``sql/NNNN_name.sql`` files are versioned: applied once, in order, each in its own transaction, and
never edited afterwards (a changed checksum stops the runner). ``sql/capture.sql`` is repeatable: it
holds everything attached to Label Studio's tables and is re-applied (after ``uninstall.sql``, in one
transaction) whenever it changes or was uninstalled. All of it runs under one advisory lock, so two
processes migrating at once is safe, and the same SQL can be printed for a DBA to apply with psql.

Label Studio keeps writing meanwhile. A migration that changes a table takes its locks first (``lock
table ...``); each transaction waits for them at most ``lock_timeout`` seconds, then rolls back,
reports who holds them and tries again after a pause, until ``deadline``. A lock request that waits
makes every later write to the table wait behind it, so waiting briefly and stepping aside keeps
Label Studio's writes from queueing behind outbox for longer than ``lock_timeout``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg.rows import DictRow

from outbox import sql

# 'outbox' in ASCII: the advisory lock every migrating process takes.
MIGRATION_LOCK = 0x6F7574626F78
REPEATABLE = ("capture.sql",)
_VERSIONED = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# The tables a migration locks, from its `lock table a, b in ... mode;` statements.
_LOCK_TABLE = re.compile(r"^\s*lock\s+table\s+([\w.]+(?:\s*,\s*[\w.]+)*)\s+in\b", re.I | re.M)

# How long one attempt waits for its locks, hence the longest a Label Studio statement waits behind
# outbox. Below PostgreSQL's deadlock_timeout (1 s by default) on purpose: should an attempt and a
# Label Studio transaction wait for each other, the attempt times out before the deadlock detector
# would pick a victim, so it is never Label Studio's transaction that fails.
LOCK_TIMEOUT = 0.5
# How long migrate/uninstall keep retrying before giving up (a long import may hold a table).
LOCK_DEADLINE = 600.0
# Pauses between attempts: doubling from RETRY_MIN up to RETRY_MAX seconds.
RETRY_MIN = 0.5
RETRY_MAX = 10.0

log = logging.getLogger("outbox.migrate")

Kind = Literal["versioned", "repeatable"]


class MigrationError(Exception):
    """Migrating cannot proceed; the message says why and what to do."""


class MigrationChanged(MigrationError):
    """An applied versioned migration differs from the file shipped now."""


class MissingTables(MigrationError):
    """The database lacks Label Studio tables that outbox attaches to."""


class LockTimeout(MigrationError):
    """Other transactions held the tables a migration needs for longer than its deadline."""


@dataclass(frozen=True)
class LockHolder:
    """A session holding a lock on a table that a migration waits for (from pg_locks)."""

    relation: str
    pid: int
    modes: str
    # null when this role may not see the session's activity (pg_read_all_stats)
    state: str | None
    application_name: str | None
    transaction_seconds: float | None

    def __str__(self) -> str:
        details = []
        if self.transaction_seconds is not None:
            details.append(f"transaction open for {self.transaction_seconds:.1f} s")
        if self.state:
            details.append(self.state)
        if self.application_name:
            details.append(f"application {self.application_name!r}")
        return f"{self.relation} held by pid {self.pid}" + (f" ({', '.join(details)})" if details else "")


def _describe(holders: Sequence[LockHolder], shown: int = 3) -> str:
    if not holders:
        return "a lock held by another transaction"
    text = "; ".join(str(holder) for holder in holders[:shown])
    if len(holders) > shown:
        text += f"; and {len(holders) - shown} more"
    return text


@dataclass(frozen=True)
class LockWait:
    """One attempt of ``what`` (a migration's name, or "uninstall") ran out of lock_timeout."""

    what: str
    attempt: int
    waited: float
    retry_in: float
    deadline: float
    holders: tuple[LockHolder, ...]

    def __str__(self) -> str:
        return (
            f"{self.what}: waiting for {_describe(self.holders)}; next attempt in {self.retry_in:.1f} s"
            f" (waited {self.waited:.1f} s, giving up after {self.deadline:.0f} s)"
        )


OnWait = Callable[[LockWait], None]


def retry_delay(attempt: int, waited: float, *, deadline: float, lock_timeout: float) -> float | None:
    """The pause before attempt ``attempt + 1``, ``waited`` seconds after the first began; None when
    no further attempt (a pause of at least RETRY_MIN, then up to lock_timeout) ends by ``deadline``."""
    room = deadline - waited - lock_timeout
    if room < RETRY_MIN:
        return None
    backoff: float = RETRY_MIN * 2.0 ** min(attempt, 32)
    return min(RETRY_MAX, backoff, room)


def locked_tables(statements: Sequence[str]) -> list[str]:
    """The tables named by the ``lock table`` statements of a migration, in order."""
    return [
        name.strip()
        for statement in statements
        for match in _LOCK_TABLE.finditer(statement)
        for name in match.group(1).split(",")
    ]


def lock_holders(conn: psycopg.Connection[DictRow], relations: Sequence[str]) -> tuple[LockHolder, ...]:
    """Who holds a lock on ``relations`` now, oldest transaction first."""
    if not relations:
        return ()
    rows = conn.execute(sql.query("lock_holders"), {"relations": list(relations)}).fetchall()
    return tuple(
        LockHolder(
            relation=row["relation"],
            pid=row["pid"],
            modes=row["modes"],
            state=row["state"],
            application_name=row["application_name"] or None,
            transaction_seconds=row["transaction_seconds"],
        )
        for row in rows
    )


def _with_lock_retries(
    conn: psycopg.Connection[DictRow],
    what: str,
    statements: Sequence[str],
    after: Callable[[], None],
    *,
    lock_timeout: float,
    deadline: float,
    on_wait: OnWait | None,
) -> None:
    """Run ``statements`` then ``after()`` in one transaction whose lock waits end after
    ``lock_timeout``; retried (from the start, nothing of a failed attempt kept) until ``deadline``."""
    timeout = f"{max(1, round(lock_timeout * 1000))}ms"
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            with conn.transaction():
                conn.execute(sql.query("set_lock_timeout"), {"timeout": timeout})
                for statement in statements:
                    conn.execute(statement.encode())
                after()
            return
        except psycopg.errors.LockNotAvailable:
            pass
        waited = time.monotonic() - started
        holders = lock_holders(conn, locked_tables(statements))
        delay = retry_delay(attempt, waited, deadline=deadline, lock_timeout=lock_timeout)
        if delay is None:
            raise LockTimeout(
                f"{what}: gave up after {waited:.1f} s waiting for {_describe(holders)}; nothing of "
                f"{what} was changed: run it again once that transaction has ended"
            ) from None
        wait = LockWait(what, attempt, waited, delay, deadline, holders)
        log.warning("%s", wait)
        if on_wait is not None:
            on_wait(wait)
        time.sleep(delay)
        attempt += 1


@dataclass(frozen=True)
class Migration:
    name: str
    kind: Kind
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Status:
    migration: Migration
    state: Literal["applied", "pending", "changed"]


def load() -> list[Migration]:
    """Every migration shipped with this version, versioned ones first, in order."""
    folder = sql.sql_dir()
    versioned = sorted(p.name for p in folder.iterdir() if _VERSIONED.match(p.name))
    numbers = [int(name[:4]) for name in versioned]
    if numbers != list(range(1, len(numbers) + 1)):
        raise MigrationError(f"migration files are not numbered 0001..N without gaps: {versioned}")
    return [Migration(name, "versioned", sql.read(name)) for name in versioned] + [
        Migration(name, "repeatable", sql.read(name)) for name in REPEATABLE
    ]


def plan(migrations: Sequence[Migration], applied: dict[str, str]) -> list[Migration]:
    """The migrations to apply, given the checksums already recorded by name.

    Raises MigrationChanged when an applied versioned file was edited: applying the rest on top of
    a schema that no longer matches its files could silently corrupt it.
    """
    changed = [
        m.name
        for m in migrations
        if m.kind == "versioned" and m.name in applied and applied[m.name] != m.checksum
    ]
    if changed:
        raise MigrationChanged(
            f"applied migration(s) {', '.join(changed)} differ from the files of this version; "
            "restore the original files, or add a new numbered migration instead of editing one"
        )
    return [m for m in migrations if applied.get(m.name) != m.checksum]


def applied_checksums(conn: psycopg.Connection[DictRow]) -> dict[str, str]:
    """Checksums of the recorded migrations; empty when outbox was never installed."""
    exists = conn.execute(sql.query("migrations_table_exists")).fetchone()
    if not exists or not exists["exists"]:
        return {}
    rows = conn.execute(sql.query("applied_migrations")).fetchall()
    return {row["name"]: row["checksum"] for row in rows}


def check_tables(conn: psycopg.Connection[DictRow]) -> None:
    """Refuse a database without Label Studio's tables, before anything is changed."""
    try:
        with conn.transaction():
            conn.execute(sql.read("preflight.sql"))
    except psycopg.errors.RaiseException as exc:
        raise MissingTables(exc.diag.message_primary or str(exc)) from None


def status(conn: psycopg.Connection[DictRow]) -> list[Status]:
    """Each shipped migration with whether it is applied, pending or changed."""
    applied = applied_checksums(conn)
    result = []
    for migration in load():
        recorded = applied.get(migration.name)
        if recorded is None:
            state: Literal["applied", "pending", "changed"] = "pending"
        elif recorded == migration.checksum:
            state = "applied"
        else:
            state = "changed" if migration.kind == "versioned" else "pending"
        result.append(Status(migration, state))
    return result


def _statements(migration: Migration) -> list[str]:
    if migration.kind == "repeatable":
        return [sql.read("uninstall.sql"), migration.text]
    return [migration.text]


def migrate(
    conn: psycopg.Connection[DictRow],
    *,
    lock_timeout: float = LOCK_TIMEOUT,
    deadline: float = LOCK_DEADLINE,
    on_wait: OnWait | None = None,
) -> list[Migration]:
    """Apply every pending migration; returns what was applied (empty when up to date).

    ``conn`` must be in autocommit mode: each migration gets its own transaction. Each waits for
    its locks at most ``lock_timeout`` seconds per attempt and is retried until ``deadline``
    seconds (then LockTimeout; the migrations before it stay applied). Every wait is logged on
    ``outbox.migrate`` and passed to ``on_wait``.
    """
    conn.execute(sql.query("lock_migrations"), {"key": MIGRATION_LOCK})
    try:
        check_tables(conn)
        pending = plan(load(), applied_checksums(conn))
        for migration in pending:

            def record(migration: Migration = migration) -> None:
                conn.execute(
                    sql.query("record_migration"),
                    {"name": migration.name, "kind": migration.kind, "checksum": migration.checksum},
                )

            _with_lock_retries(
                conn,
                migration.name,
                _statements(migration),
                record,
                lock_timeout=lock_timeout,
                deadline=deadline,
                on_wait=on_wait,
            )
            log.info("applied %s", migration.name)
        return pending
    finally:
        conn.execute(sql.query("unlock_migrations"), {"key": MIGRATION_LOCK})


def script(pending: Sequence[Migration]) -> str:
    """A psql script that applies ``pending`` exactly as ``migrate`` would."""
    parts = [
        "-- outbox migrations, generated by `outbox migrate --print`; apply with psql:",
        '--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f outbox.sql',
        "\\set ON_ERROR_STOP on",
        f"select pg_advisory_lock({MIGRATION_LOCK});",
        "-- Label Studio's writes never wait behind this script for longer than this. Should it stop",
        "-- with 'canceling statement due to lock timeout' (a long Label Studio transaction held a",
        "-- table), what ran before is applied and recorded: print the script again later and apply it.",
        f"set lock_timeout = '{max(1, round(LOCK_TIMEOUT * 1000))}ms';",
        sql.read("preflight.sql").strip(),
    ]
    for migration in pending:
        parts.append(f"\n-- {migration.name} ({migration.kind})\nbegin;")
        parts.extend(statement.strip() for statement in _statements(migration))
        parts.append(
            "insert into outbox.schema_migrations (name, kind, checksum)\n"
            f"values ('{migration.name}', '{migration.kind}', '{migration.checksum}')\n"
            "on conflict (name) do update set checksum = excluded.checksum, applied_at = now();\n"
            "commit;"
        )
    parts.append(f"select pg_advisory_unlock({MIGRATION_LOCK});")
    return "\n".join(parts) + "\n"


def uninstall(
    conn: psycopg.Connection[DictRow],
    *,
    drop_data: bool = False,
    lock_timeout: float = LOCK_TIMEOUT,
    deadline: float = LOCK_DEADLINE,
    on_wait: OnWait | None = None,
) -> None:
    """Remove every trigger and function outbox attached to Label Studio's tables.

    With ``drop_data`` the whole ``outbox`` schema goes too (subscriptions, events, deliveries).
    Waits for locks as ``migrate`` does (LockTimeout after ``deadline``; nothing removed then).
    """

    def forget() -> None:
        if drop_data:
            conn.execute(sql.query("drop_schema"))
        elif applied_checksums(conn):
            conn.execute(sql.query("forget_migrations"), {"names": list(REPEATABLE)})

    conn.execute(sql.query("lock_migrations"), {"key": MIGRATION_LOCK})
    try:
        _with_lock_retries(
            conn,
            "uninstall",
            [sql.read("uninstall.sql")],
            forget,
            lock_timeout=lock_timeout,
            deadline=deadline,
            on_wait=on_wait,
        )
        log.info("uninstalled%s", " and dropped schema outbox" if drop_data else "")
    finally:
        conn.execute(sql.query("unlock_migrations"), {"key": MIGRATION_LOCK})
