"""One table of webhook values, run through the database's checks (sql/0001_schema.sql,
0004_webhook_values.sql) and the API's validation (outbox.admin.models / validation) alike: a value
one side takes and the other refuses is a rule written twice that drifted.

The rules live in SQL (the last word, for plain SQL users) and in Python (the same rules first, with
messages per field): SQL cannot import Python's constants, so this table is what keeps them equal.
Known differences are listed as strict xfails: fixing one makes its case pass, and the xfail must go.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from outbox.admin.models import WebhookCreate
from relay.signing import generate_secret

OK = True
NO = False


def secret_of(n: int) -> str:
    return "whsec_" + base64.b64encode(b"k" * n).decode()


CASES: list[tuple[str, Any, bool]] = [
    # secrets: the Standard Webhooks format, 24 to 64 bytes
    ("secret", generate_secret(), OK),
    ("secret", secret_of(24), OK),
    ("secret", secret_of(64), OK),
    ("secret", secret_of(23), NO),
    ("secret", secret_of(65), NO),
    ("secret", "whsec_not base64!", NO),
    ("secret", "sk_" + base64.b64encode(b"k" * 32).decode(), NO),
    ("secret", "whsec_", NO),
    # headers: an object of at most 10 string values, names of letters, digits, - and _
    ("headers", {}, OK),
    ("headers", {"X-Token": "a", "Authorization": "Bearer b"}, OK),
    ("headers", {f"H{i}": "v" for i in range(10)}, OK),
    ("headers", {f"H{i}": "v" for i in range(11)}, NO),
    ("headers", {"Bad Name": "v"}, NO),
    ("headers", {"X": 1}, NO),
    ("headers", {"X": "a\nb"}, NO),
    ("headers", {"Host": "x"}, NO),
    ("headers", {"webhook-signature": "x"}, NO),
    ("headers", ["X"], NO),
    # max_concurrency: 1 to 1000
    ("max_concurrency", 1, OK),
    ("max_concurrency", 1000, OK),
    ("max_concurrency", 0, NO),
    ("max_concurrency", 1001, NO),
    # timeout: seconds, up to 300
    ("timeout", 300, OK),
    ("timeout", 0.1, OK),
    ("timeout", 301, NO),
    ("timeout", 0, NO),
    # retry_schedule: 1 to 50 non-negative delays
    ("retry_schedule", [0], OK),
    ("retry_schedule", [0] * 50, OK),
    ("retry_schedule", [0] * 51, NO),
    ("retry_schedule", [], NO),
    ("retry_schedule", [-1], NO),
    # rate_limit: positive
    ("rate_limit", 1.5, OK),
    ("rate_limit", 0, NO),
    # urls
    ("url", "https://example.com/x", OK),
    ("url", "http://10.0.0.1:8080/hook", OK),
    ("url", "ftp://example.com/x", NO),
    ("url", "https://" + "a" * 2040 + ".com", NO),
]
# Where the two sides differed until migration 0009: kept as cases, and a difference that comes
# back would be listed here as a strict xfail with why.
DRIFT: list[tuple[str, Any, str]] = []
CASES += [
    ("timeout", 0.05, NO),
    ("rate_limit", 0.001, NO),
    ("rate_limit", 20_000, NO),
    ("rate_limit", 10_000, OK),
    ("retry_schedule", [31 * 86400], NO),
    ("retry_schedule", [30 * 86400], OK),
]
CASES += [(field, value, NO) for field, value, _ in DRIFT]
DRIFTED = {(field, repr(value)): why for field, value, why in DRIFT}


def _api_takes(field: str, value: Any) -> bool:
    data = {"url": "https://example.com/x", "project": 1, field: value}
    try:
        WebhookCreate.model_validate(data)
    except ValidationError:
        return False
    return True


def _sql_takes(conn: psycopg.Connection[Any], field: str, value: Any) -> bool:
    row: dict[str, Any] = {
        "organization_id": 1,
        "project_id": 1,
        "url": "https://example.com/x",
        field: value,
    }
    if field == "headers":
        row["headers"] = Jsonb(value)
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    try:
        with conn.transaction():
            conn.execute(f"insert into outbox.webhook ({columns}) values ({marks})", list(row.values()))
            raise _Rollback
    except _Rollback:
        return True
    except (psycopg.errors.CheckViolation, psycopg.errors.NumericValueOutOfRange):
        return False


class _Rollback(Exception):
    pass


@pytest.fixture(scope="module")
def checked(postgres_server, templates):
    """The database's verdict on every case, in one database for the module."""
    from tests.conftest import _create_database, _drop_database

    name = f"test_rules_{uuid.uuid4().hex[:8]}"
    url = _create_database(postgres_server, name, template=templates.installed)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("insert into organization (id, title) values (1, 'org')")
            conn.execute("insert into project (id, title, organization_id) values (1, 'p', 1)")
            yield {(f, repr(v)): _sql_takes(conn, f, v) for f, v, _ in CASES}
    finally:
        _drop_database(postgres_server, name)


def _id(case: tuple[str, Any, bool]) -> str:
    return f"{case[0]}={repr(case[1])[:40]}"


def _params() -> list[Any]:
    params = []
    for case in CASES:
        why = DRIFTED.get((case[0], repr(case[1])))
        marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
        params.append(pytest.param(case, marks=marks, id=_id(case)))
    return params


@pytest.mark.parametrize("case", _params())
def test_the_database_and_the_api_agree(case, checked):
    field, value, expected = case
    assert _api_takes(field, value) is expected, "the API"
    assert checked[(field, repr(value))] is expected, "the database"
