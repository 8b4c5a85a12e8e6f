"""Logging for the long-running commands (``outbox relay``, ``outbox api``, ``outbox up``): one
handler on stderr, whose formatter removes the configured secrets from every formatted record.

Two formats (``OUTBOX_LOG_FORMAT`` / ``--log-format``): ``text``, one line per record for people,
and ``json``, one JSON object per line for log aggregators, with the fields a record was given
(``extra=``: a delivery outcome's event_id, webhook_id, action, status, …) as keys of their own.

This is defence in depth: messages are written not to carry secrets, and DATABASE_URL is checked
before anything connects (``outbox.db.check_database_url``). The formatter covers what no one
wrote on purpose: a library's exception quoting its input, a traceback, a request line in
uvicorn's access log.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MASK = "***"
# What every LogRecord has: anything else on a record came from ``extra=`` and is a field of its own
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class Redactor:
    """Replaces each secret in a text with ``***``; longer secrets first, so a secret that holds
    another is not left half-shown."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Hide ``secret`` too from now on (one learnt after logging started: a generated token)."""
        if secret and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual (message, traceback, stack), then redacts the whole text."""

    def __init__(self, redact: Redactor, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
    record's ``extra=`` fields, and ``exception`` (the traceback) when there is one; every string in
    it redacted, before encoding (an escaped secret would otherwise escape redaction) and after."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        safe = {k: self._redact(v) if isinstance(v, str) else v for k, v in line.items()}
        return self._redact(json.dumps(safe, ensure_ascii=False))


def formatter(kind: str, redact: Redactor) -> logging.Formatter:
    """The formatter of ``kind`` (``text`` or ``json``, see ``outbox.config.LOG_FORMATS``)."""
    return JsonFormatter(redact) if kind == "json" else RedactingFormatter(redact)


def install(
    level: str, redact: Redactor, *, stream: TextIO | None = None, kind: str = "text"
) -> logging.Handler:
    """Make one redacting handler on ``stream`` (stderr) the root logger's only handler, writing
    ``kind`` (text or json).

    Every logger propagates to it, uvicorn's too when it is run with ``log_config=None``; uncaught
    exceptions are printed through the same redaction.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(kind, redact))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's loggers may have been given handlers of their own by an earlier configuration.
    # (a dictConfig run before, uvicorn's own included, may also have disabled them or set a level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.disabled = False
        logger.setLevel(logging.NOTSET)

    def excepthook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        logging.getLogger("outbox").critical("unexpected error", exc_info=(kind, value, tb))  # type: ignore[arg-type]

    sys.excepthook = excepthook
    return handler
