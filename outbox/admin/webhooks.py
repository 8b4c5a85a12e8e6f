"""Webhook operations behind both the admin API and the CLI: list, show, create, update, delete,
pause and resume, rotate the secret, send a test event.

Each operation is one transaction. Input arrives validated by ``outbox.admin.models``; the
database's CHECK constraints stay the last word, and their refusals become field errors too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Select, case, func, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox import tables as t
from outbox.admin import database, states, validation
from outbox.admin.errors import Conflict, Invalid, NotFound, invalid
from outbox.admin.models import (
    SecretRotated,
    Webhook,
    WebhookCreate,
    WebhookHealth,
    WebhookUpdate,
)
from relay.actions import PING
from relay.signing import generate_secret

# 'whk': the advisory lock (with the organization id) that serialises the per-organization cap.
CAP_LOCK = 0x77686B

ProjectFilter = int | Literal["null"] | None

# Fields PATCH/PUT may change. `project` and `organization` are fixed once created (as in LS).
WRITABLE = (
    "url",
    "send_payload",
    "send_for_all_actions",
    "headers",
    "is_active",
    "actions",
    "description",
    "secret",
    "ordered",
    "delete_payload",
    "max_concurrency",
    "rate_limit",
    "timeout",
    "retry_schedule",
)

w = t.webhook
h = t.webhook_health


@contextmanager
def _admin_errors() -> Iterator[None]:
    """Data-caused database errors surface as admin errors (400); the rest as they are."""
    try:
        yield
    except DBAPIError as exc:
        translated = database.translate(exc)
        if translated is None:
            raise
        raise translated from None


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction whose data-caused database errors surface as admin errors (400)."""
    with _admin_errors():
        async with engine.begin() as conn:
            yield conn


@asynccontextmanager
async def consistent_read(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction whose statements share one snapshot (REPEATABLE READ). A read
    made of several statements needs it: under READ COMMITTED a relay's commit between them tore
    a delivery in two (still "pending", yet with the attempt that delivered it)."""
    with _admin_errors():
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            async with conn.begin():
                yield conn


def _query() -> Select[Any]:
    return select(
        w,
        h.c.consecutive_failures,
        h.c.failing_since,
        h.c.last_success_at,
        h.c.last_failure_at,
        states.webhook_status().label("status"),
    ).select_from(w.outerjoin(h, h.c.webhook_id == w.c.id))


def to_model(row: Mapping[str, Any]) -> Webhook:
    health = WebhookHealth(
        consecutive_failures=row["consecutive_failures"] or 0,
        failing_since=row["failing_since"],
        last_success_at=row["last_success_at"],
        last_failure_at=row["last_failure_at"],
    )
    return Webhook(
        id=row["id"],
        organization=row["organization_id"],
        project=row["project_id"],
        url=validation.masked_url(row["url"]),
        send_payload=row["send_payload"],
        send_for_all_actions=row["send_for_all_actions"],
        headers=row["headers"],
        is_active=row["is_active"],
        actions=list(row["actions"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        description=row["description"],
        secret=validation.mask_secret(row["secret"]),
        previous_secret_expires_at=row["previous_secret_expires_at"],
        ordered=row["ordered"],
        delete_payload=row["delete_payload"],
        max_concurrency=row["max_concurrency"],
        rate_limit=row["rate_limit"],
        timeout=row["timeout"],
        retry_schedule=None if row["retry_schedule"] is None else list(row["retry_schedule"]),
        status=row["status"],
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        consecutive_failures=health.consecutive_failures,
        health=health,
    )


async def _fetch(conn: AsyncConnection, webhook_id: int) -> Webhook:
    row = (await conn.execute(_query().where(w.c.id == webhook_id))).mappings().first()
    if row is None:
        raise NotFound("Webhook", webhook_id)
    return to_model(row)


async def list_webhooks(
    engine: AsyncEngine, *, project: ProjectFilter = None, organization: int | None = None
) -> list[Webhook]:
    """Every webhook, in id order; ``project="null"`` keeps the organization-level ones."""
    query = _query().order_by(w.c.id)
    if project == "null":
        query = query.where(w.c.project_id.is_(None))
    elif project is not None:
        query = query.where(w.c.project_id == project)
    if organization is not None:
        query = query.where(w.c.organization_id == organization)
    async with transaction(engine) as conn:
        if isinstance(project, int) and not await _project_known(conn, project):
            # Label Studio's answer to a filter on a project that does not exist
            raise invalid(
                "project", "Select a valid choice. That choice is not one of the available choices."
            )
        rows = (await conn.execute(query)).mappings().all()
    return [to_model(row) for row in rows]


async def _project_known(conn: AsyncConnection, project_id: int) -> bool:
    # webhooks of a project deleted since are still listed
    found = await conn.execute(
        select(literal(1)).where(
            select(t.project.c.id).where(t.project.c.id == project_id).exists()
            | select(w.c.id).where(w.c.project_id == project_id).exists()
        )
    )
    return found.first() is not None


async def get(engine: AsyncEngine, webhook_id: int) -> Webhook:
    async with transaction(engine) as conn:
        return await _fetch(conn, webhook_id)


async def resolve_organization(conn: AsyncConnection, project: int | None, organization: int | None) -> int:
    """The organization a new webhook belongs to: its project's; else the one given; else the
    database's only organization (Label Studio's open source edition has one)."""
    if project is not None:
        row = (
            await conn.execute(select(t.project.c.organization_id).where(t.project.c.id == project))
        ).first()
        if row is None:
            raise invalid("project", f'Invalid pk "{project}" - object does not exist.')
        owner = row[0]
        if owner is not None:
            if organization is not None and organization != owner:
                raise invalid("organization", f"Project {project} belongs to organization {owner}.")
            return int(owner)
    if organization is not None:
        exists = (
            await conn.execute(select(t.organization.c.id).where(t.organization.c.id == organization))
        ).first()
        if exists is None:
            raise invalid("organization", f'Invalid pk "{organization}" - object does not exist.')
        return organization
    ids = (await conn.execute(select(t.organization.c.id).order_by(t.organization.c.id).limit(2))).all()
    if len(ids) == 1:
        return int(ids[0][0])
    if not ids:
        raise invalid("organization", "No organization exists in this Label Studio database yet.")
    raise invalid(
        "organization",
        "This field is required for an organization-level webhook when there are several organizations.",
    )


async def check_cap(conn: AsyncConnection, organization: int, limit: int) -> None:
    # Serialised per organization, so that concurrent creates cannot pass the cap together.
    await conn.execute(select(func.pg_advisory_xact_lock(CAP_LOCK, organization)))
    count = (
        await conn.execute(select(func.count()).select_from(w).where(w.c.organization_id == organization))
    ).scalar_one()
    if count >= limit:
        raise invalid(
            "non_field_errors",
            f"Organization {organization} already has {count} webhooks, the most allowed "
            f"(OUTBOX_MAX_WEBHOOKS_PER_ORGANIZATION={limit}). Remove unused webhooks first.",
        )


def column_values(data: WebhookCreate | WebhookUpdate, fields: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in fields:
        value = getattr(data, field)
        if field == "actions":
            value = list(value)
        values[field] = value
    return values


async def _check_actions(conn: AsyncConnection, project_id: int | None, listed: list[str]) -> None:
    """The listed actions against the registry (outbox.action): registered, and organization-only
    ones on organization-level webhooks only. The table's own check is the last word."""
    if not listed:
        return
    from outbox.admin import actions  # which imports this module's transaction()

    registry = await actions.registry(conn)
    unknown = validation.unknown_actions(listed, {a.name for a in registry})
    if unknown:
        raise Invalid({"actions": unknown})
    problem = validation.organization_only_problem(
        project_id, listed, {a.name for a in registry if a.organization_only}
    )
    if problem:
        raise invalid("non_field_errors", problem)


