"""The action registry (``outbox.action``, sql/0005_actions.sql) behind the admin API and the CLI:
list, register, remove; what ``GET /api/webhooks/info/`` shows; the names webhooks may list.

The table is the one source of action names. Its built-in rows are relay/actions.py's CATALOG
(``SEED`` here, kept equal to the table by a test); the database guards them, and refuses to
remove an action some webhook lists, with a message that names the webhooks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox import tables as t
from outbox.admin.errors import Conflict, NotFound, invalid
from outbox.admin.models import ActionInfo
from outbox.admin.webhooks import transaction
from relay.actions import CATALOG

# as the registry's check (outbox.check_action): Label Studio's style of names
NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")
PAYLOAD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class RegisteredAction:
    """One row of ``outbox.action``."""

    name: str
    title: str
    description: str
    payload_key: str
    organization_only: bool
    built_in: bool


# Label Studio 1.23.2's actions, in its order: what 0005 seeds the table with.
SEED = tuple(
    RegisteredAction(action.value, info.name, info.description, info.key, info.organization_only, True)
    for action, info in CATALOG.items()
)


def info(
    registry: tuple[RegisteredAction, ...], organization_only: str | None = None
) -> dict[str, ActionInfo]:
    """``GET /api/webhooks/info/``: every action, or only those whose organization-only flag is
    ``organization_only == "true"`` when the parameter is given (any other value means false, as
    in Label Studio)."""
    wanted = None if organization_only is None else organization_only == "true"
    return {
        action.name: ActionInfo.model_validate(
            {
                "name": action.title,
                "description": action.description,
                "key": action.payload_key,
                "organization-only": action.organization_only,
            }
        )
        for action in registry
        if wanted is None or action.organization_only == wanted
    }


a = t.action


async def registry(conn: AsyncConnection) -> tuple[RegisteredAction, ...]:
    """Every registered action, in registration order (Label Studio's first)."""
    rows = (
        await conn.execute(
            select(
                a.c.name, a.c.title, a.c.description, a.c.payload_key, a.c.organization_only, a.c.built_in
            ).order_by(a.c.seq)
        )
    ).all()
    return tuple(RegisteredAction(*row) for row in rows)


async def list_actions(engine: AsyncEngine) -> tuple[RegisteredAction, ...]:
    async with transaction(engine) as conn:
        return await registry(conn)


def problems(
    name: str, title: str, payload_key: str, description: str, organization_only: bool
) -> dict[str, list[str]]:
    """Why a custom action cannot be registered, by field (the registry's check says the same)."""
    found: dict[str, list[str]] = {}
    if not NAME.match(name) or name == "PING":
        found["name"] = [
            "Use upper-case letters, digits and _, starting with a letter (at most 100); PING is reserved."
        ]
    if not 1 <= len(title) <= 200:
        found["title"] = ["Ensure this field has 1 to 200 characters."]
    if len(description) > 1000:
        found["description"] = ["Ensure this field has no more than 1000 characters."]
    if not PAYLOAD_KEY.match(payload_key):
        found["payload_key"] = ["Use lower-case letters, digits and _, starting with a letter (at most 64)."]
    elif payload_key == "action" or (payload_key == "project" and not organization_only):
        found["payload_key"] = [f'"{payload_key}" is a key of every body already.']
    return found


async def add(
    engine: AsyncEngine,
    name: str,
    *,
    title: str,
    payload_key: str,
    description: str = "",
    organization_only: bool = False,
) -> RegisteredAction:
    """Register a custom action."""
    found = problems(name, title, payload_key, description, organization_only)
    if found:
        raise invalid(*next(iter((field, messages[0]) for field, messages in found.items())))
    async with transaction(engine) as conn:
        exists = (await conn.execute(select(a.c.name).where(a.c.name == name))).first()
        if exists is not None:
            raise Conflict(f"Action {name} is registered already.")
        await conn.execute(
            a.insert().values(
                name=name,
                title=title,
                payload_key=payload_key,
                description=description,
                organization_only=organization_only,
            )
        )
    return RegisteredAction(name, title, description, payload_key, organization_only, False)


async def remove(engine: AsyncEngine, name: str) -> None:
    """Remove a custom action no webhook lists (the database refuses the rest, saying why)."""
    async with transaction(engine) as conn:
        row = (await conn.execute(select(a.c.built_in).where(a.c.name == name))).first()
        if row is None:
            raise NotFound("Action", name)
        if row.built_in:
            raise Conflict(f"Action {name} is built in: it cannot be removed.")
        users = (
            (
                await conn.execute(
                    select(t.webhook.c.id).where(t.webhook.c.actions.any_() == name).order_by(t.webhook.c.id)
                )
            )
            .scalars()
            .all()
        )
        if users:
            listed = ", ".join(str(i) for i in users)
            raise Conflict(
                f"Action {name} is in use by webhook(s) {listed}: remove it from their actions first."
            )
        await conn.execute(a.delete().where(a.c.name == name))
