"""Where the SQL lives: the ``sql/`` folder, and the named queries of ``sql/queries.sql`` (and of
the other files written the same way: ``sql/doctor.sql``).

Installed wheels carry ``sql/`` as ``outbox/_sql``; a source checkout reads the top-level folder.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class QueryNotFound(KeyError):
    """A named query that its file (``sql/queries.sql``) does not define."""


@cache
def sql_dir() -> Path:
    """The folder holding migrations, capture.sql and queries.sql."""
    for candidate in (_PACKAGE / "_sql", _PACKAGE.parent / "sql"):
        if (candidate / "queries.sql").is_file():
            return candidate
    raise FileNotFoundError("outbox's sql/ folder is missing from this installation")


def read(name: str) -> str:
    """The text of one file in ``sql/``."""
    return (sql_dir() / name).read_text(encoding="utf-8")


@cache
def _queries(file: str) -> dict[str, str]:
    text = read(file)
    names = list(_NAME.finditer(text))
    queries: dict[str, str] = {}
    for match, following in zip(names, [*names[1:], None], strict=True):
        end = following.start() if following else len(text)
        queries[match.group(1)] = text[match.end() : end].strip()
    return queries


def query(name: str, file: str = "queries.sql") -> str:
    """One named block (``-- name: <name>``) of ``sql/queries.sql``, or of ``file``."""
    try:
        return _queries(file)[name]
    except KeyError:
        raise QueryNotFound(name) from None
