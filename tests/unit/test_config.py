"""Reading configuration (outbox/config.py) and checking DATABASE_URL (outbox/db.py): what a user
sets is named in errors, and no error ever carries a DSN's password (issue 9 items 7 and 8)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox import db
from outbox.config import variable_name

PASSWORD = "Sup3rS3cretPW"


@pytest.mark.parametrize(
    ("field", "env", "named"),
    [
        ("retry_schedule", {}, "OUTBOX_RETRY_SCHEDULE"),
        ("webhook_timeout", {}, "WEBHOOK_TIMEOUT"),
        ("webhook_batch_size", {}, "WEBHOOK_BATCH_SIZE"),
        ("database_url", {}, "DATABASE_URL"),
        ("database_url", {"DATABASE_URL": "x"}, "DATABASE_URL"),
        ("database_url", {"OUTBOX_DATABASE_URL": "x"}, "OUTBOX_DATABASE_URL"),
        ("admin_token", {}, "OUTBOX_ADMIN_TOKEN"),
    ],
)
def test_variable_name_is_what_the_user_sets(monkeypatch, field, env, named):
    """issue 9 item 8: errors name `OUTBOX_RETRY_SCHEDULE`, not `retry_schedule`."""
    for name in ("DATABASE_URL", "OUTBOX_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert variable_name(field) == named


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        (f"mysql://u:{PASSWORD}@127.0.0.1/x", "scheme"),
        (f"postgresql://u:{PASSWORD}%zz@127.0.0.1/x", "percent"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1/x?sslmode=require&{PASSWORD}=1", "parameter"),
        (f"host=127.0.0.1 password='{PASSWORD}", "unterminated quoted"),
        (f"just {PASSWORD}", "cannot be parsed"),
        ("", "empty"),
    ],
)
def test_a_bad_database_url_names_the_problem_not_the_value(dsn, problem):
    """issue 9 item 7: psycopg's own messages quote the whole string, password included."""
    with pytest.raises(db.DatabaseUrlError) as raised:
        db.check_database_url(dsn, "DATABASE_URL")
    message = str(raised.value)
    assert message.startswith("DATABASE_URL: ") and problem in message
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgres://u:p%40ss@db/labelstudio?sslmode=require",
        "postgresql:///labelstudio?host=/var/run/postgresql",
        "host=127.0.0.1 port=5432 dbname=x user=u password=p",
    ],
)
def test_good_database_urls_pass(dsn):
    db.check_database_url(dsn, "DATABASE_URL")


# Passwords as people write them (and as generators produce them): printable text with the
# characters URLs and key=value strings treat specially, after a marker no message contains.
passwords = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=40).map(
    lambda tail: "Zq9" + tail
)


@given(passwords)
def test_a_url_password_is_found_encoded_and_decoded(password):
    """issue 9 item 7: the redactor gets the password as written in the URL and as decoded."""
    dsn = f"postgresql://u:{quote(password, safe='')}@127.0.0.1:5432/x"
    db.check_database_url(dsn, "DATABASE_URL")
    secrets = db.dsn_secrets(dsn)
    assert password in secrets and quote(password, safe="") in secrets


@given(passwords)
def test_a_raw_url_password_is_never_in_the_error_and_always_redacted(password):
    """issue 9 item 7: a URL with a raw `%`, `@`, `/` or `?` in its password may not parse; it is
    refused without the password, and the redactor still knows the password as written."""
    dsn = f"postgresql://u:{password}@127.0.0.1:5432/x"
    try:
        db.check_database_url(dsn, "DATABASE_URL")
    except db.DatabaseUrlError as exc:
        assert password not in str(exc)
    assert password in db.dsn_secrets(dsn)


@given(passwords)
def test_a_key_value_password_is_found(password):
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    dsn = f"host=127.0.0.1 dbname=x password='{escaped}'"
    db.check_database_url(dsn, "DATABASE_URL")
    assert password in db.dsn_secrets(dsn)
