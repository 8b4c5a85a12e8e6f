"""Chunking by rows and bytes (issue 9 item 3): properties over generated row sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import chunks

sizes_st = st.lists(st.integers(min_value=0, max_value=50_000_000), max_size=300)


@given(
    sizes=sizes_st,
    max_rows=st.integers(min_value=1, max_value=50),
    max_bytes=st.none() | st.integers(min_value=1, max_value=100_000_000),
    envelope=st.integers(min_value=0, max_value=100_000),
)
def test_chunks_cover_every_row_in_order_within_both_bounds(sizes, max_rows, max_bytes, envelope):
    split = chunks.split(sizes, max_rows=max_rows, max_bytes=max_bytes, envelope=envelope)
    # every row exactly once, in order, in non-empty chunks (bar the one chunk of an empty event)
    assert split[0].start == 0 and split[-1].end == len(sizes)
    assert all(a.end == b.start for a, b in zip(split, split[1:], strict=False))
    assert all(c.rows >= 1 for c in split) or (len(split) == 1 and not sizes)
    for chunk in split:
        assert chunk.rows <= max_rows
        assert chunk.bytes == envelope + sum(sizes[chunk.start : chunk.end])
        assert chunk.envelope == envelope
        if max_bytes is not None and chunk.rows > 1 and envelope <= max_bytes:
            assert chunk.bytes <= max_bytes  # only a lone row may be over the budget
    # greedy: no chunk could have taken the next row without breaking a bound (bytes bind only
    # when some body can be within them)
    binding = max_bytes is not None and envelope <= max_bytes
    for chunk, following in zip(split, split[1:], strict=False):
        next_size = sizes[following.start]
        assert chunk.rows == max_rows or (binding and chunk.bytes + next_size > max_bytes)


@given(count=st.integers(min_value=0, max_value=20_000), max_rows=st.integers(min_value=1, max_value=6000))
def test_by_rows_is_label_studios_batches(count, max_rows):
    split = chunks.by_rows(count, max_rows)
    assert [c.rows for c in split] == (
        [max_rows] * (count // max_rows) + ([count % max_rows] if count % max_rows else [])
    ) or (count == 0 and [c.rows for c in split] == [0])


def test_a_row_over_the_budget_is_alone_and_the_others_are_not_held_back():
    mb = 1024 * 1024
    split = chunks.split([mb, mb, 20 * mb, mb], max_rows=5000, max_bytes=16 * mb, envelope=1000)
    assert [(c.start, c.end) for c in split] == [(0, 2), (2, 3), (3, 4)]
    assert [chunks.too_large(c, 16 * mb) for c in split] == [False, True, False]


def test_an_envelope_over_the_budget_cuts_by_rows_alone():
    """Issue 9 item 2: a project over the budget makes every body too large; its import is then
    cut as Label Studio cuts it, one dead chunk per batch, not one per row."""
    split = chunks.split([10] * 250, max_rows=100, max_bytes=2000, envelope=5000)
    assert [c.rows for c in split] == [100, 100, 50]
    assert all(chunks.too_large(c, 2000) for c in split)


def test_max_rows_must_be_positive():
    with pytest.raises(ValueError):
        chunks.split([1], max_rows=0)
