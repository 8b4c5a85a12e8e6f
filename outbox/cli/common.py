"""What every command of the ``outbox`` command line shares: the settings of this invocation, the
database URL, logging, and the one place where expected failures become one line.

Nothing here imports a command module: the command groups (``run``, ``api``, ``webhooks``,
``deliveries``) import this, and ``outbox.cli`` assembles them.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import typer
from pydantic import ValidationError

from outbox import db, embedded, logs, migrations
from outbox.config import Settings, variable_name
from outbox.logs import Redactor


class CliError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


NOT_INSTALLED = "outbox is not installed in this database: run `outbox migrate` first"

# What the CLI knows to hide, from the configuration it read: the DSN's password and the admin
# token. Every error line and log record passes through it (`outbox.logs`).
redact = Redactor([])

# Options whose names are not the field's with dashes
_FLAGS = {"api_host": "--host", "api_port": "--port"}
# Options of the root command (`outbox --log-format json relay`), for every command's settings
root_options: dict[str, Any] = {}


def _source(field: str, flags: set[str]) -> str:
    """What the user set: the flag when it came from one, else the environment variable."""
    if field in flags:
        return _FLAGS.get(field, "--" + field.replace("_", "-"))
    return variable_name(field) if field in Settings.model_fields else field


def load_settings(**overrides: Any) -> Settings:
    """This invocation's settings, with the flags given on the command line: read once, at the
    start of a command, and passed along from there. DATABASE_URL is checked before anything can
    connect, and its password known to the redactor before anything can log."""
    given = {k: v for k, v in {**root_options, **overrides}.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_source(str(e['loc'][0]), set(given)) if e['loc'] else 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        raise CliError(f"invalid configuration: {problems}") from None
    global redact
    url = settings.database_url.get_secret_value() if settings.database_url else None
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    redact = Redactor([*(db.dsn_secrets(url) if url else []), token])
    if url is not None:
        db.check_database_url(url, variable_name("database_url"))
    return settings


def setup_logging(settings: Settings) -> None:
    logs.install(settings.log_level, redact, kind=settings.log_format)


def database_url(settings: Settings) -> str:
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


def connect(url: str) -> psycopg.Connection[Any]:
    return db.connect_sync(url, autocommit=True, application_name="outbox-cli")


def plural(count: int, one: str, many: str) -> str:
    """``1 delivery``, ``2 deliveries``."""
    return f"{count} {one if count == 1 else many}"


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


PREFIX = "outbox: "


def error_line(message: str) -> str:
    """``message`` as the one line printed on stderr: redacted, with one ``outbox:`` prefix however
    many the layers below added (sql/preflight.sql raises with its own)."""
    text = redact(message)
    while text.startswith(PREFIX):
        text = text.removeprefix(PREFIX)
    return PREFIX + text


def echo_error(message: str) -> None:
    typer.echo(error_line(message), err=True)
