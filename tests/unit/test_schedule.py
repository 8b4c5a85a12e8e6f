"""The retry policy (relay/schedule.py): pure, so the clock and randomness are passed in."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.config import DEFAULT_RETRY_SCHEDULE, parse_duration, parse_schedule
from relay.errors import ErrorClass
from relay.schedule import MAX_DELAY, decide, next_delay, parse_retry_after

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
            judge(status=status, error_class=ErrorClass.HTTP_STATUS).state,
            judge(status=status, error_class=ErrorClass.CONNECT).delay,
        ) == ("pending", 5)
    assert judge(error_class=ErrorClass.TIMEOUT, attempts_made=3).delay == 1800


def test_a_brokers_confirmation_is_delivered_its_refusals_are_retried_then_dead():
    """A broker has no status: no error class is its confirmation; nack, unroutable and no stream
    follow the schedule like any failure, and are dead after the last attempt."""
    assert judge().state == "delivered"
    for error_class in (ErrorClass.NACK, ErrorClass.UNROUTABLE, ErrorClass.NO_STREAM):
        assert (judge(error_class=error_class).state, judge(error_class=error_class).delay) == ("pending", 5)
        assert judge(error_class=error_class, attempts_made=len(DEFAULT_RETRY_SCHEDULE)).state == "dead"
    assert judge(status=500).state == "pending"  # a status outside 2xx is never a confirmation


def test_after_the_last_attempt_the_delivery_is_dead():
    assert judge(status=500, error_class=ErrorClass.HTTP_STATUS, attempts_made=8).state == "dead"
    assert judge(status=500, error_class=ErrorClass.HTTP_STATUS, attempts_made=7).state == "pending"


def test_policy_refusals_are_dead_at_once():
    assert judge(error_class=ErrorClass.TOO_LARGE).state == "dead"
    assert judge(error_class=ErrorClass.BLOCKED).state == "dead"


def test_410_disables_the_webhook_and_keeps_the_delivery():
    decision = judge(status=410, error_class=ErrorClass.HTTP_STATUS)
    assert decision.state == "pending" and decision.disable_reason == "receiver answered 410 Gone"


def test_retry_after_lengthens_the_wait_at_most_to_twice_the_delay():
    assert judge(status=429, error_class=ErrorClass.HTTP_STATUS, retry_after=7).delay == 7
    assert judge(status=503, error_class=ErrorClass.HTTP_STATUS, retry_after=3600).delay == 10
    assert judge(status=429, error_class=ErrorClass.HTTP_STATUS, retry_after=1).delay == 5  # never shorter
    assert judge(status=500, error_class=ErrorClass.HTTP_STATUS, retry_after=60).delay == 5  # only 429/503
    assert (
        judge(status=429, error_class=ErrorClass.HTTP_STATUS, attempts_made=8, retry_after=60).state == "dead"
    )


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
    assert judge(error_class=ErrorClass.INVALID_URL).state == "dead"


# -- issue 9 item 1: a delay's type and range never depend on the inputs ------------------------

schedules = st.lists(
    st.none()  # a NULL in a webhook's integer[] schedule
    | st.integers(min_value=0, max_value=2**31 - 1)
    | st.floats(min_value=0, max_value=1e15)
    | st.sampled_from([float("inf"), float("nan"), 1e300]),
    min_size=1,
    max_size=10,
)
retry_afters = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)
http_dates = st.datetimes(timezones=st.just(UTC)).map(
    lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")
) | st.sampled_from(
    ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"]
)
headers = (
    st.none()
    | st.text()
    | st.text(st.characters(exclude_categories=()))
    | st.integers(min_value=0).map(str)
    | st.sampled_from(["9" * 400, "²", "١٢", " 7 ", "-5", "1e9", "7.5", "0x10", "\x00"])
    | http_dates
)


@given(
    schedule=schedules,
    attempts_made=st.integers(min_value=0, max_value=12),
    jitter=st.floats(min_value=0, max_value=0.999),
    seed=st.integers(),
    retry_after=retry_afters,
    status=st.sampled_from([None, 200, 410, 429, 500, 503]),
)
def test_every_delay_is_a_finite_float_within_bounds(
    schedule, attempts_made, jitter, seed, retry_after, status
):
    """Issue 9 item 1: an int delay (Retry-After on an integer schedule) beside float ones made
    psycopg refuse the batch; now every delay is a float in [0, MAX_DELAY], whatever comes in."""
    decision = decide(
        status=status,
        error_class=None if status == 200 else "http_status",
        attempts_made=attempts_made,
        schedule=schedule,
        jitter=jitter,
        rng=random.Random(seed),
        retry_after=retry_after,
    )
    if decision.state == "pending":
        assert type(decision.delay) is float
        assert 0.0 <= decision.delay <= MAX_DELAY
    else:
        assert decision.delay is None


@given(header=headers, now=st.datetimes(timezones=st.just(UTC)))
def test_retry_after_of_anything_is_none_or_a_finite_float(header, now):
    """Issue 9 item 1: garbage, huge numbers and dates far away never raise, never give inf."""
    seconds = parse_retry_after(header, now)
    assert seconds is None or (type(seconds) is float and 0.0 <= seconds <= MAX_DELAY)


def test_retry_after_on_an_integer_schedule_is_a_float():
    """Issue 9 item 1: the case that stopped the recorder (``retry_schedule = '{0,3,3}'``)."""
    delay = next_delay([0, 3, 3], 1, 0.0, random.Random(1), retry_after=7.0)
    assert delay == 6.0 and type(delay) is float
    assert parse_retry_after("²", NOW) is None  # str.isdigit() says yes, float() says no


def test_a_null_step_of_a_webhook_schedule_counts_as_no_wait():
    """Issue 9 item 1: ``retry_schedule = '{0,NULL}'`` passes the webhook's constraint; the delay
    computed from it raised and took the relay down."""
    assert next_delay([0, None], 1, 0.2, random.Random(1)) == 0.0


def test_every_error_class_is_documented_and_every_documented_one_exists():
    """docs/delivery.md's table is the users' list of error classes: kept equal to the enum."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "delivery.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert documented == {e.value for e in ErrorClass}
