"""The CLI's log handler (outbox/logs.py): configured secrets never reach a log line, a traceback
included (issue 9 item 7)."""

from __future__ import annotations

import io
import json
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


def _capture_json(secrets: list[str]) -> tuple[logging.Logger, io.StringIO, Redactor]:
    stream = io.StringIO()
    redact = Redactor(secrets)
    install("INFO", redact, stream=stream, kind="json")
    return logging.getLogger("outbox.test"), stream, redact


def test_json_lines_carry_the_extra_fields_and_no_secret():
    """issue 11 item 5: one object per line; a secret JSON would escape (a quote, a backslash,
    a non-ASCII letter) is redacted before encoding, and a token learnt later (Redactor.add) too."""
    odd = 'pa"ss\\wörd'
    log, stream, redact = _capture_json([odd])
    redact.add("later-token-123456")
    try:
        raise RuntimeError(f"refused {odd}\nsecond line")
    except RuntimeError:
        log.exception(
            "failed with %s and %s", odd, "later-token-123456", extra={"webhook_id": 7, "note": odd}
        )
    log.info("plain", extra={"status": None, "duration_ms": 1.5})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert (
        first["message"] == "failed with *** and ***" and first["webhook_id"] == 7 and first["note"] == "***"
    )
    assert "RuntimeError: refused ***" in first["exception"]
    assert first["level"] == "ERROR" and first["logger"] == "outbox.test" and first["time"].endswith("+00:00")
    assert second["status"] is None and second["duration_ms"] == 1.5
    text = stream.getvalue()
    for part in (odd, json.dumps(odd)[1:-1], "later-token-123456"):
        assert part not in text
