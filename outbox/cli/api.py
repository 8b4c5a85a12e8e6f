"""``outbox api``: the admin API's server."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from outbox.cli.common import CliError, database_url, load_settings, setup_logging

# Top-level commands: outbox.cli adds each of them to the ``outbox`` app.
app = typer.Typer()


@app.command("api")
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

    settings = load_settings(api_host=host, api_port=port)
    setup_logging(settings)
    # a database without outbox yet answers 503 "run `outbox migrate`" until it is migrated
    url = database_url(settings)
    try:
        token = check_auth(settings, settings.api_host, no_auth)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if token is None:
        typer.echo("outbox api: authentication is OFF (--no-auth): 127.0.0.1 only", err=True)
    server = create_app(settings, url, admin_token=token)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # previous handler: make that handler a clean exit, so a graceful stop is status 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    # log_config=None: uvicorn's loggers propagate to outbox's redacting handler instead of getting
    # handlers of their own (its access log would print a token sent in a query string).
    uvicorn.run(
        server,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
    )
