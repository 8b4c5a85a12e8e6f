"""outbox/tables.py declares outbox's tables for SQLAlchemy; the migrations in sql/ own them. The two
must agree column by column (name, type, nullability, primary key), or admin statements break."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql

from outbox import tables

# information_schema's udt_name for each type SQLAlchemy renders
_UDT = {
    "INTEGER": "int4", "BIGINT": "int8", "BOOLEAN": "bool", "TEXT": "text", "JSONB": "jsonb",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", "DOUBLE PRECISION": "float8", "UUID": "uuid",
    "BYTEA": "bytea", "INTEGER[]": "_int4", "TEXT[]": "_text", "xid8": "xid8",
}  # fmt: skip


def _declared(table):
    dialect = postgresql.dialect()
    return {
        column.name: (_UDT[column.type.compile(dialect=dialect)], column.nullable and not column.primary_key)
        for column in table.columns
    }


def test_every_outbox_table_is_declared_as_migrated(conn):
    migrated: dict[str, dict[str, tuple[str, bool]]] = {}
    for row in conn.execute(
        "select table_name, column_name, udt_name, is_nullable = 'YES' as nullable"
        " from information_schema.columns where table_schema = 'outbox'"
    ).fetchall():
        migrated.setdefault(row["table_name"], {})[row["column_name"]] = (row["udt_name"], row["nullable"])
    declared = {name.removeprefix("outbox."): _declared(t) for name, t in tables.metadata.tables.items()}
    assert declared == migrated


def test_label_studio_columns_read_exist(conn):
    for table in tables.label_studio.tables.values():
        found = {
            row["column_name"]
            for row in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'public' and table_name = %s",
                (table.name,),
            ).fetchall()
        }
        assert {c.name for c in table.columns} <= found, table.name
