"""One connection factory: the relay's, the CLI's and the admin engine's sessions are opened with the
same settings (``outbox.db.session_parameters``), so a planner setting cannot diverge again."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from outbox import db
from outbox.admin.database import create_engine
from relay.relay import Relay
from tests.conftest import relay_settings

SETTINGS = (
    "select current_setting('jit') as jit, current_setting('TimeZone') as tz, "
    "current_setting('application_name') as app"
)
EXPECTED = {"jit": "off", "tz": "UTC"}

pytestmark = pytest.mark.anyio


async def test_async_connection(database_url):
    conn = await db.connect(database_url, application_name="outbox-test")
    try:
        row = await (await conn.execute(SETTINGS)).fetchone()
    finally:
        await conn.close()
    assert row == {**EXPECTED, "app": "outbox-test"}


def test_blocking_connection(database_url):
    with db.connect_sync(database_url, application_name="outbox-test") as conn:
        assert conn.execute(SETTINGS).fetchone() == {**EXPECTED, "app": "outbox-test"}


@pytest.mark.parametrize("pool_size", [None, 2], ids=["cli", "api"])
async def test_admin_engine(database_url, pool_size):
    engine = create_engine(database_url, application_name="outbox-test", pool_size=pool_size)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(SETTINGS))).mappings().one()
    finally:
        await engine.dispose()
    assert dict(row) == {**EXPECTED, "app": "outbox-test"}


async def test_a_relays_recorder_commits_without_flush_and_its_pipeline_with_it(database_url):
    """The recorder's connection alone is opened with synchronous_commit off (results only repeat
    work if a database crash loses them); the pipeline's claims must wait for the flush, and
    every other setting is the common one."""
    relay = Relay(database_url, relay_settings().relay_config())
    found = {}
    for purpose, database in (("recorder", relay._record_db), ("pipeline", relay._pipeline_db)):
        conn = await database.get()
        try:
            row = await (
                await conn.execute(SETTINGS + ", current_setting('synchronous_commit') as sync")
            ).fetchone()
        finally:
            await database.close()
        found[purpose] = row
    plain = await db.connect(database_url)
    try:
        server = await (await plain.execute("show synchronous_commit")).fetchone()
    finally:
        await plain.close()
    assert found["recorder"] == {**EXPECTED, "app": "outbox-relay-recorder", "sync": "off"}
    # the pipeline keeps the server's own setting (on by default; the embedded server may say off)
    assert found["pipeline"] == {
        **EXPECTED,
        "app": "outbox-relay-pipeline",
        "sync": server["synchronous_commit"],
    }
