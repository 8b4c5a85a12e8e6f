"""Pacing (relay/pacing.py): when the pipeline's steps run next, and when Label Studio writes hard
enough that the relay polls instead of asking for NOTIFY. The clock is passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.pacing import (
    BUSY_POLL,
    BUSY_WRITES_PER_SECOND,
    SETTLE_CHECK,
    Due,
    WriteRate,
    claim_batch,
    next_route,
)


def test_writes_over_the_threshold_within_a_second_are_busy_and_age_out():
    rate = WriteRate()
    rate.add(BUSY_WRITES_PER_SECOND - 1, now=10.0)
    assert not rate.busy(10.0)
    rate.add(1, now=10.5)
    assert rate.busy(10.9)
    assert not rate.busy(11.2)  # the first batch is more than a second old
    assert not rate.busy(12.0)


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 400)), max_size=50))
def test_busy_counts_exactly_the_last_seconds_changes(batches):
    batches = sorted(batches)
    rate = WriteRate()
    for at, changes in batches:
        rate.add(changes, now=at)
    now = batches[-1][0] if batches else 0.0
    recent = sum(c for at, c in batches if at >= now - 1.0)
    assert rate.busy(now) == (recent >= BUSY_WRITES_PER_SECOND)


def test_routing_again_is_at_once_after_a_full_batch_soon_after_a_partial_one_else_at_the_poll():
    assert next_route(5.0, 1000, 1000, 1.0, busy=True) == 5.0
    assert next_route(5.0, 1200, 1000, 1.0, busy=True) == 5.0  # whole transactions: over the limit
    assert next_route(5.0, 3, 1000, 1.0, busy=True) == 5.0 + BUSY_POLL
    assert next_route(5.0, 3, 1000, 1.0, busy=False) == 5.0  # quiet: the next event soonest
    assert next_route(5.0, 0, 1000, 1.0, busy=True) == 6.0
    assert next_route(5.0, 0, 1000, 1.0, busy=False) == 6.0
    # a poll interval shorter than the busy poll is never lengthened
    assert next_route(5.0, 3, 1000, 0.001, busy=True) == 5.001


@given(st.floats(0, 1e6), st.integers(0, 5000), st.integers(1, 5000), st.floats(0.001, 60), st.booleans())
def test_routing_again_is_never_in_the_past_and_never_after_the_poll(now, routed, limit, poll, busy):
    following = next_route(now, routed, limit, poll, busy=busy)
    assert now <= following <= now + poll
    # under heavy writes, back to back only while batches come full
    if busy:
        assert (following == now) == (routed >= limit)
    # an empty routing waits longest
    assert next_route(now, 0, limit, poll, busy=busy) >= following


def test_ready_times_bring_build_and_claim_forward_and_then_the_poll_takes_over():
    due = Due()
    due.route = due.build = due.claim = 100.0
    due.ready(5.1, build=True, now=5.1)
    assert (due.build, due.claim) == (5.1, 5.1)
    due.ready(5.2, build=False, now=5.2)
    assert due.build == 5.1 and due.claim == 5.1
    assert due.next_ready(5.0, poll_interval=1.0) == 5.1
    assert due.next_ready(5.15, poll_interval=1.0) == 5.2
    assert due.next_ready(6.0, poll_interval=1.0) == 7.0  # nothing ahead: the next poll
    due.all_now()
    assert (due.route, due.build, due.claim) == (0.0, 0.0, 0.0)


@given(st.lists(st.floats(0, 100), max_size=30), st.floats(0, 100), st.floats(0.01, 60))
def test_the_next_look_is_never_in_the_past_and_never_after_the_poll(readies, now, poll):
    due = Due()
    for at in sorted(readies):
        due.ready(at, build=False, now=at)
    following = due.next_ready(now, poll)
    assert now < following <= now + poll or following in readies
    assert following > now


def test_a_payload_within_its_settle_delay_is_looked_at_every_settle_check_until_its_deadline():
    due = Due()
    due.route = due.build = due.claim = 100.0
    due.ready(10.1, build=True, now=10.0)  # settle 100 ms
    assert due.build == 10.0 + SETTLE_CHECK and due.claim == 10.1
    assert due.next_build(10.02, poll_interval=1.0) == 10.02 + SETTLE_CHECK
    assert due.next_build(10.098, poll_interval=1.0) == 10.1  # never past the deadline
    assert due.next_build(10.1, poll_interval=1.0) == 11.1  # past it: the poll takes over
    due.ready(20.5, build=False, now=20.0)  # nothing to build: no looking at rows
    assert due.next_build(20.1, poll_interval=1.0) == 20.5


@given(
    st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=30),
    st.floats(0, 5),
    st.floats(0, 110),
    st.floats(0.01, 60),
)
def test_the_next_build_is_ahead_and_no_later_than_a_check_while_anything_settles(routed, settle, now, poll):
    due = Due()
    for at, build in sorted(routed):  # one settle delay for all, as in a relay
        due.ready(at + settle, build=build, now=at)
    following = due.next_build(now, poll)
    assert following > now
    settling = [at + settle for at, build in routed if build and at + settle > now]
    if settling:
        assert following <= min(min(settling), now + SETTLE_CHECK)
    else:
        assert following <= now + poll or following in [at + settle for at, _ in routed]


@given(st.integers(min_value=1, max_value=100_000))
def test_a_claim_waits_for_half_the_places_never_more_than_there_are(concurrency: int) -> None:
    batch = claim_batch(concurrency)
    assert 1 <= batch <= concurrency  # a relay with every place free claims
    assert batch >= concurrency // 2  # claims are batched: not one per freed place
