"""The retry policy (relay/schedule.py): pure, so the clock and randomness are passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from outbox.config import DEFAULT_RETRY_SCHEDULE, parse_duration, parse_schedule
from relay.schedule import decide, next_delay, parse_retry_after

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def judge(status=None, error_class=None, attempts_made=1, retry_after=None, jitter=0.0):
    return decide(
        status=status,
        error_class=error_class,
        attempts_made=attempts_made,
        schedule=DEFAULT_RETRY_SCHEDULE,
        jitter=jitter,
        rng=random.Random(7),
        retry_after=retry_after,
    )


def test_default_schedule_is_eight_attempts_over_about_27_and_a_half_hours():
    assert DEFAULT_RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert sum(DEFAULT_RETRY_SCHEDULE) / 3600 == pytest.approx(27.6, abs=0.1)


def test_2xx_is_delivered_anything_else_is_retried_on_schedule():
    assert judge(status=204).state == "delivered"
    for status in (301, 400, 404, 500):
        assert (
            judge(status=status, error_class="http_status").state,
            judge(status=status, error_class="x").delay,
        ) == ("pending", 5)
    assert judge(error_class="timeout", attempts_made=3).delay == 1800


def test_after_the_last_attempt_the_delivery_is_dead():
    assert judge(status=500, error_class="http_status", attempts_made=8).state == "dead"
    assert judge(status=500, error_class="http_status", attempts_made=7).state == "pending"


def test_policy_refusals_are_dead_at_once():
    assert judge(error_class="too_large").state == "dead"
    assert judge(error_class="blocked").state == "dead"


def test_410_disables_the_webhook_and_keeps_the_delivery():
    decision = judge(status=410, error_class="http_status")
    assert decision.state == "pending" and decision.disable_reason == "receiver answered 410 Gone"


def test_retry_after_lengthens_the_wait_at_most_to_twice_the_delay():
    assert judge(status=429, error_class="http_status", retry_after=7).delay == 7
    assert judge(status=503, error_class="http_status", retry_after=3600).delay == 10
    assert judge(status=429, error_class="http_status", retry_after=1).delay == 5  # never shorter
    assert judge(status=500, error_class="http_status", retry_after=60).delay == 5  # only 429/503
    assert judge(status=429, error_class="http_status", attempts_made=8, retry_after=60).state == "dead"


def test_jitter_stays_within_twenty_percent():
    rng = random.Random(1)
    delays = [next_delay((0, 100), 1, 0.2, rng) for _ in range(1000)]
    assert min(delays) >= 80 and max(delays) <= 120 and max(delays) - min(delays) > 30


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Sun, 22 Nov 2026 12:01:00 GMT", 60.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_takes_seconds_or_an_http_date(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


def test_durations_and_schedules_parse_the_documented_forms():
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_schedule("0,5s,5m,30m,2h,5h,10h,10h") == DEFAULT_RETRY_SCHEDULE
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("a while")


def test_a_url_the_client_cannot_use_is_dead_at_once():
    assert judge(error_class="invalid_url").state == "dead"
