"""relay/counters.py: when a project's counters may be reused (pure, the clock passed in)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.counters import REUSE_FACTOR, REUSE_MAX, SLOW_COUNT, CounterCache, reuse_for

took = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)
later = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)


@given(took)
def test_a_quick_count_is_never_reused_a_slow_one_for_at_most_reuse_max(seconds):
    window = reuse_for(seconds)
    if seconds < SLOW_COUNT:
        assert window == 0.0
    else:
        assert 0.0 < window <= REUSE_MAX
        assert window == min(REUSE_MAX, seconds * REUSE_FACTOR)


@given(took, took)
def test_a_slower_count_is_reused_at_least_as_long(a, b):
    slower, quicker = max(a, b), min(a, b)
    assert reuse_for(slower) >= reuse_for(quicker)


@given(took, later)
def test_the_cache_gives_back_counters_exactly_while_they_may_be_reused(seconds, elapsed):
    cache = CounterCache()
    cache.add(7, {"task_number": 3}, at=100.0, took=seconds)
    found = cache.fresh([7, 8], 100.0 + elapsed)
    if elapsed < reuse_for(seconds):
        assert found == {7: {"task_number": 3}}
        assert len(cache) == 1
    else:
        assert found == {}
        assert len(cache) == 0  # forgotten once stale: the cache holds only what may be reused


def test_a_new_count_replaces_the_old_one():
    cache = CounterCache()
    cache.add(1, {"task_number": 1}, at=0.0, took=1.0)
    cache.add(1, {"task_number": 2}, at=1.0, took=1.0)
    assert cache.fresh([1], 2.0) == {1: {"task_number": 2}}
