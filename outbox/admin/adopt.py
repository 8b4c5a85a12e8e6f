"""Adopting Label Studio's own webhooks: copy each webhook of Label Studio's ``webhook`` and
``webhook_action`` tables (what its settings page manages) into ``outbox.webhook``, and optionally
set Label Studio's copy inactive in the same transaction, so receivers never get an event twice
nor miss one in between.

``plan`` decides, without I/O, from Label Studio's rows and what was adopted before
(``outbox.adopted_webhook``): a webhook is adopted once, ever (deleting the copy does not bring
it back); one outbox would refuse is skipped with the reason. ``adopt`` reads, plans and, unless
it is a dry run, carries the plan out in one transaction that holds a lock against a concurrent
adopt. What it reports never holds a header value or a URL's credentials or query string: Label
Studio's headers often carry tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox import tables as t
from outbox.admin import validation, webhooks
from outbox.admin.errors import Conflict, field_errors
from outbox.admin.models import Id, WebhookCreate
from relay.actions import BUILT_IN, ORGANIZATION_ONLY
from relay.urls import redact_url

# 'adp': the advisory lock that serialises adopts, so two at once cannot copy a webhook twice
ADOPT_LOCK = 0x616470

Outcome = Literal["adopt", "already adopted", "skip"]

LABEL_STUDIO_TABLES_MISSING = (
    "Label Studio's webhook tables (public.webhook, public.webhook_action) are not in this database"
)


@dataclass(frozen=True)
class LabelStudioWebhook:
    """One row of Label Studio's ``webhook`` with its ``webhook_action`` rows."""

    id: int
    organization_id: int
    project_id: int | None
    url: str
    send_payload: bool
    send_for_all_actions: bool
    headers: Any  # jsonb: an object, as Label Studio writes it, but nothing enforces that
    is_active: bool
    actions: tuple[str, ...]


class AdoptRequest(BaseModel):
    """``POST /api/webhooks/adopt``: which of Label Studio's webhooks, and what to do."""

    model_config = ConfigDict(extra="forbid")

    project: Id | None = Field(None, description="Only this project's webhooks (default: every one).")
    deactivate: StrictBool = Field(
        False, description="Set Label Studio's copies inactive, in the same transaction."
    )
    dry_run: StrictBool = Field(False, description="Only say what would be done.")


class Adoption(BaseModel):
    """What happens (or happened) to one of Label Studio's webhooks."""

    label_studio_webhook: int
    organization: int
    project: int | None
    url: str = Field(description="Without credentials or query string.")
    send_for_all_actions: bool
    actions: list[str]
    headers: list[str] = Field(description="Header names; values are never shown.")
    outcome: Outcome = Field(
        description="`adopt`: copied into outbox (or would be, on a dry run); `already adopted`: "
        "copied before; `skip`: outbox cannot take it, see `reason` (Label Studio's copy stays active)."
    )
    webhook: int | None = Field(None, description="The outbox webhook: the copy (null on a dry run).")
    deactivate: bool = Field(description="Label Studio's copy is (or would be) set inactive now.")
    reason: str | None = None


class AdoptReport(BaseModel):
    dry_run: bool
    deactivate: bool
    adoptions: list[Adoption]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.adoptions if item.outcome == outcome)

    @property
    def deactivated(self) -> int:
        return sum(1 for item in self.adoptions if item.deactivate)


def _candidate(hook: LabelStudioWebhook) -> dict[str, Any]:
    return {
        "url": hook.url,
        "project": hook.project_id,
        "organization": hook.organization_id,
        "send_payload": hook.send_payload,
        "send_for_all_actions": hook.send_for_all_actions,
        "actions": list(hook.actions),
        "headers": hook.headers,
        "is_active": hook.is_active,
        "description": f"adopted from Label Studio webhook {hook.id}",
    }


def _problem(hook: LabelStudioWebhook) -> str | None:
    """Why outbox cannot take ``hook`` as it is (the API's own validation), or None."""
    try:
        WebhookCreate.model_validate(_candidate(hook))
    except ValidationError as exc:
        errors = field_errors(exc.errors())
        return "; ".join(f"{field}: {_flatten(problems)}" for field, problems in errors.items())
    # Label Studio's webhooks list Label Studio's actions: the built-in ones of the registry
    unknown = validation.unknown_actions(list(hook.actions), BUILT_IN)
    if unknown:
        return "actions: " + "; ".join(m for messages in unknown.values() for m in messages)
    return validation.organization_only_problem(hook.project_id, list(hook.actions), ORGANIZATION_ONLY)


def _flatten(problems: Any) -> str:
    if isinstance(problems, Mapping):
        return " ".join(_flatten(value) for value in problems.values())
    return " ".join(str(p) for p in problems)


