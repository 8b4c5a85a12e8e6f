"""``outbox api``, ``outbox webhooks …``, ``outbox deliveries …``, ``outbox events …``.

The subcommands run the same operations as the admin API (``outbox.admin``) directly on the
database, with the same validation and the same messages; tables for people (rich), ``--json`` for
scripts (the API's JSON). Errors are one line on stderr and exit status 2; with ``--json`` the
API's error body is printed on stdout too.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast, get_args

import typer
from pydantic import BaseModel, ValidationError

from outbox.config import Settings, parse_duration

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from outbox.admin.models import DeliveryDetail

# Every `outbox` command imports this module: what only the admin commands need (SQLAlchemy, the
# admin operations, rich tables) is imported inside them, to keep `outbox relay` quick to start.

T = TypeVar("T")


# outbox/cli.py registers these commands at its end, so its helpers are looked up when a command
# runs, not when this module is imported.
def CliError(message: str) -> Exception:  # noqa: N802 - stands for outbox.cli.CliError
    from outbox.cli import CliError as error

    return error(message)


def _settings(**overrides: Any) -> Settings:
    from outbox.cli import _settings as settings

    return settings(**overrides)


def _database_url(settings: Settings) -> str:
    from outbox.cli import _database_url as database_url

    return database_url(settings)


webhooks_app = typer.Typer(help="Manage webhooks, as /api/webhooks/ does.", no_args_is_help=True)
deliveries_app = typer.Typer(help="The delivery log and replay.", no_args_is_help=True)
events_app = typer.Typer(help="The event log.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
WebhookArg = Annotated[int, typer.Argument(help="Webhook id.", min=1)]
DeliveryArg = Annotated[int, typer.Argument(help="Delivery id.", min=1)]


def register(app: typer.Typer) -> None:
    """Add the admin commands to the ``outbox`` command line."""
    app.command("api")(api_command)
    app.add_typer(webhooks_app, name="webhooks")
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(events_app, name="events")


# -- running an operation --------------------------------------------------------------------


def _run(operation: Callable[[AsyncEngine], Awaitable[T]], *, as_json: bool = False) -> T:
    """Run one admin operation on DATABASE_URL; admin errors become CLI errors."""
    import anyio

    from outbox.admin.database import create_engine
    from outbox.admin.errors import AdminError, Invalid

    url = _database_url(_settings())

    async def main() -> T:
        engine = create_engine(url, application_name="outbox-cli", pool_size=None)
        try:
            return await operation(engine)
        finally:
            await engine.dispose()

    try:
        return anyio.run(main)
    except AdminError as exc:
        if as_json:
            body: dict[str, Any] = {"status_code": exc.status, "detail": exc.detail}
            if isinstance(exc, Invalid):
                body["validation_errors"] = exc.errors
            typer.echo(json.dumps(body))
        raise CliError(str(exc)) from None
    # other expected failures (a database that refuses, lacks outbox…): outbox.cli.expected_error


def _validated(model: type[BaseModel], data: dict[str, Any], as_json: bool) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from outbox.admin.errors import from_validation_error

        error = from_validation_error(exc)
        if as_json:
            typer.echo(
                json.dumps({"status_code": 400, "detail": error.detail, "validation_errors": error.errors})
            )
        raise CliError(f"invalid webhook: {error}") from None


def _print_json(value: Any) -> None:
    data: Any
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json", by_alias=True)
    else:
        data = [item.model_dump(mode="json", by_alias=True) for item in value]
    typer.echo(json.dumps(data, indent=2))


def parse_when(value: str | None, option: str) -> datetime | None:
    """ISO 8601 (a time without zone is UTC), or a duration ago: ``30m``, ``2h``, ``7d``."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        raise CliError(
            f"{option}: not a time: use ISO 8601 (2026-01-31T12:00:00Z) or a duration ago (30m, 2h, 7d)"
        ) from None


