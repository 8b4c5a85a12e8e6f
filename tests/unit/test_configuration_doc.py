"""docs/configuration.md documents every environment variable the code reads and every option of
every command. Both lists are discovered, not written here: the settings object's fields, the
``os.environ`` reads in the source, and the options of the Typer app as click builds it, so a
variable or option added later fails this test until it is documented."""

from __future__ import annotations

import re
from typing import Any

import pytest

from outbox.cli import command
from tests.support.configuration import ROOT, environ_reads, outbox_variables, settings_variables

DOC = (ROOT / "docs" / "configuration.md").read_text()


def code_variables() -> set[str]:
    # the tests' and benchmarks' own; PATH, TMPDIR, PGOPTIONS … are not outbox's to document
    suites = {n for n in environ_reads("tests") | environ_reads("bench") if n.startswith("OUTBOX_")}
    return outbox_variables() | suites


def documented_variables() -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", DOC, flags=re.MULTILINE))


def test_every_variable_the_code_reads_is_documented():
    missing = code_variables() - documented_variables()
    assert not missing, f"docs/configuration.md lacks {sorted(missing)}"


def test_the_discovery_finds_what_it_should():
    assert {
        "DATABASE_URL",
        "OUTBOX_DATABASE_URL",
        "WEBHOOK_TIMEOUT",
        "OUTBOX_RETRY_SCHEDULE",
    } <= settings_variables()
    assert "OUTBOX_TEST_DATABASE_URL" in code_variables()


def leaf_commands(group: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    found = {}
    for name, sub in group.commands.items():
        if hasattr(sub, "commands"):
            found.update(leaf_commands(sub, (*path, name)))
        else:
            found[" ".join(("outbox", *path, name))] = sub
    return found


def section(title: str) -> str | None:
    """The text under ``### `title``` up to the next heading."""
    match = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^#|\Z)", DOC, flags=re.MULTILINE | re.DOTALL)
    return match.group(1) if match else None


COMMANDS = leaf_commands(command())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_every_command_is_documented_in_its_section(name):
    text = section(name)
    assert text is not None, f"docs/configuration.md has no section ### `{name}`"
    options = {
        opt
        for param in COMMANDS[name].params
        if param.param_type_name == "option"
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    }
    missing = {opt for opt in options if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)}
    assert not missing, f"{name}: {sorted(missing)} not in its section of docs/configuration.md"


def test_every_command_is_found():
    assert {"outbox migrate", "outbox relay", "outbox webhooks adopt", "outbox events list"} <= set(COMMANDS)