def plan(
    hooks: Sequence[LabelStudioWebhook], adopted: Mapping[int, int | None], *, deactivate: bool
) -> list[Adoption]:
    """What adopting ``hooks`` does, given ``adopted`` (Label Studio webhook id to its outbox copy,
    null once the copy was deleted). Only a webhook whose copy exists, or is made now, is
    deactivated in Label Studio: a skipped one keeps sending from there."""
    result = []
    for hook in sorted(hooks, key=lambda h: h.id):
        reason = None
        copy: int | None = None
        if hook.id in adopted:
            outcome: Outcome = "already adopted"
            copy = adopted[hook.id]
        elif (reason := _problem(hook)) is not None:
            outcome = "skip"
        else:
            outcome = "adopt"
        names = list(hook.headers) if isinstance(hook.headers, Mapping) else []
        result.append(
            Adoption(
                label_studio_webhook=hook.id,
                organization=hook.organization_id,
                project=hook.project_id,
                url=redact_url(hook.url),
                send_for_all_actions=hook.send_for_all_actions,
                actions=list(hook.actions),
                headers=[str(name)[:64] for name in names],
                outcome=outcome,
                webhook=copy,
                deactivate=deactivate and hook.is_active and outcome != "skip",
                reason=reason,
            )
        )
    return result


async def _read(conn: AsyncConnection, project: int | None) -> list[LabelStudioWebhook]:
    ls, action = t.label_studio_webhook, t.label_studio_webhook_action
    actions = (
        select(action.c.webhook_id, func.array_agg(action.c.action).label("actions"))
        .group_by(action.c.webhook_id)
        .subquery()
    )
    query = select(ls, actions.c.actions).select_from(ls.outerjoin(actions, actions.c.webhook_id == ls.c.id))
    if project is not None:
        query = query.where(ls.c.project_id == project)
    rows = (await conn.execute(query)).mappings().all()
    return [
        LabelStudioWebhook(
            id=row["id"],
            organization_id=row["organization_id"],
            project_id=row["project_id"],
            url=row["url"],
            send_payload=row["send_payload"],
            send_for_all_actions=row["send_for_all_actions"],
            headers=row["headers"],
            is_active=row["is_active"],
            actions=tuple(sorted(row["actions"] or ())),
        )
        for row in rows
    ]


async def _adopted(conn: AsyncConnection) -> dict[int, int | None]:
    a = t.adopted_webhook
    rows = (await conn.execute(select(a.c.label_studio_webhook_id, a.c.webhook_id))).all()
    return {row[0]: row[1] for row in rows}


async def _carry_out(
    conn: AsyncConnection, hooks: Mapping[int, LabelStudioWebhook], item: Adoption, limit: int
) -> Adoption:
    if item.outcome == "adopt":
        body = WebhookCreate.model_validate(_candidate(hooks[item.label_studio_webhook]))
        await webhooks.check_cap(conn, item.organization, limit)
        values = webhooks.column_values(body, set(webhooks.WRITABLE))
        copy = (
            await conn.execute(
                t.webhook.insert()
                .values(organization_id=item.organization, project_id=item.project, **values)
                .returning(t.webhook.c.id)
            )
        ).scalar_one()
        await conn.execute(
            t.adopted_webhook.insert().values(
                label_studio_webhook_id=item.label_studio_webhook, webhook_id=copy
            )
        )
        item = item.model_copy(update={"webhook": copy})
    if item.deactivate:
        ls = t.label_studio_webhook
        await conn.execute(
            ls.update()
            .where(ls.c.id == item.label_studio_webhook)
            .values(is_active=False, updated_at=func.now())
        )
    return item


async def adopt(
    engine: AsyncEngine,
    *,
    project: int | None = None,
    deactivate: bool = False,
    dry_run: bool = False,
    max_per_organization: int,
) -> AdoptReport:
    """Copy Label Studio's webhooks (of ``project``, or all) into outbox; with ``deactivate``, set
    Label Studio's copies inactive in the same transaction. A dry run writes nothing."""
    try:
        async with webhooks.transaction(engine) as conn:
            if not dry_run:
                await conn.execute(select(func.pg_advisory_xact_lock(ADOPT_LOCK)))
            hooks = await _read(conn, project)
            planned = plan(hooks, await _adopted(conn), deactivate=deactivate)
            if not dry_run:
                by_id = {hook.id: hook for hook in hooks}
                planned = [await _carry_out(conn, by_id, item, max_per_organization) for item in planned]
    except DBAPIError as exc:
        if _label_studio_tables_missing(exc):
            raise Conflict(LABEL_STUDIO_TABLES_MISSING) from None
        raise
    return AdoptReport(dry_run=dry_run, deactivate=deactivate, adoptions=planned)


def _label_studio_tables_missing(exc: DBAPIError) -> bool:
    # outbox's own table missing is "run `outbox migrate`", said by the callers' error handling
    message = str(exc.orig)
    return (
        isinstance(exc.orig, psycopg.errors.UndefinedTable)
        and "webhook" in message
        and "outbox." not in message
    )
