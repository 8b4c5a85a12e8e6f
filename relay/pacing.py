"""Pacing: when each step of the pipeline runs next, and whether Label Studio writes so hard that
the relay polls instead of asking for NOTIFY (pure: the clock is passed in as ``now``)."""

from __future__ import annotations

from collections import deque

# Above this many routed changes per second, Label Studio is writing hard: the relay then polls
# every BUSY_POLL seconds instead of asking for NOTIFY, whose commit-time lock would serialise
# those writes (measured: 8 writers fell to a third of their TPS when every commit notified).
BUSY_WRITES_PER_SECOND = 300
BUSY_POLL = 0.01


def claim_batch(concurrency: int) -> int:
    """How many places must be free before the relay claims again (unless nothing is in flight):
    one freed place at a time would cost a claim per delivery. Half the places: single drains of
    20,000 on PostgreSQL 15, minutes apart, ran at 760/s claiming at a quarter, 867/s at a half and
    813/s at three quarters (fewer, larger claims; the other half's sends cover the claim)."""
    return max(1, concurrency // 2)


def next_route(now: float, routed: int, limit: int, poll_interval: float, *, busy: bool) -> float:
    """When to route again after a routing that took ``routed`` changes (at most ``limit`` a
    batch): at once after a full batch (more are queued behind it); after a partial one, at once
    too unless Label Studio writes hard (``busy``), then BUSY_POLL later: routing back to back would
    take a few changes at a time; the poll interval after an empty one (or sooner, on NOTIFY).

    Measured on PostgreSQL 15 under 8 single-row writers: routing back to back cost them 0.73 →
    0.57 of their TPS without triggers; a routing every 10 ms, 0.73 → 0.65. The cost is in
    PostgreSQL, not in the relay's CPU: a bare loop of the routing statements costs the writers as
    much. Below the busy rate, routing again at once is what finds the next event soonest."""
    if routed >= limit or (routed and not busy):
        return now
    if routed:
        return now + min(BUSY_POLL, poll_interval)
    return now + poll_interval


class WriteRate:
    """Changes routed over the last second."""

    def __init__(self) -> None:
        self._routed: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, changes: int, now: float) -> None:
        if changes:
            self._routed.append((now, changes))
            self._total += changes

    def busy(self, now: float) -> bool:
        while self._routed and self._routed[0][0] < now - 1.0:
            self._total -= self._routed.popleft()[1]
        return self._total >= BUSY_WRITES_PER_SECOND


# While a payload routed here is within its settle delay, its rows are looked at this often: it is
# built as soon as they have settled (Label Studio's counter updates land 10-50 ms after the
# annotation), the delay being only the upper bound.
SETTLE_CHECK = 0.005


class Due:
    """When each step of the pipeline should run next (time.monotonic() seconds), and when the
    payloads and deliveries this relay routed become ready (after the settle delay)."""

    def __init__(self) -> None:
        self.route = self.build = self.claim = 0.0
        self._ready: deque[float] = deque()
        # the settle deadlines of payloads routed here unbuilt, in order
        self._settling: deque[float] = deque()

    def all_now(self) -> None:
        self.route = self.build = self.claim = 0.0

    def ready(self, at: float, *, build: bool, now: float) -> None:
        """Something routed at ``now`` becomes ready ``at`` at the latest (the settle delay is
        constant: in order); ``build``: some of it has a payload still to build, whose rows are
        looked at from SETTLE_CHECK on."""
        self._ready.append(at)
        if build:
            self._settling.append(at)
            self.build = min(self.build, at, now + SETTLE_CHECK)
        self.claim = min(self.claim, at)

    def next_ready(self, now: float, poll_interval: float) -> float:
        """When to look again: the next ready time still ahead, else the next poll."""
        while self._ready and self._ready[0] <= now:
            self._ready.popleft()
        return self._ready[0] if self._ready else now + poll_interval

    def next_build(self, now: float, poll_interval: float) -> float:
        """When to build again after a step that left nothing due: every SETTLE_CHECK while a
        payload routed here may settle before its deadline, else as ``next_ready``."""
        while self._settling and self._settling[0] <= now:
            self._settling.popleft()
        if self._settling:
            return min(self._settling[0], now + SETTLE_CHECK)
        return self.next_ready(now, poll_interval)
