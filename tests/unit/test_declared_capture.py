"""A captured table is declared in three places that must agree: its trigger in sql/capture.sql
(the generic capture_rows / capture_row functions, no hand-written one), its entry in
relay/events.py DECLARED, and its body in relay/payloads.py. This keeps them equal."""

from __future__ import annotations

import re
from pathlib import Path

from outbox import sql
from relay import payloads
from relay.events import DECLARED

OPS = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


def _generic_triggers() -> set[tuple[str, str]]:
    """(table, operation) of every trigger capture.sql attaches to a generic capture function."""
    text = sql.read("capture.sql")
    found = set()
    for m in re.finditer(
        r"create trigger \w+ after (insert|update|delete)(?: of [\w, ]+)? on public\.(\w+)\s+"
        r"(?:referencing[^;]*?)?for each (?:statement|row)(?: when \([^;]*?\))?\s+execute function "
        r"outbox\.(capture_rows?)\(",
        text,
        flags=re.S,
    ):
        found.add((m.group(2), OPS[m.group(1)]))
    return found


def test_every_generic_trigger_is_declared_and_every_declaration_has_its_trigger():
    assert _generic_triggers() == {(d.table, d.op) for d in DECLARED}


def test_every_declared_action_has_a_body():
    source = Path(payloads.__file__).read_text()
    for declared in DECLARED:
        assert f"Action.{declared.action.name}" in source, declared
