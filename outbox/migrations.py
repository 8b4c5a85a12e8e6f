"""The migrations runner behind ``outbox migrate`` and ``outbox uninstall``.

``sql/NNNN_name.sql`` files are versioned: applied once, in order, each in its own transaction, and
never edited afterwards (a changed checksum stops the runner). ``sql/capture.sql`` is repeatable: it
holds everything attached to Label Studio's tables and is re-applied (after ``uninstall.sql``, in one
transaction) whenever it changes or was uninstalled. All of it runs under one advisory lock, so two
processes migrating at once is safe, and the same SQL can be printed for a DBA to apply with psql.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg.rows import DictRow

from outbox import sql

# 'outbox' in ASCII: the advisory lock every migrating process takes.
MIGRATION_LOCK = 0x6F7574626F78
REPEATABLE = ("capture.sql",)
_VERSIONED = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

Kind = Literal["versioned", "repeatable"]


class MigrationError(Exception):
    """Migrating cannot proceed; the message says why and what to do."""


class MigrationChanged(MigrationError):
    """An applied versioned migration differs from the file shipped now."""


class MissingTables(MigrationError):
    """The database lacks Label Studio tables that outbox attaches to."""


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


def migrate(conn: psycopg.Connection[DictRow]) -> list[Migration]:
    """Apply every pending migration; returns what was applied (empty when up to date).

    ``conn`` must be in autocommit mode: each migration gets its own transaction.
    """
    conn.execute(sql.query("lock_migrations"), {"key": MIGRATION_LOCK})
    try:
        check_tables(conn)
        pending = plan(load(), applied_checksums(conn))
        for migration in pending:
            with conn.transaction():
                for statement in _statements(migration):
                    conn.execute(statement.encode())
                conn.execute(
                    sql.query("record_migration"),
                    {
                        "name": migration.name,
                        "kind": migration.kind,
                        "checksum": migration.checksum,
                    },
                )
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


def uninstall(conn: psycopg.Connection[DictRow], *, drop_data: bool = False) -> None:
    """Remove every trigger and function outbox attached to Label Studio's tables.

    With ``drop_data`` the whole ``outbox`` schema goes too (subscriptions, events, deliveries).
    """
    conn.execute(sql.query("lock_migrations"), {"key": MIGRATION_LOCK})
    try:
        with conn.transaction():
            conn.execute(sql.read("uninstall.sql").encode())
            if drop_data:
                conn.execute(sql.query("drop_schema"))
            elif applied_checksums(conn):
                conn.execute(sql.query("forget_migrations"), {"names": list(REPEATABLE)})
    finally:
        conn.execute(sql.query("unlock_migrations"), {"key": MIGRATION_LOCK})
