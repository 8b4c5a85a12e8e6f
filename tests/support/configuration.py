"""Which environment variables the code reads, discovered: the settings object's fields (every
name each may be set by) and the literal ``os.environ`` / ``os.getenv`` reads in a folder."""

from __future__ import annotations

import ast
from pathlib import Path

from pydantic import AliasChoices

from outbox.config import Settings

ROOT = Path(__file__).resolve().parents[2]


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


def outbox_variables() -> set[str]:
    """What outbox itself (``outbox/``, ``relay/``) reads."""
    return settings_variables() | environ_reads("outbox") | environ_reads("relay")
