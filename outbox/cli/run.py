"""The commands that install outbox and run it: ``migrate``, ``uninstall``, ``relay``, ``up``,
``prune``, ``demo``."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import anyio
import typer

from outbox import db, migrations
from outbox.cli.common import CliError, plural
from outbox.cli.common import connect as _connect
from outbox.cli.common import database_url as _database_url
from outbox.cli.common import load_settings as _settings
from outbox.cli.common import setup_logging as _setup_logging
from outbox.config import Settings

# Top-level commands: outbox.cli adds each of them to the ``outbox`` app.
app = typer.Typer()


@app.command()
def migrate(
    print_sql: Annotated[
        bool, typer.Option("--print", help="Print the SQL that would run (for psql) instead.")
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="List applied and pending migrations.")] = False,
    all_migrations: Annotated[
        bool,
        typer.Option("--all", help="With --print: every migration, without asking the database."),
    ] = False,
) -> None:
    """Install or upgrade outbox's schema and triggers in the Label Studio database."""
    settings = _settings()
    _setup_logging(settings)  # says what it waits for, when Label Studio holds a table's lock
    if print_sql and all_migrations:
        typer.echo(migrations.script(migrations.load()), nl=False)
        return
    url = _database_url(settings)
    with _connect(url) as conn:
        if status:
            for item in migrations.status(conn):
                typer.echo(f"{item.state:8} {item.migration.name} ({item.migration.kind})")
        elif print_sql:
            pending = migrations.plan(migrations.load(), migrations.applied_checksums(conn))
            typer.echo(migrations.script(pending), nl=False)
        else:
            applied = migrations.migrate(conn)
            for migration in applied:
                typer.echo(f"applied {migration.name}")
            typer.echo("outbox is up to date" if not applied else f"{len(applied)} migration(s) applied")


@app.command()
def uninstall(
    drop_data: Annotated[
        bool,
        typer.Option("--drop-data", help="Also drop schema outbox: subscriptions, events, deliveries."),
    ] = False,
) -> None:
    """Remove every trigger and function outbox attached to Label Studio's tables."""
    settings = _settings()
    _setup_logging(settings)  # says what it waits for, when Label Studio holds a table's lock
    url = _database_url(settings)
    with _connect(url) as conn:
        migrations.uninstall(conn, drop_data=drop_data)
    typer.echo("outbox uninstalled" + (" and its data dropped" if drop_data else "; schema outbox kept"))


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _run_relay(url: str, settings: Settings) -> None:
    from relay.relay import Relay

    relay = Relay(url, settings.relay_config())

    async def run() -> None:
        # The handlers are in place before the relay says anything: a SIGTERM right after its first
        # log line (a supervisor, a test) stopped the process by the default action instead.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:

                async def on_signals() -> None:
                    async for received in signals:
                        if relay.stopping:
                            logging.getLogger("outbox").warning("second %s: exiting now", received.name)
                            tg.cancel_scope.cancel()
                            return
                        logging.getLogger("outbox").info("%s: stopping", received.name)
                        relay.stop()

                tg.start_soon(on_signals)
                await relay.run()
                tg.cancel_scope.cancel()

    # uvloop: the relay is event-loop bound (thousands of sockets' worth of callbacks a second)
    anyio.run(run, backend_options={"use_uvloop": _has_uvloop()})


@app.command("relay")
def relay_command(
    poll_interval: Annotated[
        float | None, typer.Option(help="Seconds between polls when no NOTIFY arrives.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most.")] = None,
    settle_ms: Annotated[int | None, typer.Option(help="Delay before payloads are built.")] = None,
) -> None:
    """Deliver webhooks: LISTEN, poll, route, build, send, record. Stops on SIGTERM/SIGINT."""
    settings = _settings(poll_interval=poll_interval, concurrency=concurrency, settle_ms=settle_ms)
    _setup_logging(settings)
    # A database without outbox yet is waited for (the relay says so once, and starts once it is
    # migrated): services are often started before, or beside, the migration.
    _run_relay(_database_url(settings), settings)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address of the API (OUTBOX_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the API; 0 picks one (OUTBOX_API_PORT).")] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No token required (only on 127.0.0.1).")
    ] = False,
) -> None:
    """Migrate, then run the relay and the admin API in one process until SIGTERM/SIGINT (an
    embedded PostgreSQL with Label Studio-shaped tables without DATABASE_URL)."""
    from outbox import up as supervisor
    from outbox.cli import common

    settings = _settings(api_host=host, api_port=port)
    _setup_logging(settings)
    try:
        raise typer.Exit(supervisor.run(settings, no_auth=no_auth, redact=common.redact))
    except supervisor.UpError as exc:
        raise CliError(str(exc)) from None


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Check the installation: database, migrations, triggers, relays, backlog, dead deliveries,
    disabled webhooks, NOTIFY queue, long transactions. Exit status 0 when healthy, else 1."""
    from outbox.cli import common
    from outbox.doctor import examine

    report = examine(_database_url(_settings()))
    typer.echo(common.redact(report.json() if as_json else report.text()))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def prune() -> None:
    """Delete delivered events, deliveries and attempts past OUTBOX_RETENTION (dead ones past
    OUTBOX_DEAD_RETENTION) now, in small batches; relays also do this on their own."""
    from relay import retention

    settings = _settings()
    url = _database_url(settings)

    async def run() -> retention.Pruned:
        conn = await db.connect(url, autocommit=True)
        try:
            return await retention.prune(
                conn, retention=settings.retention, dead_retention=settings.dead_retention
            )
        finally:
            await conn.close()

    pruned = anyio.run(run)
    typer.echo(
        f"pruned {plural(pruned.deliveries, 'delivery', 'deliveries')} "
        f"and {plural(pruned.events, 'event', 'events')}"
    )


@app.command()
def demo(
    tasks: Annotated[int, typer.Option(help="Tasks in the bulk import.")] = 12,
) -> None:
    """A labeling session on an embedded PostgreSQL, with every webhook printed as it arrives."""
    from outbox.demo import MAX_TASKS, MIN_TASKS, run_demo

    if not MIN_TASKS <= tasks <= MAX_TASKS:
        raise CliError(f"--tasks: {MIN_TASKS} to {MAX_TASKS} tasks, not {tasks}")
    settings = _settings()
    raise typer.Exit(run_demo(settings, tasks=tasks))
