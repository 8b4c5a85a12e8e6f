"""``outbox actions list|add|remove`` (the action registry, ``outbox.action``) and ``outbox
webhooks backfill`` (existing rows sent to one webhook): the operations of outbox/admin/actions.py
and outbox/admin/backfill.py, with the API's validation and messages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

from outbox.cli_admin import CliError, Json, WebhookArg, _print_json, _run, _settings, parse_when

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from outbox.admin.backfill import Backfilled


def _validated(model: type[BaseModel], data: dict[str, Any], as_json: bool, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from outbox.admin.errors import from_validation_error

        error = from_validation_error(exc)
        if as_json:
            typer.echo(
                json.dumps({"status_code": 400, "detail": error.detail, "validation_errors": error.errors})
            )
        raise CliError(f"invalid {what}: {error}") from None


actions_app = typer.Typer(help="The actions webhooks can subscribe to (outbox.action).", no_args_is_help=True)


@actions_app.command("list")
def actions_list(as_json: Json = False) -> None:
    """Every action: Label Studio's built-in ones, then the custom ones."""
    from rich.table import Table

    from outbox.admin import actions
    from outbox.cli_render import console

    found = _run(actions.list_actions, as_json=as_json)
    if as_json:
        _print_json(list(found))
        return
    table = Table("NAME", "TITLE", "PAYLOAD KEY", "ORG-ONLY", "KIND", "DESCRIPTION")
    for a in found:
        kind = "built-in" if a.built_in else "custom"
        only = "yes" if a.organization_only else "-"
        table.add_row(a.name, a.title, a.payload_key, only, kind, a.description)
    console.print(table)
    console.print(f"{len(found)} action(s)")


@actions_app.command("add")
def actions_add(
    name: Annotated[str, typer.Argument(help="e.g. MODEL_TRAINED")],
    title: Annotated[str, typer.Option(help="What GET /api/webhooks/info/ shows as its name.")],
    payload_key: Annotated[str, typer.Option("--payload-key", help="The body's key for the payload.")],
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    organization_only: Annotated[
        bool, typer.Option("--organization-only", help="Only organization-level webhooks get it.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Register a custom action (as `insert into outbox.action` does)."""
    from outbox.admin import actions

    fields = {
        "name": name,
        "title": title,
        "payload_key": payload_key,
        "description": description,
        "organization_only": organization_only,
    }
    data = _validated(actions.ActionCreate, fields, as_json, "action")
    added = _run(lambda e: actions.add(e, data), as_json=as_json)
    _print_json(added) if as_json else typer.echo(f"action {added.name} registered")


@actions_app.command("remove")
def actions_remove(name: Annotated[str, typer.Argument(help="A custom action's name.")]) -> None:
    """Remove a custom action. Refused for built-in actions and for one a webhook lists."""
    from outbox.admin import actions

    _run(lambda e: actions.remove(e, name))
    typer.echo(f"action {name} removed")


def webhooks_backfill(
    webhook_id: WebhookArg,
    action: Annotated[str, typer.Option(help="What to send the rows as: TASKS_CREATED.")],
    project: Annotated[int | None, typer.Option(help="Only this project's rows.", min=1)] = None,
    since: Annotated[
        str | None, typer.Option(help="Only rows created since: ISO 8601, or a duration ago (24h).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Send existing rows to one webhook, chunked like an import, so a new subscriber catches up."""
    from outbox.admin import backfill

    settings = _settings()
    fields = {"action": action, "project": project, "since": parse_when(since, "--since")}
    request = _validated(backfill.BackfillRequest, fields, as_json, "backfill")

    async def run(engine: AsyncEngine) -> Backfilled:
        return await backfill.backfill(
            engine,
            webhook_id,
            request,
            batch_size=settings.webhook_batch_size,
            max_bytes=settings.max_body_bytes,
        )

    done = _run(run, as_json=as_json)
    if as_json:
        _print_json(done)
    else:
        typer.echo(
            f"webhook {webhook_id}: {done.rows} row(s) queued as {done.action}, "
            f"{done.events} event(s), {done.deliveries} delivery(ies)"
        )
