"""Retry policy: what happens after an attempt (pure; the clock and randomness are passed in).

Success is a 2xx, or a broker's confirmation (no status, no error class). Anything else, a
timeout or a connection error schedules the next attempt after the delay the schedule gives for
it, with jitter; ``Retry-After`` on 429/503 lengthens that wait, at most to twice the scheduled
delay, and never adds attempts. After the last attempt the delivery is
dead: kept, visible, redeliverable. Some failures cannot get better by waiting and are dead at once.

Every delay is a float within [0, MAX_DELAY] whatever the schedule (floats from settings, integers
from a webhook's own schedule), the jitter or the receiver's ``Retry-After`` hold: a delay whose
type or range depended on an input once stopped every result from being recorded.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from relay.errors import ErrorClass

# The longest wait between attempts (ten years): now() plus it stays a timestamp PostgreSQL can
# store, and a schedule step longer than that is a typo.
MAX_DELAY = 10 * 365 * 86400.0

# Failures that no retry can fix: the request itself is refused by policy, or has no body to send.
PERMANENT_ERRORS = frozenset(
    {ErrorClass.TOO_LARGE, ErrorClass.BLOCKED, ErrorClass.INVALID_URL, ErrorClass.PAYLOAD_MISSING}
)

# delta-seconds (RFC 9110): ASCII digits only (str.isdigit() also accepts "²", which float() refuses)
_DELTA_SECONDS = re.compile(r"[0-9]+")

State = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True)
class Decision:
    state: State
    # seconds until the next attempt, for state "pending"
    delay: float | None = None
    # set when the webhook must be disabled
    disable_reason: str | None = None


def seconds(value: float | None) -> float:
    """A wait as a float within [0, MAX_DELAY]. NaN, and a NULL step of a webhook's own schedule
    (its constraint lets one through), count as no wait."""
    if value is None:
        return 0.0
    try:
        wait = float(value)
    except OverflowError:  # an int beyond any float
        return MAX_DELAY
    if math.isnan(wait):
        return 0.0
    return min(max(0.0, wait), MAX_DELAY)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None; never
    raises, whatever the receiver sent."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return seconds(float(value) if len(value) < 20 else MAX_DELAY)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return seconds((when - now).total_seconds())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def next_delay(
    schedule: Sequence[float | None],
    attempts_made: int,
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until attempt ``attempts_made + 1``, or None when the schedule has no more."""
    if attempts_made >= len(schedule):
        return None
    scheduled = seconds(schedule[attempts_made])
    delay = scheduled * (1 + rng.uniform(-jitter, jitter))
    if retry_after is not None and seconds(retry_after) > delay:
        delay = min(seconds(retry_after), 2 * scheduled)
    return seconds(delay)


def decide(
    *,
    status: int | None,
    error_class: ErrorClass | None,
    attempts_made: int,
    schedule: Sequence[float | None],
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> Decision:
    """The delivery's state after its ``attempts_made``-th attempt ended this way."""
    if error_class is None and (status is None or 200 <= status < 300):
        return Decision("delivered")  # a 2xx, or a broker's confirmation (brokers have no status)
    if error_class in PERMANENT_ERRORS:
        return Decision("dead")
    disable = "receiver answered 410 Gone" if status == 410 else None
    honoured = retry_after if status in (429, 503) else None
    delay = next_delay(schedule, attempts_made, jitter, rng, honoured)
    if delay is None:
        return Decision("dead", disable_reason=disable)
    return Decision("pending", delay, disable)
