"""``outbox actions list|add|remove``: the action registry (``outbox.action``) from the shell, with
the API's validation and messages (outbox/admin/actions.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from outbox.cli import admin
from outbox.cli.admin import Json
from outbox.cli.common import load_settings

app = typer.Typer(help="The actions webhooks can subscribe to (outbox.action).", no_args_is_help=True)


@app.command("list")
def actions_list(as_json: Json = False) -> None:
    """Every action: Label Studio's built-in ones, then the custom ones."""
    from rich.table import Table

    from outbox.admin import actions
    from outbox.cli.render import console

    found = admin.run(load_settings(), actions.list_actions, as_json=as_json)
    if as_json:
        admin.print_json(list(found))
        return
    table = Table("NAME", "TITLE", "PAYLOAD KEY", "ORG-ONLY", "KIND", "DESCRIPTION")
    for a in found:
        kind = "built-in" if a.built_in else "custom"
        only = "yes" if a.organization_only else "-"
        table.add_row(a.name, a.title, a.payload_key, only, kind, a.description)
    console.print(table)
    console.print(f"{len(found)} action{'' if len(found) == 1 else 's'}")


@app.command("add")
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
    data = admin.validated(actions.ActionCreate, fields, as_json, "action")
    added = admin.run(load_settings(), lambda e: actions.add(e, data), as_json=as_json)
    admin.print_json(added) if as_json else typer.echo(f"action {added.name} registered")


@app.command("remove")
def actions_remove(name: Annotated[str, typer.Argument(help="A custom action's name.")]) -> None:
    """Remove a custom action. Refused for built-in actions and for one a webhook lists."""
    from outbox.admin import actions

    admin.run(load_settings(), lambda e: actions.remove(e, name))
    typer.echo(f"action {name} removed")
