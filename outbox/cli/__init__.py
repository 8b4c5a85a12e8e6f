"""The ``outbox`` command line, assembled from its command groups.

- ``run``: ``migrate``, ``uninstall``, ``relay``, ``up``, ``prune``, ``demo`` (installing and running)
- ``api``: ``api`` (the admin API's server)
- ``webhooks``: ``webhooks …``; ``actions``: ``actions …``; ``deliveries``: ``deliveries …`` and
  ``events …`` (the admin
  operations, run on the database with the API's validation)

Imports go one way: this module imports the groups, the groups import ``common`` (settings,
errors) and ``admin`` (running an admin operation), never each other or this module.
"""

from __future__ import annotations

import traceback
from typing import Annotated, Any

import typer

from outbox import __version__
from outbox.cli import actions, api, common, deliveries, run, webhooks
from outbox.cli.common import CliError, expected_error

__all__ = ["CliError", "app", "command", "expected_error", "main"]

app = typer.Typer(
    name="outbox",
    help="Postgres-native webhooks for Label Studio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    common.root_options["log_format"] = log_format


for group in (run.app, api.app):
    app.registered_commands.extend(group.registered_commands)
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(actions.app, name="actions")
app.add_typer(deliveries.deliveries_app, name="deliveries")
app.add_typer(deliveries.events_app, name="events")


def _without_flag_types(command: Any) -> Any:
    """Flags take no value, so their help shows none (Typer would print ``<bool>``)."""
    help_option = command.get_help_option(command.context_class(command))  # made, and kept, on demand
    for param in [*command.params, help_option]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _without_flag_types(sub)
    return command


def command() -> Any:
    """The ``outbox`` command as click runs it, every group and option made (tests introspect it)."""
    return _without_flag_types(typer.main.get_command(app))


def main() -> None:
    """Entry point: expected errors become one line on stderr and exit status 2."""
    try:
        command()(prog_name="outbox")
    except Exception as exc:  # noqa: BLE001 - a bug is printed too, redacted
        message = expected_error(exc)
        if message is None:  # a bug: its traceback, without the configured secrets
            text = "".join(traceback.format_exception(exc))
            typer.echo(common.redact(text), err=True, nl=False)
            raise SystemExit(1) from None
        common.echo_error(message)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C in a short command: no traceback
        raise SystemExit(130) from None
