"""One-way layers, kept true by reading every module's imports (function-level ones included).

- ``relay`` depends on nothing of ``outbox`` but its database helpers and SQL loader: it is given a
  frozen ``RelayConfig`` (built by ``outbox.config``) and reads no settings of its own.
- relay's pure modules (decisions: grouping, routing, chunking, payloads, pacing, schedule, signing,
  the address policy, deliveries) do no I/O: no database, HTTP, event loop or socket library, and
  none of relay's I/O modules (the stages, the components, the sender, the loop). Every module is
  one or the other, named below: a new module has to be placed.
- ``outbox``'s management side (admin, API, tables, config) uses only relay's pure modules; only the
  command line and the demo compose the relay itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = {f"relay.{name}" for name in (
    "actions", "brokers", "chunks", "config", "counters", "deliveries", "errors", "events", "pacing", "payloads", "routing",
    "schedule", "signing", "urls",
)}  # fmt: skip
RELAY_IO = {f"relay.{name}" for name in (
    "relay",  # the loop
    "presence", "route", "build", "claim", "record", "retention", "emitted",  # the stages
    "database", "listener", "recorder", "housekeeping",  # the components
    "sender", "destinations", "sender_amqp", "sender_nats", "sender_redis",
)}  # fmt: skip
IO_LIBRARIES = {
    "aiormq",
    "nats",
    "redis",
    "aiohttp",
    "psycopg",
    "anyio",
    "httpx",
    "asyncio",
    "socket",
    "sqlalchemy",
    "uvloop",
}
RELAY_MAY_USE_OF_OUTBOX = {"outbox.db", "outbox.sql"}
COMPOSERS = {"outbox.cli.run", "outbox.demo", "outbox.up"}
# the command line's shared modules: the command groups import these, never each other
CLI_SHARED = {"outbox.cli.common", "outbox.cli.admin", "outbox.cli.render"}


def modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module a file imports, ``from relay import claim`` counted as ``relay.claim``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, packages: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


RELAY = modules("relay")
OUTBOX = modules("outbox")


def test_every_relay_module_is_placed_in_a_layer():
    assert set(RELAY) - {"relay"} == PURE | RELAY_IO
    assert "outbox.admin.webhooks" in OUTBOX


@pytest.mark.parametrize("module", sorted(RELAY))
def test_relay_uses_only_the_database_helpers_and_sql_loader_of_outbox(module):
    used = {name for name in imports(RELAY[module]) if within(name, {"outbox"})}
    # ``from outbox import db`` names the package and the helper: the package alone is allowed
    wrong = {name for name in used - {"outbox"} if not within(name, RELAY_MAY_USE_OF_OUTBOX)}
    assert not wrong, f"{module} imports {sorted(wrong)} of outbox"


@pytest.mark.parametrize("module", sorted(PURE))
def test_relays_pure_modules_do_no_io(module):
    used = imports(RELAY[module])
    wrong = {name for name in used if within(name, RELAY_IO | IO_LIBRARIES | {"outbox"})}
    assert not wrong, f"{module} is a pure module but imports {sorted(wrong)}"


@pytest.mark.parametrize("module", sorted(set(OUTBOX) - COMPOSERS))
def test_outbox_uses_only_relays_pure_modules(module):
    used = {name for name in imports(OUTBOX[module]) if within(name, {"relay"})}
    wrong = {name for name in used if within(name, RELAY_IO)}
    assert not wrong, f"{module} reaches into relay's I/O: {sorted(wrong)} (only the CLI and demo compose)"


def test_the_command_line_has_no_import_cycle():
    """``outbox.cli`` assembles the groups; a group uses only the shared modules; of those,
    ``admin`` uses ``common`` and nothing else of the command line."""
    cli = {name: path for name, path in OUTBOX.items() if within(name, {"outbox.cli"})}
    groups = set(cli) - CLI_SHARED - {"outbox.cli"}
    assert {"outbox.cli.run", "outbox.cli.api", "outbox.cli.webhooks", "outbox.cli.deliveries"} <= groups
    allowed = {
        "outbox.cli.common": set(),
        "outbox.cli.render": set(),
        "outbox.cli.admin": {"outbox.cli.common"},
    }
    for name in set(cli) - {"outbox.cli"}:
        # ``from outbox.cli import admin`` names the package and the module: the module counts
        used = {n for n in imports(cli[name]) if within(n, {"outbox.cli"})} - {"outbox.cli"}
        wrong = {n for n in used if not within(n, allowed.get(name, CLI_SHARED))}
        assert not wrong, f"{name} imports {sorted(wrong)}"


def test_the_check_catches_a_wrong_way_import(tmp_path):
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def f():\n    from outbox.config import Settings\n    from relay import claim\n")
    assert {"outbox.config", "outbox.config.Settings", "relay.claim"} <= imports(wrong)
