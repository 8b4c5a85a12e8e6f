"""Pacing (relay/pacing.py): when the pipeline's steps run next, and when Label Studio writes hard
enough that the relay polls instead of asking for NOTIFY. The clock is passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.pacing import BUSY_WRITES_PER_SECOND, Due, WriteRate


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


def test_ready_times_bring_build_and_claim_forward_and_then_the_poll_takes_over():
    due = Due()
    due.route = due.build = due.claim = 100.0
    due.ready(5.1, build=True)
    assert (due.build, due.claim) == (5.1, 5.1)
    due.ready(5.2, build=False)
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
        due.ready(at, build=False)
    following = due.next_ready(now, poll)
    assert now < following <= now + poll or following in readies
    assert following > now
