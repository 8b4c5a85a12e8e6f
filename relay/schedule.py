"""Retry policy: what happens after an attempt (pure; the clock and randomness are passed in).

Success is a 2xx. Anything else, a timeout or a connection error schedules the next attempt after
the delay the schedule gives for it, with jitter; ``Retry-After`` on 429/503 lengthens that wait, at
most to twice the scheduled delay, and never adds attempts. After the last attempt the delivery is
dead: kept, visible, redeliverable. Some failures cannot get better by waiting and are dead at once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

# Failures that no retry can fix: the request itself is refused by policy.
PERMANENT_ERRORS = frozenset({"too_large", "blocked", "invalid_url"})

State = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True)
class Decision:
    state: State
    # seconds until the next attempt, for state "pending"
    delay: float | None = None
    # set when the webhook must be disabled
    disable_reason: str | None = None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def next_delay(
    schedule: Sequence[float],
    attempts_made: int,
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until attempt ``attempts_made + 1``, or None when the schedule has no more."""
    if attempts_made >= len(schedule):
        return None
    scheduled = schedule[attempts_made]
    delay = scheduled * (1 + rng.uniform(-jitter, jitter))
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, 2 * scheduled)
    return max(0.0, delay)


def decide(
    *,
    status: int | None,
    error_class: str | None,
    attempts_made: int,
    schedule: Sequence[float],
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> Decision:
    """The delivery's state after its ``attempts_made``-th attempt ended this way."""
    if error_class is None and status is not None and 200 <= status < 300:
        return Decision("delivered")
    if error_class in PERMANENT_ERRORS:
        return Decision("dead")
    disable = "receiver answered 410 Gone" if status == 410 else None
    honoured = retry_after if status in (429, 503) else None
    delay = next_delay(schedule, attempts_made, jitter, rng, honoured)
    if delay is None:
        return Decision("dead", disable_reason=disable)
    return Decision("pending", delay, disable)