def _headers(values: list[str] | None) -> dict[str, str] | None:
    if values is None:
        return None
    headers = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep:
            raise CliError('--header: use "Name: value"')
        headers[name.strip()] = value.strip()
    return headers


def _number(value: str, option: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CliError(f"{option}: not a number: {value[:20]}") from None


def _schedule(value: str | None) -> list[int] | None:
    if value is None or value == "default":
        return None
    try:
        return [round(parse_duration(item).total_seconds()) for item in value.split(",")]
    except ValueError:
        raise CliError('--retry-schedule: e.g. "0,5s,5m,30m", or "default"') from None


# -- outbox api -------------------------------------------------------------------------------


def api_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (OUTBOX_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (OUTBOX_API_PORT).")] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No token required (only on 127.0.0.1).")
    ] = False,
) -> None:
    """Serve the admin API: Label Studio's /api/webhooks/, the delivery log, health, metrics."""
    import uvicorn

    from outbox.api.app import ConfigurationError, check_auth, create_app
    from outbox.cli import _setup_logging

    settings = _settings(api_host=host, api_port=port)
    _setup_logging(settings)
    # a database without outbox yet answers 503 "run `outbox migrate`" until it is migrated
    url = _database_url(settings)
    try:
        token = check_auth(settings, settings.api_host, no_auth)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if token is None:
        typer.echo("outbox api: authentication is OFF (--no-auth): 127.0.0.1 only", err=True)
    app = create_app(settings, url, admin_token=token)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # previous handler: make that handler a clean exit, so a graceful stop is status 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    # log_config=None: uvicorn's loggers propagate to outbox's redacting handler instead of getting
    # handlers of their own (its access log would print a token sent in a query string).
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
    )


# -- outbox webhooks ----------------------------------------------------------------------------


@webhooks_app.command("list")
def webhooks_list(
    project: Annotated[
        str | None, typer.Option(help="Project id, or null for organization-level webhooks.")
    ] = None,
    organization: Annotated[int | None, typer.Option(help="Organization id.")] = None,
    as_json: Json = False,
) -> None:
    """List webhooks."""
    from outbox.admin import webhooks
    from outbox.cli_render import render_webhooks

    if project is not None and project != "null" and not project.isdigit():
        raise CliError("--project: a project id, or null")
    wanted: webhooks.ProjectFilter = (
        None if project is None else ("null" if project == "null" else int(project))
    )
    found = _run(
        lambda e: webhooks.list_webhooks(e, project=wanted, organization=organization),
        as_json=as_json,
    )
    _print_json(found) if as_json else render_webhooks(found)


@webhooks_app.command("show")
def webhooks_show(webhook_id: WebhookArg, as_json: Json = False) -> None:
    """Show one webhook."""
    from outbox.admin import webhooks
    from outbox.cli_render import render_webhook

    found = _run(lambda e: webhooks.get(e, webhook_id), as_json=as_json)
    _print_json(found) if as_json else render_webhook(found)


Actions = Annotated[
    list[str] | None,
    typer.Option("--action", "-a", help="Send only this action (repeatable); see /api/webhooks/info/."),
]
Headers = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", help='A static header, "Name: value" (repeatable).'),
]


@webhooks_app.command("add")
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
        bool, typer.Option(help="Deliver a project's events one at a time, in order.")
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
    from outbox.cli_render import render_webhook
    from relay.signing import generate_secret

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
        "headers": _headers(header) or {},
        "is_active": active,
        "description": description,
        "secret": new_secret,
        "ordered": ordered,
        "delete_payload": delete_payload,
        "max_concurrency": max_concurrency,
        "rate_limit": rate_limit,
        "timeout": timeout,
        "retry_schedule": _schedule(retry_schedule),
    }
    body = _validated(WebhookCreate, data, as_json)
    limit = _settings().max_webhooks_per_organization
    created = _run(lambda e: webhooks.create(e, body, max_per_organization=limit), as_json=as_json)
    if as_json:
        _print_json(created)
        return
    render_webhook(created)
    if generate:
        typer.echo(f"signing secret (shown this once): {new_secret}")


