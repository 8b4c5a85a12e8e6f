"""Logging for the long-running commands (``outbox relay``, ``outbox api``, ``outbox up``): one
handler on stderr, whose formatter removes the configured secrets from every formatted record.

This is defence in depth: messages are written not to carry secrets, and DATABASE_URL is checked
before anything connects (``outbox.db.check_database_url``). The formatter covers what no one
wrote on purpose: a library's exception quoting its input, a traceback, a request line in
uvicorn's access log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MASK = "***"


class Redactor:
    """Replaces each secret in a text with ``***``; longer secrets first, so a secret that holds
    another is not left half-shown."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

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


def install(level: str, redact: Redactor, *, stream: TextIO | None = None) -> logging.Handler:
    """Make one redacting handler on ``stream`` (stderr) the root logger's only handler.

    Every logger propagates to it, uvicorn's too when it is run with ``log_config=None``; uncaught
    exceptions are printed through the same redaction.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(redact))
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
