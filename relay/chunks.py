"""Chunking: how an event's rows are split into POSTs (pure; the one place this rule is written).

A POST holds at most ``WEBHOOK_BATCH_SIZE`` rows (Label Studio's rule for imports) and at most
``OUTBOX_MAX_BODY_BYTES`` bytes. Rows are taken in order, greedily: a chunk ends when the next row
would break either bound. A single row that is over the byte budget on its own makes a chunk of
its own, which is never built (it would only be refused): it is dead at once with a clear error,
and the rest of the event still arrives. When what every body holds besides its rows (the project
object) is over the budget alone, no cut can help: the rows are cut by count alone, so that an
import costs one dead chunk per ``WEBHOOK_BATCH_SIZE`` rows, not one per row.

Sizes are estimates computed by SQL from the rows (``take_changes`` in sql/queries.sql): the JSON text
of the large columns plus a fixed allowance per object, so they err on the large side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Bytes a serialised object takes besides its large columns (keys, numbers, timestamps): Label
# Studio's task object has 20 keys, an annotation 21, the envelope a few more.
TASK_OVERHEAD = 1024
ANNOTATION_OVERHEAD = 1024
PROJECT_OVERHEAD = 2048
ENVELOPE_OVERHEAD = 256


@dataclass(frozen=True)
class Chunk:
    """Rows ``[start, end)`` of an event, and the estimated size of the body they make
    (``envelope`` of it not its rows')."""

    start: int
    end: int
    bytes: int
    envelope: int = 0

    @property
    def rows(self) -> int:
        return self.end - self.start


def split(
    sizes: Sequence[int], *, max_rows: int, max_bytes: int | None = None, envelope: int = 0
) -> list[Chunk]:
    """Split rows of the given estimated sizes into chunks of at most ``max_rows`` rows and
    ``max_bytes`` bytes, each body counting ``envelope`` bytes besides its rows (the project
    object, the action). No rows still make one empty chunk: an event always has a POST."""
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    if max_bytes is not None and envelope > max_bytes:
        max_bytes = None  # every body is over the budget, however few rows it holds
    chunks: list[Chunk] = []
    start, total = 0, envelope
    for index, size in enumerate(sizes):
        full = index - start >= max_rows or (
            max_bytes is not None and index > start and total + size > max_bytes
        )
        if full:
            chunks.append(Chunk(start, index, total, envelope))
            start, total = index, envelope
        total += size
    chunks.append(Chunk(start, len(sizes), total, envelope))
    return chunks


def by_rows(count: int, max_rows: int) -> list[Chunk]:
    """Chunks by row count alone, for events whose body is not built (sizes unknown)."""
    return split([0] * count, max_rows=max_rows)


def too_large(chunk: Chunk, max_bytes: int) -> bool:
    """Whether a chunk's body would be refused: a single row over the budget, or an envelope over
    it alone (a chunk of several rows is never over otherwise, by construction)."""
    return chunk.bytes > max_bytes
