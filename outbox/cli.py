"""The ``outbox`` command line (docs/design.md §8)."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Annotated, Any

import anyio
import psycopg
import typer
from pydantic import ValidationError

from outbox import __version__, db, embedded, migrations, sql
from outbox.config import Settings

app = typer.Typer(
    name="outbox",
    help="Postgres-native webhooks for Label Studio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SANDBOX_DATABASE = "labelstudio"


class CliError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"invalid configuration: {problems}") from None


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise CliError(
            "DATABASE_URL is not set: point it at the Label Studio database "
            "(`outbox up` and `outbox demo` start an embedded PostgreSQL when it is unset)"
        )
    return settings.database_url.get_secret_value()


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return db.connect_sync(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot connect to {db.mask_dsn(url)}: {str(exc).strip()}") from None


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CliError as exc:
        typer.echo(f"outbox: {exc}", err=True)
        raise SystemExit(2) from None


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"outbox {__version__}")
        raise typer.Exit()


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
    if print_sql and all_migrations:
        typer.echo(migrations.script(migrations.load()), nl=False)
        return
    url = _database_url(settings)
    with _connect(url) as conn:
        try:
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
        except migrations.MigrationError as exc:
            raise CliError(str(exc)) from None


@app.command()
def uninstall(
    drop_data: Annotated[
        bool,
        typer.Option("--drop-data", help="Also drop schema outbox: subscriptions, events, deliveries."),
    ] = False,
) -> None:
    """Remove every trigger and function outbox attached to Label Studio's tables."""
    url = _database_url(_settings())
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

    relay = Relay(url, settings)

    async def run() -> None:
        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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
    _run_relay(_database_url(settings), settings)


@app.command()
def up(
    poll_interval: Annotated[
        float | None, typer.Option(help="Seconds between polls when no NOTIFY arrives.")
    ] = None,
) -> None:
    """Migrate and run the relay until interrupted (an embedded PostgreSQL without DATABASE_URL)."""
    settings = _settings(poll_interval=poll_interval)
    _setup_logging(settings)
    if settings.database_url is None:
        server = embedded.start(settings.data_dir)
        embedded.ensure_database(server.url(), SANDBOX_DATABASE)
        url = server.url(SANDBOX_DATABASE)
        with _connect(url) as conn:
            conn.execute(sql.read("label_studio_sandbox.sql"))
        typer.echo(
            f"embedded PostgreSQL with Label Studio-shaped tables; to use it from another shell:\n"
            f"  export DATABASE_URL='{url}'",
            err=True,
        )
    else:
        url = settings.database_url.get_secret_value()
    with _connect(url) as conn:
        try:
            applied = migrations.migrate(conn)
        except migrations.MigrationError as exc:
            raise CliError(str(exc)) from None
    if applied:
        typer.echo(f"applied {', '.join(m.name for m in applied)}", err=True)
    _run_relay(url, settings)


@app.command()
def prune() -> None:
    """Delete delivered events, deliveries and attempts past OUTBOX_RETENTION (dead ones past
    OUTBOX_DEAD_RETENTION) now, in small batches; relays also do this on their own."""
    from relay import store

    settings = _settings()
    url = _database_url(settings)

    async def run() -> store.Pruned:
        conn = await db.connect(url, autocommit=True)
        try:
            return await store.prune(
                conn, retention=settings.retention, dead_retention=settings.dead_retention
            )
        finally:
            await conn.close()

    try:
        pruned = anyio.run(run)
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot connect to {db.mask_dsn(url)}: {str(exc).strip()}") from None
    typer.echo(f"pruned {pruned.deliveries} deliveries and {pruned.events} events")


@app.command()
def demo(
    tasks: Annotated[int, typer.Option(help="Tasks in the bulk import.")] = 12,
) -> None:
    """A labeling session on an embedded PostgreSQL, with every webhook printed as it arrives."""
    from outbox.demo import run_demo

    settings = _settings()
    raise typer.Exit(run_demo(settings, tasks=tasks))


# `outbox api`, `outbox webhooks …`, `outbox deliveries …`, `outbox events …`
from outbox.cli_admin import register as _register_admin  # noqa: E402

_register_admin(app)
