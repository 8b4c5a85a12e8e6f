"""``outbox deliveries …`` and ``outbox events …``: the delivery log, the event log, replay."""

from __future__ import annotations

from typing import Annotated, Any, cast, get_args

import typer

from outbox.cli import admin
from outbox.cli.admin import DeliveryArg, Json, WebhookArg
from outbox.cli.common import CliError, load_settings, plural

deliveries_app = typer.Typer(help="The delivery log and replay.", no_args_is_help=True)
events_app = typer.Typer(help="The event log.", no_args_is_help=True)

Since = Annotated[str | None, typer.Option(help="Created at or after: ISO 8601, or a duration ago (2h).")]
Until = Annotated[str | None, typer.Option(help="Created before: ISO 8601, or a duration ago.")]
Limit = Annotated[int, typer.Option(help="Page size.", min=1, max=500)]  # admin MAX_PAGE
Cursor = Annotated[str | None, typer.Option(help="`next` of the previous page.")]


@deliveries_app.command("list")
def deliveries_list(
    webhook_id: Annotated[
        int | None, typer.Argument(help="Webhook id (leave out for every webhook's).", min=1)
    ] = None,
    state: Annotated[str | None, typer.Option(help="pending, failing, delivered or dead.")] = None,
    project: Annotated[int | None, typer.Option(help="Only this project's.", min=1)] = None,
    action: Annotated[str | None, typer.Option(help="Only this action's, e.g. TASKS_CREATED.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_json: Json = False,
) -> None:
    """Deliveries, newest first: one webhook's, or (without WEBHOOK_ID) every webhook's, e.g.
    `outbox deliveries list --state failing` for what needs attention."""
    from outbox.admin import deliveries
    from outbox.cli.render import render_deliveries

    settings = load_settings()
    if state not in (None, *get_args(deliveries.StateFilter)):
        raise CliError("--state: pending, failing, delivered or dead")
    wanted = cast("deliveries.StateFilter | None", state)
    start, end = admin.parse_when(since, "--since"), admin.parse_when(until, "--until")
    page = admin.run(
        settings,
        lambda e: deliveries.list_deliveries(
            e,
            webhook_id,
            state=wanted,
            project=project,
            action=action,
            since=start,
            until=end,
            cursor=cursor,
            limit=limit,
        ),
        as_json=as_json,
    )
    admin.print_json(page) if as_json else render_deliveries(page)


@deliveries_app.command("show")
def deliveries_show(delivery_id: DeliveryArg, as_json: Json = False) -> None:
    """One delivery with every attempt."""
    from outbox.admin import deliveries
    from outbox.cli.render import render_delivery

    settings = load_settings()
    found = admin.run(settings, lambda e: deliveries.get_delivery(e, delivery_id), as_json=as_json)
    admin.print_json(found) if as_json else render_delivery(found)


@deliveries_app.command("retry")
def deliveries_retry(delivery_id: DeliveryArg, as_json: Json = False) -> None:
    """Make one delivery due now (same webhook-id); a dead one gets one more attempt."""
    from outbox.admin import deliveries
    from outbox.cli.render import render_delivery

    settings = load_settings()
    found = admin.run(settings, lambda e: deliveries.retry(e, delivery_id), as_json=as_json)
    admin.print_json(found) if as_json else render_delivery(found)


@deliveries_app.command("recover")
def deliveries_recover(
    webhook_id: WebhookArg,
    since: Annotated[str, typer.Option(help="From: ISO 8601, or a duration ago (24h).")],
    until: Until = None,
    as_json: Json = False,
) -> None:
    """Redeliver a webhook's failed and dead deliveries created in [since, until)."""
    from outbox.admin import deliveries

    settings = load_settings()
    start, end = admin.parse_when(since, "--since"), admin.parse_when(until, "--until")
    assert start is not None
    if as_json:
        result = admin.run(
            settings, lambda e: deliveries.recover(e, webhook_id, since=start, until=end), as_json=True
        )
        admin.print_json(result)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("redelivering"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        console=_stderr_console(),
    ) as bar:
        task = bar.add_task("recover", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = admin.run(
            settings, lambda e: deliveries.recover(e, webhook_id, since=start, until=end, progress=report)
        )
    typer.echo(
        f"{plural(result.redelivered, 'delivery', 'deliveries')} of webhook {webhook_id} made due again"
    )


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@events_app.command("list")
def events_list(
    action: Annotated[str | None, typer.Option(help="e.g. TASKS_CREATED")] = None,
    project: Annotated[int | None, typer.Option(help="Only this project's.", min=1)] = None,
    organization: Annotated[int | None, typer.Option(help="Only this organization's.", min=1)] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_json: Json = False,
) -> None:
    """Events, newest first, with their deliveries by state."""
    from outbox.admin import deliveries
    from outbox.cli.render import render_events

    settings = load_settings()
    start, end = admin.parse_when(since, "--since"), admin.parse_when(until, "--until")
    page = admin.run(
        settings,
        lambda e: deliveries.list_events(
            e,
            action=action,
            project=project,
            organization=organization,
            since=start,
            until=end,
            cursor=cursor,
            limit=limit,
        ),
        as_json=as_json,
    )
    admin.print_json(page) if as_json else render_events(page)
