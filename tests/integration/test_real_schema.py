"""outbox on Label Studio 1.23.2's real schema (tests/data/label-studio-1.23.2-schema.sql).

Groundwork for measuring on LS's real tables (issue "relay rebuild", item 5): the dump applies to
an empty database, outbox migrates onto it, and a relay turns LS-shaped inserts into webhooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from outbox import db, migrations
from outbox.receiver import Receiver
from tests.support import ls_schema, lsdb

pytestmark = pytest.mark.anyio


async def test_outbox_migrates_onto_label_studios_real_schema_and_its_inserts_become_webhooks(
    fresh_database: Callable[[str], str], receiver: Receiver, start_relay: Callable[..., Any]
) -> None:
    """Relay rebuild item 5: the real DDL, with LS's indexes and its NOT NULL columns without
    defaults, takes outbox's migrations and capture triggers; a project and a task inserted with
    the columns LS sends arrive as PROJECT_CREATED and TASKS_CREATED."""
    url = fresh_database("template0")
    with db.connect_sync(url, autocommit=True) as conn:
        ls_schema.create_real_schema(conn)
        indexes = conn.execute(
            "select count(*) as n from pg_indexes where schemaname = 'public' and tablename = 'task'"
        ).fetchone()
        assert indexes is not None and indexes["n"] == 19  # LS's 18 and the primary key
        migrations.migrate(conn)

        ls_schema.organization(conn, 1)
        lsdb.webhook(conn, f"{receiver.url}/hook")
        # The sandbox's short inserts rely on defaults that LS's own tables do not have.
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("insert into project (id, title, organization_id) values (1, 'p', 1)")

        async with start_relay(url):
            ls_schema.project(conn, 1)
            with conn.transaction():  # one import: one TASKS_CREATED
                ls_schema.task(conn, 11)
                ls_schema.task(conn, 12)
            await receiver.wait_until(
                lambda rs: {"PROJECT_CREATED", "TASKS_CREATED"} <= {r.action for r in rs},
                what="PROJECT_CREATED and TASKS_CREATED",
            )

    by_action = {r.action: r.json for r in receiver.requests}
    assert by_action["PROJECT_CREATED"]["project"]["id"] == 1
    assert by_action["PROJECT_CREATED"]["project"]["title"] == "p1"
    tasks = by_action["TASKS_CREATED"]["tasks"]
    assert [t["id"] for t in tasks] == [11, 12]
    assert tasks[0]["data"] == {"text": "t11"}
