"""docs/configuration.md documents every environment variable the code reads and every option of
every command. Both lists are discovered, not written here: the settings object's fields, the
``os.environ`` reads in the source, and the options of the Typer app as click builds it, so a
variable or option added later fails this test until it is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from outbox.cli import command
from outbox.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def settings_variables() -> set[str]:
    names = set()
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field}".upper())
    return names


def environ_reads(folder: str) -> set[str]:
    """Names read with ``os.environ[...]``, ``os.environ.get(...)`` or ``os.getenv(...)``."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            key = None
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                key = node.slice
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
                key = node.args[0] if node.args else None
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.add(key.value)
    return found


def code_variables() -> set[str]:
    own = environ_reads("outbox") | environ_reads("relay")
    # the tests' and benchmarks' own; PATH, TMPDIR, PGOPTIONS … are not outbox's to document
    suites = {n for n in environ_reads("tests") | environ_reads("bench") if n.startswith("OUTBOX_")}
    return settings_variables() | own | suites


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
