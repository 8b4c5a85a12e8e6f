"""outbox's tables as SQLAlchemy Core sees them, declared once for the admin side (API and CLI).

The schema itself is owned by the migrations in ``sql/``: these declarations never create anything,
they only let the admin code build statements with bound parameters. A test compares them with a
migrated database, column by column, so the two cannot drift apart silently.

The relay does not use these: its statements are the named blocks of ``sql/queries.sql``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, UUID
from sqlalchemy.types import UserDefinedType

metadata = MetaData(schema="outbox")


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (``xid8``); SQLAlchemy has no type for it."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def _ts(name: str, nullable: bool = True) -> Column[Any]:
    return Column(name, TIMESTAMP(timezone=True), nullable=nullable)


webhook = Table(
    "webhook",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("organization_id", Integer, nullable=False),
    Column("project_id", Integer),
    Column("url", Text, nullable=False),
    Column("send_payload", Boolean, nullable=False),
    Column("send_for_all_actions", Boolean, nullable=False),
    Column("actions", ARRAY(Text), nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("secret", Text),
    Column("is_active", Boolean, nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Column("description", Text, nullable=False),
    Column("ordered", Boolean, nullable=False),
    Column("delete_payload", Text, nullable=False),
    Column("max_concurrency", Integer, nullable=False),
    Column("rate_limit", Double),
    Column("timeout", Double),
    Column("retry_schedule", ARRAY(Integer)),
    Column("previous_secret", Text),
    _ts("previous_secret_expires_at"),
    Column("disabled_reason", Text),
    _ts("disabled_at"),
    _ts("paused_at"),
    _ts("activated_at"),
)

webhook_health = Table(
    "webhook_health",
    metadata,
    Column("webhook_id", Integer, primary_key=True),
    Column("consecutive_failures", Integer, nullable=False),
    _ts("failing_since"),
    _ts("last_success_at"),
    _ts("last_failure_at"),
)

webhook_rate = Table(
    "webhook_rate",
    metadata,
    Column("webhook_id", Integer, primary_key=True),
    Column("tokens", Double, nullable=False),
    _ts("updated_at", nullable=False),
)

event = Table(
    "event",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("xid", Xid8),
    Column("action", Text, nullable=False),
    Column("organization_id", Integer),
    Column("project_id", Integer),
    Column("row_ids", ARRAY(Integer), nullable=False),
    Column("chunk_size", Integer, nullable=False),
    _ts("created_at", nullable=False),
)

payload = Table(
    "payload",
    metadata,
    Column("event_id", BigInteger, primary_key=True),
    Column("chunk", Integer, primary_key=True),
    _ts("ready_at", nullable=False),
    Column("body", LargeBinary),
    _ts("built_at"),
    Column("row_start", Integer, nullable=False),
    Column("row_end", Integer, nullable=False),
    Column("size_estimate", BigInteger),
    Column("error", Text),
)

delivery = Table(
    "delivery",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("message_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("chunk", Integer, nullable=False),
    Column("webhook_id", Integer, nullable=False),
    Column("project_id", Integer),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    _ts("next_attempt_at", nullable=False),
    _ts("lease_until"),
    Column("leased_by", UUID(as_uuid=True)),
    Column("last_status", Integer),
    Column("last_error", Text),
    _ts("created_at", nullable=False),
    _ts("finished_at"),
)

attempt = Table(
    "attempt",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("delivery_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("relay_id", UUID(as_uuid=True)),
    _ts("started_at", nullable=False),
    Column("duration_ms", Double, nullable=False),
    Column("status_code", Integer),
    Column("error_class", Text),
    Column("error", Text),
    Column("response_body", Text),
    Column("request_headers", JSONB, nullable=False),
)

relay = Table(
    "relay",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("hostname", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Text, nullable=False),
    _ts("started_at", nullable=False),
    _ts("heartbeat_at", nullable=False),
    Column("waiting", Boolean, nullable=False),
    Column("busy", JSONB, nullable=False),
    _ts("busy_at"),
)

change = Table(
    "change",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("xid", Xid8, nullable=False),
    Column("table_name", Text, nullable=False),
    Column("op", Text, nullable=False),
    Column("project_id", Integer),
    Column("organization_id", Integer),
    Column("row_ids", ARRAY(Integer), nullable=False),
    Column("task_ids", ARRAY(Integer)),
    Column("old_rows", JSONB),
    Column("detach_xid", Xid8),
    _ts("captured_at", nullable=False),
    Column("storage", Text),
)

detached_task = Table(
    "detached_task",
    metadata,
    Column("task_id", Integer, primary_key=True),
    Column("project_id", Integer, nullable=False),
    Column("organization_id", Integer),
    Column("detach_xid", Xid8, nullable=False),
    _ts("detached_at", nullable=False),
)

adopted_webhook = Table(
    "adopted_webhook",
    metadata,
    Column("label_studio_webhook_id", Integer, primary_key=True),
    Column("webhook_id", Integer),
    _ts("adopted_at", nullable=False),
)

# the action registry and the payloads of emitted events (sql/0007_actions.sql)
action = Table(
    "action",
    metadata,
    Column("name", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("payload_key", Text, nullable=False),
    Column("organization_only", Boolean, nullable=False),
    Column("built_in", Boolean, nullable=False),
    Column("opt_in", Boolean, nullable=False),
    Column("seq", Integer, nullable=False),
    _ts("created_at", nullable=False),
)

emitted = Table(
    "emitted",
    metadata,
    Column("event_id", BigInteger, primary_key=True),
    Column("xid", Xid8, nullable=False),
    Column("payload_key", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("webhook_id", Integer),
)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("name", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("checksum", Text, nullable=False),
    _ts("applied_at", nullable=False),
)

# Label Studio's own tables, only the columns the admin side reads (which organization a project
# belongs to, which organizations exist, Label Studio's own webhooks). Written only by
# `outbox webhooks adopt --deactivate`, which sets Label Studio's copy of a webhook inactive.
label_studio = MetaData(schema="public")

project = Table(
    "project",
    label_studio,
    Column("id", Integer, primary_key=True),
    Column("organization_id", Integer),
)

organization = Table(
    "organization",
    label_studio,
    Column("id", Integer, primary_key=True),
)

label_studio_webhook = Table(
    "webhook",
    label_studio,
    Column("id", Integer, primary_key=True),
    Column("url", Text, nullable=False),
    Column("send_payload", Boolean, nullable=False),
    Column("send_for_all_actions", Boolean, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("is_active", Boolean, nullable=False),
    _ts("updated_at", nullable=False),
    Column("organization_id", Integer, nullable=False),
    Column("project_id", Integer),
)

label_studio_webhook_action = Table(
    "webhook_action",
    label_studio,
    Column("id", Integer, primary_key=True),
    Column("action", Text, nullable=False),
    Column("webhook_id", Integer, nullable=False),
)
