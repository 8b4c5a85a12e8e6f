"""The CLI's log handler (outbox/logs.py): configured secrets never reach a log line, a traceback
included (issue 9 item 7)."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.logs import Redactor, install

SECRET = "Sup3rS3cretPW"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """install() configures the whole process: give the rest of the session its logging back."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    uvicorn = {name: list(logging.getLogger(name).handlers) for name in ("uvicorn", "uvicorn.error")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hook
    for name, kept in uvicorn.items():
        logging.getLogger(name).handlers[:] = kept


def _capture(secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    install("INFO", Redactor(secrets), stream=stream)
    return logging.getLogger("outbox.test"), stream


def test_messages_arguments_and_tracebacks_are_redacted():
    log, stream = _capture([SECRET, "tok-en-123"])
    log.info("connecting with %s", f"password={SECRET}")
    try:
        raise RuntimeError(f"invalid dsn: postgresql://u:{SECRET}@h/x")
    except RuntimeError:
        log.exception("failed for tok-en-123")
    logging.getLogger("uvicorn.access").info('"GET /?t=%s HTTP/1.1" 200', "tok-en-123")
    output = stream.getvalue()
    assert SECRET not in output and "tok-en-123" not in output
    assert "password=***" in output and "Traceback" in output and "RuntimeError" in output
    assert "GET /?t=*** HTTP/1.1" in output


def test_a_longer_secret_is_redacted_before_a_shorter_one_inside_it():
    redactor = Redactor(["abcd", "xxabcdxx"])
    assert redactor("1 xxabcdxx 2 abcd") == "1 *** 2 ***"


def test_empty_secrets_are_ignored():
    assert Redactor(["", None]).__call__("text") == "text"


@given(st.text(min_size=1).filter(lambda s: "*" not in s), st.text(), st.text())
def test_no_secret_survives(secret, before, after):
    assert secret not in Redactor([secret])(before + secret + after)
