"""Deliveries as the relay handles them: what was claimed, what is sent, what is recorded (pure).

Headers follow docs/design.md §7: Content-Type, User-Agent, the webhook's static headers, and the
Standard Webhooks trio when the webhook has a secret. The attempt log keeps the request headers with
every static header value masked (they are often credentials). What is recorded of a result passes
through ``record_of`` first: texts from receivers and exceptions, numbers from settings and
schedules, all made to fit their columns in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from relay.errors import ErrorClass
from relay.schedule import MAX_DELAY, State
from relay.signing import signature_header

MASK = "***"
# the first bytes of a response body kept in the attempt log
RESPONSE_BODY_LIMIT = 4096


@dataclass(frozen=True)
class Request:
    """One POST a sender makes."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float


@dataclass(frozen=True)
class Attempt:
    """What one request of a delivery did."""

    status: int | None
    # None on success
    error_class: ErrorClass | None
    error: str | None
    response_body: str
    duration_ms: float
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_class is None


def message_id(uuid: UUID) -> str:
    """A delivery's ``webhook-id`` (Standard Webhooks' ``msg_`` form), from its message_id column:
    what the relay sends and what the admin API and console show."""
    return f"msg_{uuid.hex}"


@dataclass(frozen=True)
class Claimed:
    """A delivery this relay holds a lease on, with what sending it needs."""

    id: int
    message_id: UUID
    event_id: int
    chunk: int
    webhook_id: int
    attempts: int
    action: str
    url: str
    headers: Mapping[str, str]
    secret: str | None
    previous_secret: str | None
    send_payload: bool
    timeout: float | None
    retry_schedule: Sequence[float] | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Claimed:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def webhook_message_id(self) -> str:
        """The ``webhook-id``: stable across every attempt of this delivery."""
        return message_id(self.message_id)

    @property
    def attempt_number(self) -> int:
        """The number of the attempt about to be made (1-based)."""
        return self.attempts + 1


@dataclass(frozen=True)
class Judged:
    """One finished attempt of a delivery, and what it means for it (relay.schedule.decide)."""

    delivery: Claimed
    state: State
    delay: float | None
    started_at: datetime
    attempt: Attempt
    logged_headers: Mapping[str, str]
    disable_reason: str | None = None


def request_headers(
    delivery: Claimed, body: bytes, timestamp: int, user_agent: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers to send, headers to log): the logged ones have static header values masked."""
    sent = {"Content-Type": "application/json", "User-Agent": user_agent}
    logged = dict(sent)
    for name, value in delivery.headers.items():
        sent[name] = value
        logged[name] = MASK
    # webhook-id and webhook-timestamp always (receivers dedupe on the id); a signature when the
    # webhook has a secret, two while a rotated-out secret is in its grace period.
    trio = {"webhook-id": delivery.webhook_message_id, "webhook-timestamp": str(timestamp)}
    if delivery.secret:
        secrets = [delivery.secret]
        if delivery.previous_secret and delivery.previous_secret != delivery.secret:
            secrets.append(delivery.previous_secret)
        trio["webhook-signature"] = signature_header(secrets, delivery.webhook_message_id, timestamp, body)
    sent.update(trio)
    logged.update(trio)
    return sent, logged


# -- what reaches the database ---------------------------------------------------------------

INT4_MAX = 2**31 - 1
ERROR_CHARS = 2000
ERROR_CLASS_CHARS = 64
HEADER_CHARS = 1000
STATES: frozenset[State] = frozenset({"pending", "delivered", "dead"})
# The wait given to an attempt whose result had no usable delay, or could not be recorded.
FALLBACK_DELAY = 60.0


@dataclass(frozen=True)
class AttemptRecord:
    """One result as its columns take it: the one place where values from receivers, settings and
    the relay's own code are made to fit (no NUL, no lone surrogate, finite numbers in range)."""

    delivery_id: int
    attempt: int
    webhook_id: int
    state: State
    delay: float
    started_at: datetime
    duration_ms: float
    status: int | None
    ok: bool
    error_class: str | None
    error: str | None
    response_body: str
    request_headers: str  # a JSON object
    disable_reason: str | None


def record_of(result: Judged) -> AttemptRecord:
    """What is written for ``result``; never raises for any value a ``Judged`` can hold."""
    attempt = result.attempt
    state: State = result.state if result.state in STATES else "pending"
    return AttemptRecord(
        delivery_id=int(result.delivery.id),
        attempt=int(result.delivery.attempt_number),
        webhook_id=int(result.delivery.webhook_id),
        state=state,
        delay=_delay(result.delay),
        started_at=_timestamp(result.started_at),
        duration_ms=_finite(attempt.duration_ms),
        status=_int4(attempt.status),
        ok=attempt.error_class is None,
        error_class=_optional_text(attempt.error_class, ERROR_CLASS_CHARS),
        error=_optional_text(attempt.error, ERROR_CHARS),
        response_body=clean_text(attempt.response_body, RESPONSE_BODY_LIMIT),
        request_headers=_headers(result.logged_headers),
        disable_reason=_optional_text(result.disable_reason, ERROR_CHARS),
    )


def unrecordable(result: Judged, reason: str) -> Judged:
    """The same attempt as an internal error, for a result the database refused: the delivery keeps
    the state its attempt earned; the response's status, body and headers are left out (one of them
    was probably what the database refused)."""
    attempt = Attempt(
        _int4(result.attempt.status),
        ErrorClass.INTERNAL,
        f"the relay could not record this attempt's attempt ({reason})",
        "",
        _finite(result.attempt.duration_ms),
    )
    return Judged(result.delivery, result.state, result.delay, _timestamp(result.started_at), attempt, {})


def clean_text(value: object, limit: int) -> str:
    """``value`` as text PostgreSQL stores: no NUL, invalid UTF-8 (lone surrogates) replaced, at
    most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _optional_text(value: object, limit: int) -> str | None:
    return None if value is None else clean_text(value, limit)


def _finite(value: object) -> float:
    """A non-negative finite float (0.0 for anything else)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) and number >= 0 else 0.0


def _delay(value: object) -> float:
    """Seconds to the next attempt, within [0, MAX_DELAY]; FALLBACK_DELAY when there is none."""
    if value is None:
        return FALLBACK_DELAY
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return FALLBACK_DELAY
    except OverflowError:
        return MAX_DELAY
    if math.isnan(seconds):
        return FALLBACK_DELAY
    return min(max(0.0, seconds), MAX_DELAY)


def _int4(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT4_MAX:
        return None
    return value


def _timestamp(value: object) -> datetime:
    if not isinstance(value, datetime):
        return datetime.now(UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _headers(headers: Mapping[str, str]) -> str:
    cleaned = {
        clean_text(name, HEADER_CHARS): clean_text(value, HEADER_CHARS) for name, value in headers.items()
    }
    return orjson.dumps(cleaned).decode()
