"""Writing to Label Studio's tables the way Label Studio does, for tests."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from tests.support.examples import JSON_COLUMNS


def insert(conn: psycopg.Connection[Any], table: str, row: dict[str, Any]) -> None:
    """One INSERT of ``row`` into ``table`` (jsonb columns wrapped)."""
    values = [Jsonb(v) if k in JSON_COLUMNS and v is not None else v for k, v in row.items()]
    statement = pgsql.SQL("insert into {} ({}) values ({})").format(
        pgsql.Identifier(table),
        pgsql.SQL(", ").join(pgsql.Identifier(k) for k in row),
        pgsql.SQL(", ").join(pgsql.Placeholder() for _ in row),
    )
    conn.execute(statement, values)


def organization(conn: psycopg.Connection[Any], org_id: int = 1, user_id: int = 1) -> None:
    """An organization and a user, as every Label Studio database has."""
    conn.execute("insert into htx_user (id, email) values (%s, %s)", (user_id, f"u{user_id}@example.com"))
    conn.execute("insert into organization (id, title) values (%s, 'Label Studio')", (org_id,))


def project(conn: psycopg.Connection[Any], project_id: int = 1, org_id: int = 1, **columns: Any) -> None:
    insert(
        conn,
        "project",
        {"id": project_id, "title": f"p{project_id}", "organization_id": org_id, **columns},
    )


def webhook(conn: psycopg.Connection[Any], url: str, **columns: Any) -> int:
    """An outbox subscription (organization 1, organization-level unless project_id is given)."""
    row = {"organization_id": 1, "url": url, **columns}
    if "headers" in row:
        row["headers"] = Jsonb(row["headers"])
    statement = pgsql.SQL("insert into outbox.webhook ({}) values ({}) returning id").format(
        pgsql.SQL(", ").join(pgsql.Identifier(k) for k in row),
        pgsql.SQL(", ").join(pgsql.Placeholder() for _ in row),
    )
    found = conn.execute(statement, list(row.values())).fetchone()
    assert found is not None
    return int(found["id"])


def continue_ids(conn: psycopg.Connection[Any], start: int = 1000) -> None:
    """Let identity columns continue past rows inserted with explicit ids."""
    for table in ("project", "task", "task_completion", "prediction"):
        conn.execute("select setval(pg_get_serial_sequence(%s, 'id'), %s)", (table, start))
