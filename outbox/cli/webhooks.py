"""``outbox webhooks …``: the operations of /api/webhooks/ from the shell."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outbox.cli import admin
from outbox.cli.admin import Json, WebhookArg
from outbox.cli.common import CliError, load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from outbox.admin.backfill import Backfilled
    from outbox.admin.models import DeliveryDetail

app = typer.Typer(help="Manage webhooks, as /api/webhooks/ does.", no_args_is_help=True)


@app.command("list")
def webhooks_list(
    project: Annotated[
        str | None, typer.Option(help="Project id, or null for organization-level webhooks.")
    ] = None,
    organization: Annotated[int | None, typer.Option(help="Organization id.")] = None,
    as_json: Json = False,
) -> None:
    """List webhooks."""
    from outbox.admin import webhooks
    from outbox.cli.render import render_webhooks

    settings = load_settings()
    if project is not None and project != "null" and not project.isdigit():
        raise CliError("--project: a project id, or null")
    wanted: webhooks.ProjectFilter = (
        None if project is None else ("null" if project == "null" else int(project))
    )
    found = admin.run(
        settings,
        lambda e: webhooks.list_webhooks(e, project=wanted, organization=organization),
        as_json=as_json,
    )
    admin.print_json(found) if as_json else render_webhooks(found)


@app.command("show")
def webhooks_show(webhook_id: WebhookArg, as_json: Json = False) -> None:
    """Show one webhook."""
    from outbox.admin import webhooks
    from outbox.cli.render import render_webhook

    settings = load_settings()
    found = admin.run(settings, lambda e: webhooks.get(e, webhook_id), as_json=as_json)
    admin.print_json(found) if as_json else render_webhook(found)


Actions = Annotated[
    list[str] | None,
    typer.Option("--action", "-a", help="Send only this action (repeatable); see /api/webhooks/info/."),
]
Headers = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", help='A static header, "Name: value" (repeatable).'),
]


@app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="Where to POST (http or https).")],
    project: Annotated[int | None, typer.Option(help="Project id; none = organization-level.")] = None,
    organization: Annotated[
        int | None, typer.Option(help="Organization id (default: the project's, or the only one).")
    ] = None,
    action: Actions = None,
    header: Headers = None,
    payload: Annotated[
        bool, typer.Option("--payload/--no-payload", help="Send the payload, or only the action.")
    ] = True,
    active: Annotated[bool, typer.Option("--active/--inactive", help="Start active or paused.")] = True,
    description: Annotated[str, typer.Option(help="A note for people.")] = "",
    secret: Annotated[str | None, typer.Option(help="Signing secret (whsec_...).")] = None,
    generate: Annotated[
        bool, typer.Option("--generate-secret", help="Generate a signing secret and print it once.")
    ] = False,
    ordered: Annotated[
        bool,
        typer.Option("--ordered/--unordered", help="Deliver a project's events one at a time, in order."),
    ] = False,
    delete_payload: Annotated[
        str, typer.Option(help='What delete events list: "ids" (as Label Studio) or "rows".')
    ] = "ids",
    max_concurrency: Annotated[int, typer.Option(help="Requests in flight at most.")] = 8,
    rate_limit: Annotated[float | None, typer.Option(help="Requests per second at most.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds per request (default WEBHOOK_TIMEOUT).")
    ] = None,
    retry_schedule: Annotated[
        str | None, typer.Option(help='Delays before each attempt, e.g. "0,5s,5m,30m".')
    ] = None,
    as_json: Json = False,
) -> None:
    """Add a webhook. With --action, only the listed actions are sent."""
    from outbox.admin import webhooks
    from outbox.admin.models import WebhookCreate
    from outbox.cli.render import render_webhook
    from relay.signing import generate_secret

    settings = load_settings()
    if generate and secret is not None:
        raise CliError("--secret and --generate-secret: give one")
    new_secret = generate_secret() if generate else secret
    data: dict[str, Any] = {
        "url": url,
        "project": project,
        "organization": organization,
        "send_payload": payload,
        "send_for_all_actions": not action,
        "actions": action or [],
        "headers": admin.parse_headers(header) or {},
        "is_active": active,
        "description": description,
        "secret": new_secret,
        "ordered": ordered,
        "delete_payload": delete_payload,
        "max_concurrency": max_concurrency,
        "rate_limit": rate_limit,
        "timeout": timeout,
        "retry_schedule": admin.parse_schedule(retry_schedule),
    }
    body = admin.validated(WebhookCreate, data, as_json)
    limit = settings.max_webhooks_per_organization
    created = admin.run(
        settings, lambda e: webhooks.create(e, body, max_per_organization=limit), as_json=as_json
    )
    if as_json:
        admin.print_json(created)
        return
    render_webhook(created)
    if generate:
        typer.echo(f"signing secret (shown this once): {new_secret}")


@app.command("update")
def webhooks_update(
    webhook_id: WebhookArg,
    url: Annotated[str | None, typer.Option(help="Where to POST.")] = None,
    action: Actions = None,
    all_actions: Annotated[bool, typer.Option("--all-actions", help="Send every action.")] = False,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help='"Name: value" (repeatable): the headers given REPLACE all of the webhook\'s headers.',
        ),
    ] = None,
    clear_headers: Annotated[
        bool, typer.Option("--clear-headers", help="Remove every static header (not with -H).")
    ] = False,
    payload: Annotated[
        bool | None, typer.Option("--payload/--no-payload", help="Send the payload, or only the action.")
    ] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Resume or pause.")] = None,
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="A new signing secret (the old one keeps signing for OUTBOX_SECRET_GRACE)."),
    ] = None,
    no_secret: Annotated[bool, typer.Option("--no-secret", help="Stop signing.")] = False,
    ordered: Annotated[
        bool | None,
        typer.Option("--ordered/--unordered", help="Deliver a project's events one at a time, in order."),
    ] = None,
    delete_payload: Annotated[
        str | None, typer.Option(help='What delete events list: "ids" or "rows".')
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help='Requests per second, or "none".')] = None,
    timeout: Annotated[str | None, typer.Option(help='Seconds per request, or "default".')] = None,
    retry_schedule: Annotated[str | None, typer.Option(help='e.g. "0,5s,5m", or "default".')] = None,
    as_json: Json = False,
) -> None:
    """Change a webhook: only the options given change (--action and -H replace the list)."""
    from outbox.admin import webhooks
    from outbox.admin.models import WebhookUpdate
    from outbox.cli.render import render_webhook

    settings = load_settings()
    data: dict[str, Any] = {}
    if url is not None:
        data["url"] = url
    if action:
        data["actions"] = action
        data["send_for_all_actions"] = False
    if all_actions:
        data["send_for_all_actions"] = True
    if header is not None and clear_headers:
        raise CliError("-H/--header and --clear-headers: give one (-H already replaces every header)")
    if header is not None:
        data["headers"] = admin.parse_headers(header)
    if clear_headers:
        data["headers"] = {}
    for name, value in (
        ("send_payload", payload),
        ("is_active", active),
        ("description", description),
        ("ordered", ordered),
        ("delete_payload", delete_payload),
        ("max_concurrency", max_concurrency),
    ):
        if value is not None:
            data[name] = value
    if secret is not None:
        data["secret"] = secret
    if no_secret:
        data["secret"] = None
    if rate_limit is not None:
        data["rate_limit"] = None if rate_limit == "none" else admin.parse_number(rate_limit, "--rate-limit")
    if timeout is not None:
        data["timeout"] = None if timeout == "default" else admin.parse_number(timeout, "--timeout")
    if retry_schedule is not None:
        data["retry_schedule"] = admin.parse_schedule(retry_schedule)
    if not data:
        raise CliError("nothing to change: give at least one option (see --help)")
    body = admin.validated(WebhookUpdate, data, as_json)
    grace = settings.secret_grace
    updated = admin.run(
        settings, lambda e: webhooks.update(e, webhook_id, body, secret_grace=grace), as_json=as_json
    )
    admin.print_json(updated) if as_json else render_webhook(updated)


@app.command("remove")
def webhooks_remove(
    webhook_id: WebhookArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove a webhook with its deliveries and their attempt log."""
    from outbox.admin import webhooks

    settings = load_settings()
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"webhooks remove {webhook_id}: no terminal to confirm on; add --yes to remove it")
        typer.confirm(f"remove webhook {webhook_id} and its delivery log?", abort=True)
    admin.run(settings, lambda e: webhooks.delete(e, webhook_id))
    typer.echo(f"webhook {webhook_id} removed")


