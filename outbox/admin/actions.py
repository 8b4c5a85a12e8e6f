"""The action registry (``outbox.action``, sql/0007_actions.sql) behind the admin API and the CLI:
list, register, remove; what ``GET /api/webhooks/info/`` shows; the names webhooks may list.

The table is the one source of action names. Its built-in rows are relay/actions.py's CATALOG
(``SEED`` here, kept equal to the table by a test); the database guards them, and refuses to
remove an action some webhook lists, with a message that names the webhooks.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox import tables as t
from outbox.admin.errors import Conflict, Invalid, NotFound
from outbox.admin.models import ActionInfo
from outbox.admin.webhooks import transaction
from relay.actions import CATALOG, OPT_IN

# as the registry's check (outbox.check_action): Label Studio's style of names
NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")
PAYLOAD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ActionCreate(BaseModel):
    """A custom action to register (``POST /api/actions/``)."""

    name: str = Field(max_length=100, description="e.g. MODEL_TRAINED", examples=["MODEL_TRAINED"])
    title: str = Field(max_length=200, description="What GET /api/webhooks/info/ shows as its name.")
    payload_key: str = Field(max_length=64, description="The body's key for the payload, e.g. model.")
    description: str = Field("", max_length=1000)
    organization_only: bool = Field(False, description="Sent only to organization-level webhooks.")


class RegisteredAction(BaseModel):
    """One row of ``outbox.action``."""

    name: str
    title: str
    description: str
    payload_key: str
    organization_only: bool
    built_in: bool
    # outbox's own (TASK_LABELED, PREDICTIONS_CREATED): sent only to webhooks that list them
    opt_in: bool = False


# Label Studio 1.23.2's actions, in its order: what 0005 seeds the table with.
SEED = tuple(
    RegisteredAction(
        name=action.value,
        title=info.name,
        description=info.description,
        payload_key=info.key,
        organization_only=info.organization_only,
        built_in=True,
        opt_in=action in OPT_IN,
    )
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
        # Label Studio's list, as its clients expect it (the opt-in actions: docs/events.md)
        if not action.opt_in and (wanted is None or action.organization_only == wanted)
    }


a = t.action


async def registry(conn: AsyncConnection) -> tuple[RegisteredAction, ...]:
    """Every registered action, in registration order (Label Studio's first)."""
    rows = (
        await conn.execute(
            select(
                a.c.name,
                a.c.title,
                a.c.description,
                a.c.payload_key,
                a.c.organization_only,
                a.c.built_in,
                a.c.opt_in,
            ).order_by(a.c.seq)
        )
    ).all()
    return tuple(RegisteredAction.model_validate(row, from_attributes=True) for row in rows)


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


async def add(engine: AsyncEngine, data: ActionCreate) -> RegisteredAction:
    """Register a custom action."""
    name = data.name
    found = problems(name, data.title, data.payload_key, data.description, data.organization_only)
    if found:
        raise Invalid(found)
    async with transaction(engine) as conn:
        exists = (await conn.execute(select(a.c.name).where(a.c.name == name))).first()
        if exists is not None:
            raise Conflict(f"Action {name} is registered already.")
        await conn.execute(a.insert().values(**data.model_dump()))
    return RegisteredAction(**data.model_dump(), built_in=False)


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
