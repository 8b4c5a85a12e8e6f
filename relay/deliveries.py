"""Deliveries as the relay handles them: what was claimed, what is sent, what is recorded (pure).

Headers follow docs/design.md §7: Content-Type, User-Agent, the webhook's static headers, and the
Standard Webhooks trio when the webhook has a secret. The attempt log keeps the request headers with
every static header value masked (they are often credentials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from relay.schedule import State
from relay.sender import Outcome
from relay.signing import signature_header

MASK = "***"


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
        return f"msg_{self.message_id.hex}"

    @property
    def attempt(self) -> int:
        """The number of the attempt about to be made (1-based)."""
        return self.attempts + 1


@dataclass(frozen=True)
class Result:
    """One finished attempt and what it means for its delivery."""

    delivery: Claimed
    state: State
    delay: float | None
    started_at: datetime
    outcome: Outcome
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