@app.command("test")
def webhooks_test(
    webhook_id: WebhookArg,
    wait: Annotated[
        float,
        typer.Option(help="Seconds to wait for the outcome (if a relay runs).", min=0, max=60),
    ] = 5.0,
    as_json: Json = False,
) -> None:
    """Send a PING event to one webhook through the normal pipeline and show its delivery."""
    from outbox.admin import deliveries, webhooks
    from outbox.cli.render import render_delivery

    settings = load_settings()

    async def test(engine: AsyncEngine) -> DeliveryDetail:
        delivery_id = await webhooks.send_test(engine, webhook_id)
        return await deliveries.wait_for_outcome(engine, delivery_id, wait)

    delivery = admin.run(settings, test, as_json=as_json)
    admin.print_json(delivery) if as_json else render_delivery(delivery)


@app.command("rotate-secret")
def webhooks_rotate_secret(
    webhook_id: WebhookArg,
    secret: Annotated[str | None, typer.Option(help="Use this secret instead of generating one.")] = None,
    as_json: Json = False,
) -> None:
    """Give a webhook a new signing secret; the old one keeps signing for OUTBOX_SECRET_GRACE."""
    from outbox.admin import webhooks
    from outbox.admin.models import SecretRotation

    settings = load_settings()
    body = admin.validated(SecretRotation, {"secret": secret}, as_json)
    grace = settings.secret_grace
    rotated = admin.run(
        settings, lambda e: webhooks.rotate_secret(e, webhook_id, body.secret, grace=grace), as_json=as_json
    )
    if as_json:
        admin.print_json(rotated)
        return
    if rotated.secret:
        typer.echo(f"new signing secret (shown this once): {rotated.secret}")
    else:
        typer.echo("signing secret replaced")
    if rotated.previous_secret_expires_at:
        until = f"{rotated.previous_secret_expires_at:%Y-%m-%d %H:%M:%SZ}"
        typer.echo(f"the previous secret also signs until {until}")


