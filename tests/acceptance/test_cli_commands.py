"""The command line as a whole: every command listed and described, help without noise, settings
read once per command, and the questions a destructive or ambiguous command must ask."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

from outbox.cli import app, command, common
from outbox.config import Settings
from tests.support.cli import outbox


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, sub in sorted(group.commands.items()):
        found.append((*prefix, name))
        if hasattr(sub, "commands"):
            found.extend(_commands(sub, (*prefix, name)))
    return found


COMMANDS = _commands(command())


def test_every_command_is_listed_in_its_groups_help():
    top = outbox("--help")
    assert top.returncode == 0
    groups = {path[:-1] for path in COMMANDS}
    assert {"migrate", "relay", "up", "api", "webhooks", "deliveries", "events"} <= {p[0] for p in COMMANDS}
    for group in groups:
        listing = outbox(*group, "--help").stdout
        for path in COMMANDS:
            if path[:-1] == group:
                assert re.search(rf"│ {re.escape(path[-1])}\s", listing), (
                    f"{path} missing from {group} --help"
                )


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_a_description_for_every_option_and_no_bool_placeholder(path):
    result = outbox(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    cmd = command()
    for name in path:
        cmd = cmd.commands[name]
    assert cmd.help, f"{path} has no description"
    undescribed = [p.name for p in cmd.params if p.param_type_name == "option" and not p.help]
    assert not undescribed, f"{' '.join(path)}: options without help: {undescribed}"


@pytest.fixture
def counted(monkeypatch):
    """How many times a command builds its settings."""
    made: list[Settings] = []

    class Counting(Settings):
        def __init__(self, **values: Any) -> None:
            super().__init__(**values)
            made.append(self)

    monkeypatch.setattr(common, "Settings", Counting)
    return made


@pytest.mark.parametrize(
    "args",
    [
        ("webhooks", "add", "https://example.com/hook", "--project", "1", "--generate-secret"),
        ("webhooks", "list"),
        ("webhooks", "update", "{id}", "--description", "x"),
        ("webhooks", "rotate-secret", "{id}"),
        ("webhooks", "remove", "{id}", "--yes"),
        ("deliveries", "list"),
        ("events", "list"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_settings_are_read_once_per_command(args, conn, database_url, counted):
    conn.execute("insert into organization (id, title) values (1, 'org')")
    conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1)")
    ident = conn.execute(
        "insert into outbox.webhook (organization_id, project_id, url) values (1, 1, 'https://a.example') "
        "returning id"
    ).fetchone()["id"]
    argv = [a.format(id=ident) for a in args]
    result = CliRunner().invoke(app, argv, env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert len(counted) == 1


def test_remove_without_a_terminal_refuses_unless_yes(cli, conn):
    ident = cli("webhooks", "add", "https://example.com/hook", "--project", "1").stdout.split()[1]
    refused = cli("webhooks", "remove", ident, ok=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"outbox: webhooks remove {ident}: no terminal to confirm on; add --yes to remove it"
    )
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 1
    assert cli("webhooks", "remove", ident, "--yes").stdout.strip() == f"webhook {ident} removed"
    assert conn.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0


def test_header_replaces_and_cannot_be_combined_with_clear(cli, conn):
    ident = cli(
        "webhooks", "add", "https://example.com/hook", "--project", "1", "-H", "A: 1", "-H", "B: 2"
    ).stdout.split()[1]
    refused = cli("webhooks", "update", ident, "-H", "C: 3", "--clear-headers", ok=False)
    assert refused.returncode == 2 and "--clear-headers: give one" in refused.stderr
    headers = lambda: conn.execute("select headers from outbox.webhook").fetchone()["headers"]  # noqa: E731
    assert headers() == {"A": "1", "B": "2"}
    cli("webhooks", "update", ident, "-H", "C: 3")
    assert headers() == {"C": "3"}  # replaced, as the help says
    assert "REPLACE" in outbox("webhooks", "update", "--help").stdout
    cli("webhooks", "update", ident, "--clear-headers")
    assert headers() == {}


def test_one_outbox_prefix_however_many_layers_add():
    assert common.error_line("outbox: outbox: Label Studio table(s) not found") == (
        "outbox: Label Studio table(s) not found"
    )
    assert common.error_line("DATABASE_URL is not set") == "outbox: DATABASE_URL is not set"
    assert common.plural(1, "delivery", "deliveries") == "1 delivery"
    assert common.plural(0, "delivery", "deliveries") == "0 deliveries"
