"""The ``outbox`` command line."""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from typing import Annotated, Any

import anyio
import psycopg
import typer
from pydantic import ValidationError

from outbox import __version__, db, embedded, logs, migrations
from outbox.config import Settings, variable_name
from outbox.logs import Redactor

app = typer.Typer(
    name="outbox",
    help="Postgres-native webhooks for Label Studio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class CliError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


NOT_INSTALLED = "outbox is not installed in this database: run `outbox migrate` first"

# What the CLI knows to hide, from the configuration it read: the DSN's password and the admin
# token. Every error line and log record passes through it (`outbox.logs`).
_redact = Redactor([])

# Options whose names are not the field's with dashes
_FLAGS = {"api_host": "--host", "api_port": "--port"}
# Options of the root command (`outbox --log-format json relay`), for every command's settings
_root_options: dict[str, Any] = {}


def _source(field: str, flags: set[str]) -> str:
    """What the user set: the flag when it came from one, else the environment variable."""
    if field in flags:
        return _FLAGS.get(field, "--" + field.replace("_", "-"))
    return variable_name(field) if field in Settings.model_fields else field


def _settings(**overrides: Any) -> Settings:
    """The settings, with flags given on the command line; DATABASE_URL checked before anything
    can connect (and its password known to the redactor before anything can log)."""
    given = {k: v for k, v in {**_root_options, **overrides}.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_source(str(e['loc'][0]), set(given)) if e['loc'] else 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        raise CliError(f"invalid configuration: {problems}") from None
    global _redact
    url = settings.database_url.get_secret_value() if settings.database_url else None
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    _redact = Redactor([*(db.dsn_secrets(url) if url else []), token])
    if url is not None:
        db.check_database_url(url, variable_name("database_url"))
    return settings


def _setup_logging(settings: Settings) -> None:
    logs.install(settings.log_level, _redact, kind=settings.log_format)


def _database_url(settings: Settings) -> str:
    """DATABASE_URL; unset, the sandbox of the embedded server `outbox up` runs in OUTBOX_DATA_DIR."""
    if settings.database_url is None:
        server = embedded.find(settings.data_dir)
        if server is not None:
            return server.url(embedded.SANDBOX_DATABASE)
        if embedded.exists(settings.data_dir):
            raise CliError(
                f"DATABASE_URL is not set and the embedded PostgreSQL in {settings.data_dir} is not"
                " running: start it with `outbox up` (or set DATABASE_URL)"
            )
        raise CliError(
            "DATABASE_URL is not set: point it at the Label Studio database "
            "(`outbox up` and `outbox demo` start an embedded PostgreSQL when it is unset)"
        )
    return settings.database_url.get_secret_value()


def _connect(url: str) -> psycopg.Connection[Any]:
    return db.connect_sync(url, autocommit=True)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def expected_error(exc: BaseException) -> str | None:
    """The one-line message for a failure the user can act on, or None for a bug (traceback).

    The one place where predictable failures of every command become messages: a configuration or
    database URL error, a database that refuses or lacks outbox, an admin error (an id that does
    not exist, bad input), a migration that cannot proceed.
    """
    from psycopg import errors

    if isinstance(exc, CliError | db.DatabaseUrlError | migrations.MigrationError):
        return str(exc)
    if "outbox.admin.errors" in sys.modules:
        from outbox.admin.errors import AdminError

        if isinstance(exc, AdminError):
            return str(exc)
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError

        if isinstance(exc, DBAPIError) and exc.orig is not None:
            return expected_error(exc.orig)
    if isinstance(exc, errors.UndefinedTable | errors.InvalidSchemaName | errors.UndefinedFunction):
        # only outbox's own objects: anything else missing is a bug worth its traceback
        return NOT_INSTALLED if "outbox" in str(exc) else None
    if isinstance(exc, psycopg.OperationalError):
        reason = _one_line(str(exc)) or type(exc).__name__
        if reason.startswith(("connection failed", "connection to server", "Multiple connection")):
            return f"cannot connect to the database: {reason}"
        return f"database error: {reason}"
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return expected_error(exc.exceptions[0])
    return None


def main() -> None:
    """Entry point: expected errors become one line on stderr and exit status 2."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - a bug is printed too, redacted
        message = expected_error(exc)
        if message is None:  # a bug: its traceback, without the configured secrets
            text = "".join(traceback.format_exception(exc))
            typer.echo(_redact(text), err=True, nl=False)
            raise SystemExit(1) from None
        # messages raised by sql/ (preflight) carry the prefix already
        typer.echo(f"outbox: {_redact(message).removeprefix('outbox: ')}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C in a short command: no traceback
        raise SystemExit(130) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"outbox {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="text, or json: one object a line (OUTBOX_LOG_FORMAT)."),
    ] = None,
) -> None:
    """Postgres-native webhooks for Label Studio."""
    _root_options["log_format"] = log_format


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

    settings = _settings(api_host=host, api_port=port)
    _setup_logging(settings)
    try:
        raise typer.Exit(supervisor.run(settings, no_auth=no_auth, redact=_redact))
    except supervisor.UpError as exc:
        raise CliError(str(exc)) from None


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Check the installation: database, migrations, triggers, relays, backlog, dead deliveries,
    disabled webhooks, NOTIFY queue, long transactions. Exit status 0 when healthy, else 1."""
    from outbox.doctor import examine

    report = examine(_database_url(_settings()))
    typer.echo(_redact(report.json() if as_json else report.text()))
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
    typer.echo(f"pruned {pruned.deliveries} deliveries and {pruned.events} events")


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


# `outbox api`, `outbox webhooks …`, `outbox deliveries …`, `outbox events …`
from outbox.cli_admin import register as _register_admin  # noqa: E402

_register_admin(app)