@app.command("pause")
def webhooks_pause(webhook_id: WebhookArg, as_json: Json = False) -> None:
    """Stop sending to a webhook; its deliveries wait until it is resumed."""
    from outbox.admin import webhooks
    from outbox.cli.render import render_webhook

    settings = load_settings()
    found = admin.run(settings, lambda e: webhooks.set_active(e, webhook_id, False), as_json=as_json)
    admin.print_json(found) if as_json else render_webhook(found)


@app.command("resume")
def webhooks_resume(webhook_id: WebhookArg, as_json: Json = False) -> None:
    """Resume a paused or disabled webhook (clears why it was disabled)."""
    from outbox.admin import webhooks
    from outbox.cli.render import render_webhook

    settings = load_settings()
    found = admin.run(settings, lambda e: webhooks.set_active(e, webhook_id, True), as_json=as_json)
    admin.print_json(found) if as_json else render_webhook(found)


@app.command("adopt")
def webhooks_adopt(
    project: Annotated[int | None, typer.Option(help="Only this project's webhooks.", min=1)] = None,
    deactivate: Annotated[
        bool,
        typer.Option("--deactivate", help="Set Label Studio's copies inactive, in the same transaction."),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be done.")] = False,
    as_json: Json = False,
) -> None:
    """Copy Label Studio's own webhooks (its settings page's) into outbox, once each."""
    from outbox.admin import adopt
    from outbox.cli.render import render_adoption

    settings = load_settings()
    report = admin.run(
        settings,
        lambda e: adopt.adopt(
            e,
            project=project,
            deactivate=deactivate,
            dry_run=dry_run,
            max_per_organization=settings.max_webhooks_per_organization,
        ),
        as_json=as_json,
    )
    admin.print_json(report) if as_json else render_adoption(report)


@app.command("backfill")
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

    settings = load_settings()
    fields = {"action": action, "project": project, "since": admin.parse_when(since, "--since")}
    request = admin.validated(backfill.BackfillRequest, fields, as_json, "backfill")

    async def run(engine: AsyncEngine) -> Backfilled:
        return await backfill.backfill(
            engine,
            webhook_id,
            request,
            batch_size=settings.webhook_batch_size,
            max_bytes=settings.max_body_bytes,
        )

    done = admin.run(settings, run, as_json=as_json)
    if as_json:
        admin.print_json(done)
    else:
        typer.echo(
            f"webhook {webhook_id}: {done.rows} row{'' if done.rows == 1 else 's'} queued as "
            f"{done.action}, {done.events} event{'' if done.events == 1 else 's'}, "
            f"{done.deliveries} {'delivery' if done.deliveries == 1 else 'deliveries'}"
        )