@webhooks_app.command("update")
def webhooks_update(
    webhook_id: WebhookArg,
    url: Annotated[str | None, typer.Option(help="Where to POST.")] = None,
    action: Actions = None,
    all_actions: Annotated[bool, typer.Option("--all-actions", help="Send every action.")] = False,
    header: Headers = None,
    clear_headers: Annotated[
        bool, typer.Option("--clear-headers", help="Remove every static header.")
    ] = False,
    payload: Annotated[bool | None, typer.Option("--payload/--no-payload")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Resume or pause.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="A new signing secret (the old one keeps signing for OUTBOX_SECRET_GRACE)."),
    ] = None,
    no_secret: Annotated[bool, typer.Option("--no-secret", help="Stop signing.")] = False,
    ordered: Annotated[bool | None, typer.Option("--ordered/--unordered")] = None,
    delete_payload: Annotated[str | None, typer.Option(help='"ids" or "rows".')] = None,
    max_concurrency: Annotated[int | None, typer.Option()] = None,
    rate_limit: Annotated[str | None, typer.Option(help='Requests per second, or "none".')] = None,
    timeout: Annotated[str | None, typer.Option(help='Seconds per request, or "default".')] = None,
    retry_schedule: Annotated[str | None, typer.Option(help='e.g. "0,5s,5m", or "default".')] = None,
    as_json: Json = False,
) -> None:
    """Change a webhook: only the options given change (--action replaces the list)."""
    from outbox.admin import webhooks
    from outbox.admin.models import WebhookUpdate
    from outbox.cli_render import render_webhook

    data: dict[str, Any] = {}
    if url is not None:
        data["url"] = url
    if action:
        data["actions"] = action
        data["send_for_all_actions"] = False
    if all_actions:
        data["send_for_all_actions"] = True
    if header is not None:
        data["headers"] = _headers(header)
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
        data["rate_limit"] = None if rate_limit == "none" else _number(rate_limit, "--rate-limit")
    if timeout is not None:
        data["timeout"] = None if timeout == "default" else _number(timeout, "--timeout")
    if retry_schedule is not None:
        data["retry_schedule"] = _schedule(retry_schedule)
    if not data:
        raise CliError("nothing to change: give at least one option (see --help)")
    body = _validated(WebhookUpdate, data, as_json)
    grace = _settings().secret_grace
    updated = _run(lambda e: webhooks.update(e, webhook_id, body, secret_grace=grace), as_json=as_json)
    _print_json(updated) if as_json else render_webhook(updated)


