"""The migrations runner: order, idempotence, checksums, locking, refusal, uninstall."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from outbox import db, migrations

# every migration this version ships, in the order migrate applies them (versioned, then capture)
SHIPPED = [m.name for m in migrations.load()]
assert SHIPPED[0] == "0001_schema.sql" and SHIPPED[-1] == "capture.sql"


def connect(url: str) -> psycopg.Connection[Any]:
    return db.connect_sync(url, autocommit=True)


# capture.sql's triggers: 9 on project, task and task_completion, 3 on label links, 1 on
# predictions, 1 for TASK_LABELED, and 2 on each of the 5 import storages
CAPTURE_TRIGGERS = 24


def triggers(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "select event_object_table || '.' || trigger_name || '.' || event_manipulation as t"
        " from information_schema.triggers where trigger_name like 'outbox%%'"
        " and event_object_schema = 'public' order by 1"
    ).fetchall()
    return [r["t"] for r in rows]


def test_migrate_applies_everything_once_then_nothing(ls_database_url):
    with connect(ls_database_url) as conn:
        applied = migrations.migrate(conn)
        assert [m.name for m in applied] == [m.name for m in migrations.load()]
        assert migrations.migrate(conn) == []
        assert {s.state for s in migrations.status(conn)} == {"applied"}
        assert len(triggers(conn)) == CAPTURE_TRIGGERS
        recorded = conn.execute("select name, checksum from outbox.schema_migrations").fetchall()
        assert {r["name"]: r["checksum"] for r in recorded} == {m.name: m.checksum for m in migrations.load()}


def test_an_edited_applied_migration_stops_the_runner(installed_database_url):
    with connect(installed_database_url) as conn:
        conn.execute("update outbox.schema_migrations set checksum = 'x' where name = '0001_schema.sql'")
        with pytest.raises(migrations.MigrationChanged, match="0001_schema.sql"):
            migrations.migrate(conn)
        assert [s.state for s in migrations.status(conn) if s.migration.name == "0001_schema.sql"] == [
            "changed"
        ]


def test_a_changed_capture_file_is_reapplied(installed_database_url):
    with connect(installed_database_url) as conn:
        conn.execute("drop trigger outbox_insert on public.task")
        conn.execute("update outbox.schema_migrations set checksum = 'old' where name = 'capture.sql'")
        assert [m.name for m in migrations.migrate(conn)] == ["capture.sql"]
        assert "task.outbox_insert.INSERT" in triggers(conn)


def test_a_database_without_label_studio_tables_is_refused_untouched(fresh_database, postgres_server):
    url = fresh_database("template0")
    with connect(url) as conn:
        conn.execute("create table project (id integer primary key)")
        with pytest.raises(migrations.MissingTables) as refused:
            migrations.migrate(conn)
        assert "task, task_completion, prediction, task_comment_authors" in str(refused.value)
        assert conn.execute("select to_regnamespace('outbox') as s").fetchone()["s"] is None


def test_two_processes_migrating_at_once_both_succeed(ls_database_url):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(ls_database_url) as conn:
                migrations.migrate(conn)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with connect(ls_database_url) as conn:
        assert {s.state for s in migrations.status(conn)} == {"applied"}


def schema_of(conn: psycopg.Connection[Any]) -> dict[str, list[Any]]:
    """What outbox installed, as the catalog describes it: columns, constraints, indexes, functions
    and every trigger it owns or attached to Label Studio's tables."""
    queries = {
        "columns": "select table_name, column_name, data_type, is_nullable, column_default"
        " from information_schema.columns where table_schema = 'outbox' order by 1, 2",
        "constraints": "select conrelid::regclass::text as t, conname, pg_get_constraintdef(oid) as d"
        " from pg_constraint where connamespace = 'outbox'::regnamespace order by 1, 2",
        "indexes": "select indexname, indexdef from pg_indexes where schemaname = 'outbox' order by 1",
        "functions": "select proname, pg_get_functiondef(oid) as d from pg_proc"
        " where pronamespace = 'outbox'::regnamespace order by 1",
        "triggers": "select tgrelid::regclass::text as t, tgname, pg_get_triggerdef(oid) as d"
        " from pg_trigger where not tgisinternal and (tgname like 'outbox%%'"
        " or tgrelid::regclass::text like 'outbox.%%') order by 1, 2",
    }
    return {name: conn.execute(query).fetchall() for name, query in queries.items()}