async def create(engine: AsyncEngine, data: WebhookCreate, *, max_per_organization: int) -> Webhook:
    """A new webhook; organization-level when ``project`` is null (Label Studio's open source API
    refuses those; outbox allows them)."""
    if data.secret is not None and validation.is_masked(data.secret):
        raise invalid("secret", "Send the secret itself, not its masked form.")
    async with transaction(engine) as conn:
        await _check_actions(conn, data.project, list(data.actions))
        organization = await resolve_organization(conn, data.project, data.organization)
        await check_cap(conn, organization, max_per_organization)
        values = column_values(data, set(WRITABLE))
        webhook_id = (
            await conn.execute(
                w.insert()
                .values(organization_id=organization, project_id=data.project, **values)
                .returning(w.c.id)
            )
        ).scalar_one()
        return await _fetch(conn, webhook_id)


async def update(
    engine: AsyncEngine,
    webhook_id: int,
    data: WebhookCreate | WebhookUpdate,
    *,
    secret_grace: timedelta,
) -> Webhook:
    """Change the fields the client sent (``data.model_fields_set``); the others keep their
    values, ``actions`` included (Label Studio clears them on a PATCH without ``actions``)."""
    fields = set(data.model_fields_set) & set(WRITABLE)
    async with transaction(engine) as conn:
        current = (
            await conn.execute(
                select(w.c.project_id, w.c.secret, w.c.url).where(w.c.id == webhook_id).with_for_update()
            )
        ).first()
        if current is None:
            raise NotFound("Webhook", webhook_id)
        if "actions" in fields:
            await _check_actions(conn, current.project_id, list(data.actions))
        values = column_values(data, fields)
        if "url" in values:
            values["url"] = validation.unmasked_url(values["url"], current.url)
        if "secret" in fields:
            if data.secret is not None and validation.is_masked(data.secret):
                # a client sending back what it read: unchanged if it is the current secret's mask
                if data.secret != validation.mask_secret(current.secret):
                    raise invalid("secret", "Send the new secret itself, not a masked form.")
                del values["secret"]
            elif data.secret != current.secret:
                values.update(_rotation(secret_grace))
        if "is_active" in fields:
            values.update(_activity(data.is_active))
        if values:
            await conn.execute(w.update().where(w.c.id == webhook_id).values(**values))
        return await _fetch(conn, webhook_id)