@webhooks_app.command("remove")
def webhooks_remove(
    webhook_id: WebhookArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove a webhook with its deliveries and their attempt log."""
    from outbox.admin import webhooks

    if not yes and sys.stdin.isatty():
        typer.confirm(f"remove webhook {webhook_id} and its delivery log?", abort=True)
    _run(lambda e: webhooks.delete(e, webhook_id))
    typer.echo(f"webhook {webhook_id} removed")


@webhooks_app.command("test")
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
    from outbox.cli_render import render_delivery

    async def test(engine: AsyncEngine) -> DeliveryDetail:
        delivery_id = await webhooks.send_test(engine, webhook_id)
        return await deliveries.wait_for_outcome(engine, delivery_id, wait)

    delivery = _run(test, as_json=as_json)
    _print_json(delivery) if as_json else render_delivery(delivery)


@webhooks_app.command("rotate-secret")
def webhooks_rotate_secret(
    webhook_id: WebhookArg,
    secret: Annotated[str | None, typer.Option(help="Use this secret instead of generating one.")] = None,
    as_json: Json = False,
) -> None:
    """Give a webhook a new signing secret; the old one keeps signing for OUTBOX_SECRET_GRACE."""
    from outbox.admin import webhooks
    from outbox.admin.models import SecretRotation

    body = _validated(SecretRotation, {"secret": secret}, as_json)
    grace = _settings().secret_grace
    rotated = _run(lambda e: webhooks.rotate_secret(e, webhook_id, body.secret, grace=grace), as_json=as_json)
    if as_json:
        _print_json(rotated)
        return
    if rotated.secret:
        typer.echo(f"new signing secret (shown this once): {rotated.secret}")
    else:
        typer.echo("signing secret replaced")
    if rotated.previous_secret_expires_at:
        until = f"{rotated.previous_secret_expires_at:%Y-%m-%d %H:%M:%SZ}"
        typer.echo(f"the previous secret also signs until {until}")


@webhooks_app.command("pause")
def webhooks_pause(webhook_id: WebhookArg, as_json: Json = False) -> None:
    """Stop sending to a webhook; its deliveries wait until it is resumed."""
    from outbox.admin import webhooks
    from outbox.cli_render import render_webhook

    found = _run(lambda e: webhooks.set_active(e, webhook_id, False), as_json=as_json)
    _print_json(found) if as_json else render_webhook(found)


@webhooks_app.command("resume")
def webhooks_resume(webhook_id: WebhookArg, as_json: Json = False) -> None:
    """Resume a paused or disabled webhook (clears why it was disabled)."""
    from outbox.admin import webhooks
    from outbox.cli_render import render_webhook

    found = _run(lambda e: webhooks.set_active(e, webhook_id, True), as_json=as_json)
    _print_json(found) if as_json else render_webhook(found)


# -- outbox deliveries / events ---------------------------------------------------------------

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
    from outbox.cli_render import render_deliveries

    if state not in (None, *get_args(deliveries.StateFilter)):
        raise CliError("--state: pending, failing, delivered or dead")
    wanted = cast("deliveries.StateFilter | None", state)
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    page = _run(
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
    _print_json(page) if as_json else render_deliveries(page)


@deliveries_app.command("show")
def deliveries_show(delivery_id: DeliveryArg, as_json: Json = False) -> None:
    """One delivery with every attempt."""
    from outbox.admin import deliveries
    from outbox.cli_render import render_delivery

    found = _run(lambda e: deliveries.get_delivery(e, delivery_id), as_json=as_json)
    _print_json(found) if as_json else render_delivery(found)


@deliveries_app.command("retry")
def deliveries_retry(delivery_id: DeliveryArg, as_json: Json = False) -> None:
    """Make one delivery due now (same webhook-id); a dead one gets one more attempt."""
    from outbox.admin import deliveries
    from outbox.cli_render import render_delivery

    found = _run(lambda e: deliveries.retry(e, delivery_id), as_json=as_json)
    _print_json(found) if as_json else render_delivery(found)


@deliveries_app.command("recover")
def deliveries_recover(
    webhook_id: WebhookArg,
    since: Annotated[str, typer.Option(help="From: ISO 8601, or a duration ago (24h).")],
    until: Until = None,
    as_json: Json = False,
) -> None:
    """Redeliver a webhook's failed and dead deliveries created in [since, until)."""
    from outbox.admin import deliveries

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    assert start is not None
    if as_json:
        result = _run(lambda e: deliveries.recover(e, webhook_id, since=start, until=end), as_json=True)
        _print_json(result)
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

        result = _run(lambda e: deliveries.recover(e, webhook_id, since=start, until=end, progress=report))
    typer.echo(f"{result.redelivered} deliveries of webhook {webhook_id} made due again")


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@events_app.command("list")
def events_list(
    action: Annotated[str | None, typer.Option(help="e.g. TASKS_CREATED")] = None,
    project: Annotated[int | None, typer.Option()] = None,
    organization: Annotated[int | None, typer.Option()] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_json: Json = False,
) -> None:
    """Events, newest first, with their deliveries by state."""
    from outbox.admin import deliveries
    from outbox.cli_render import render_events

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    page = _run(
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
    _print_json(page) if as_json else render_events(page)