def test_printed_script_applied_with_psql_semantics_equals_migrate(
    ls_database_url, fresh_database, templates
):
    """The `--print` script of a fresh database (0001, 0002, capture.sql) installs the same schema
    and records the same migrations as `migrate`."""
    script = migrations.script(migrations.load())
    assert "set lock_timeout" in script  # Label Studio's writes never queue behind the script either
    other = fresh_database(templates.label_studio)
    with connect(other) as conn:
        # what psql does with the script, minus its meta-command
        conn.execute(script.replace("\\set ON_ERROR_STOP on", ""))
        printed = conn.execute("select name, checksum from outbox.schema_migrations order by name").fetchall()
        printed_schema = schema_of(conn)
        assert migrations.migrate(conn) == []
    with connect(ls_database_url) as conn:
        migrations.migrate(conn)
        applied = conn.execute("select name, checksum from outbox.schema_migrations order by name").fetchall()
        applied_schema = schema_of(conn)
    assert [r["name"] for r in printed] == SHIPPED
    assert printed == applied
    assert printed_schema == applied_schema
    # the capture triggers, 2 on outbox.webhook (0001, 0002), 2 on outbox.action (0007)
    assert len(applied_schema["triggers"]) == CAPTURE_TRIGGERS + 2 + 2


def test_uninstall_removes_triggers_and_functions_and_keeps_data(installed_database_url):
    with connect(installed_database_url) as conn:
        conn.execute("insert into organization (id, title) values (1, 'o')")
        conn.execute("insert into outbox.webhook (organization_id, url) values (1, 'http://127.0.0.1:9/')")
        migrations.uninstall(conn)
        assert triggers(conn) == []
        leftovers = conn.execute(
            "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'outbox' and p.proname like 'capture%%'"
        ).fetchall()
        assert leftovers == []
        conn.execute("insert into project (id, organization_id) values (1, 1)")
        conn.execute("insert into task (data, project_id) values ('{}', 1)")
        assert conn.execute("select count(*) from outbox.change").fetchone()["count"] == 0
        assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 1
        # attaching again is routine
        assert [m.name for m in migrations.migrate(conn)] == ["capture.sql"]
        assert len(triggers(conn)) == CAPTURE_TRIGGERS


def test_uninstall_with_drop_data_leaves_no_trace(installed_database_url):
    with connect(installed_database_url) as conn:
        migrations.uninstall(conn, drop_data=True)
        assert triggers(conn) == []
        assert conn.execute("select to_regnamespace('outbox') as s").fetchone()["s"] is None
        assert migrations.status(conn)[0].state == "pending"


def test_a_fresh_database_gets_0001_then_0002_then_capture(ls_database_url):
    """The schema of a first install: every versioned file in order, then the capture triggers;
    0002 adds the check of a webhook's organization and project (issue 9 item 9)."""
    with connect(ls_database_url) as conn:
        applied = [m.name for m in migrations.migrate(conn)]
        assert applied == SHIPPED
        scope = conn.execute(
            "select tgname from pg_trigger where tgrelid = 'outbox.webhook'::regclass and not tgisinternal"
            " order by 1"
        ).fetchall()
        assert [r["tgname"] for r in scope] == ["webhook_before_update", "webhook_scope"]


def test_an_installation_of_0001_upgrades_to_0002_and_keeps_its_webhooks(installed_database_url):
    """Upgrading: only 0002 is applied; a webhook stored before it, whose organization no longer
    exists, is kept and stays editable (the check applies to new scopes only)."""
    with connect(installed_database_url) as conn:
        conn.execute("drop trigger webhook_scope on outbox.webhook")
        conn.execute("drop function outbox.check_webhook_scope()")
        conn.execute("delete from outbox.schema_migrations where name = '0002_webhook_scope.sql'")
        conn.execute("insert into outbox.webhook (organization_id, url) values (77, 'http://127.0.0.1:9/')")
        assert [m.name for m in migrations.migrate(conn)] == ["0002_webhook_scope.sql"]
        conn.execute("update outbox.webhook set is_active = false")
        with pytest.raises(psycopg.errors.CheckViolation, match="webhook organization 77 does not exist"):
            conn.execute(
                "insert into outbox.webhook (organization_id, url) values (77, 'http://127.0.0.1:9/')"
            )
        assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 1


def test_payload_bodies_are_compressed_with_lz4_where_the_server_has_it(conn):
    """Migration 0013: lz4 compresses a routed import's bodies four times faster than pglz."""
    version = conn.execute("select current_setting('server_version_num')::integer as v").fetchone()["v"]
    available = False
    if version >= 140000:
        try:
            with conn.transaction():
                conn.execute("create temp table lz4_probe (b bytea compression lz4)")
                available = True
                raise psycopg.Rollback()
        except psycopg.errors.FeatureNotSupported:
            pass
    row = conn.execute(
        "select attcompression from pg_attribute"
        " where attrelid = 'outbox.payload'::regclass and attname = 'body'"
    ).fetchone()
    assert row["attcompression"] == ("l" if available else "")