def _rotation(grace: timedelta) -> dict[str, Any]:
    # In an UPDATE, column references are the old values: the replaced secret keeps signing for
    # the grace period (OUTBOX_SECRET_GRACE; the table's trigger alone would use 24 hours).
    return {
        "previous_secret": case((w.c.secret.is_not(None), w.c.secret), else_=w.c.previous_secret),
        "previous_secret_expires_at": case(
            (w.c.secret.is_not(None), func.now() + grace), else_=w.c.previous_secret_expires_at
        ),
    }


def _activity(active: bool) -> dict[str, Any]:
    if active:
        return {}  # the table's trigger clears disabled_reason, disabled_at and health
    # paused by a user: no reason, which tells it apart from a webhook the relay disabled
    return {
        "disabled_at": case((w.c.is_active, func.now()), else_=w.c.disabled_at),
        "disabled_reason": case((w.c.is_active, None), else_=w.c.disabled_reason),
    }


async def set_active(engine: AsyncEngine, webhook_id: int, active: bool) -> Webhook:
    """Pause (``active=False``) or resume a webhook. Resuming clears why it was disabled and its
    failure count; deliveries that piled up while paused are sent."""
    return await update(
        engine, webhook_id, WebhookUpdate.model_validate({"is_active": active}), secret_grace=timedelta(0)
    )


async def delete(engine: AsyncEngine, webhook_id: int) -> None:
    """Delete a webhook with its deliveries and their attempts."""
    async with transaction(engine) as conn:
        deleted = (await conn.execute(w.delete().where(w.c.id == webhook_id).returning(w.c.id))).first()
    if deleted is None:
        raise NotFound("Webhook", webhook_id)


async def rotate_secret(
    engine: AsyncEngine, webhook_id: int, secret: str | None, *, grace: timedelta
) -> SecretRotated:
    """Replace the signing secret; the old one keeps signing too for ``grace``. With no
    ``secret``, one is generated and returned (this once)."""
    generated = secret is None
    new_secret = generate_secret() if secret is None else secret
    async with transaction(engine) as conn:
        updated = (
            await conn.execute(
                w.update()
                .where(w.c.id == webhook_id)
                .values(secret=new_secret, **_rotation(grace))
                .returning(w.c.id)
            )
        ).first()
        if updated is None:
            raise NotFound("Webhook", webhook_id)
        webhook = await _fetch(conn, webhook_id)
    return SecretRotated(
        webhook=webhook,
        secret=new_secret if generated else None,
        previous_secret_expires_at=webhook.previous_secret_expires_at,
    )


async def notify_relays(conn: AsyncConnection) -> None:
    """Wake idle relays with the capture triggers' own function (outbox.wake(): NOTIFY only while
    a relay waits, since NOTIFY costs a cluster-wide lock at commit)."""
    await conn.execute(select(func.outbox.wake()))


async def send_test(engine: AsyncEngine, webhook_id: int) -> int:
    """Queue a ``PING`` event for this webhook alone through the normal pipeline (event, payload,
    delivery); returns the delivery's id."""
    async with transaction(engine) as conn:
        webhook = (
            await conn.execute(
                select(w.c.organization_id, w.c.project_id, w.c.is_active).where(w.c.id == webhook_id)
            )
        ).first()
        if webhook is None:
            raise NotFound("Webhook", webhook_id)
        if not webhook.is_active:
            raise Conflict(f"Webhook {webhook_id} is paused or disabled: resume it to test it.")
        event_id = (
            await conn.execute(
                t.event.insert()
                .values(
                    action=PING,
                    organization_id=webhook.organization_id,
                    project_id=webhook.project_id,
                    row_ids=[webhook_id],
                    chunk_size=1,
                )
                .returning(t.event.c.id)
            )
        ).scalar_one()
        await conn.execute(
            t.payload.insert().values(event_id=event_id, chunk=0, ready_at=func.now(), row_start=0, row_end=1)
        )
        delivery_id = (
            await conn.execute(
                t.delivery.insert()
                .values(
                    event_id=event_id,
                    chunk=0,
                    webhook_id=webhook_id,
                    project_id=webhook.project_id,
                    next_attempt_at=func.now(),
                )
                .returning(t.delivery.c.id)
            )
        ).scalar_one()
        await notify_relays(conn)
    return int(delivery_id)
