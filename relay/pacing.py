"""Pacing: when each step of the pipeline runs next, and whether Label Studio writes so hard that
the relay polls instead of asking for NOTIFY (pure: the clock is passed in as ``now``)."""

from __future__ import annotations

from collections import deque

# Above this many routed changes per second, Label Studio is writing hard: the relay then polls
# every BUSY_POLL seconds instead of asking for NOTIFY, whose commit-time lock would serialise
# those writes (measured: 8 writers fell to a third of their TPS when every commit notified).
BUSY_WRITES_PER_SECOND = 300
BUSY_POLL = 0.01


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


class Due:
    """When each step of the pipeline should run next (time.monotonic() seconds), and when the
    payloads and deliveries this relay routed become ready (after the settle delay)."""

    def __init__(self) -> None:
        self.route = self.build = self.claim = 0.0
        self._ready: deque[float] = deque()

    def all_now(self) -> None:
        self.route = self.build = self.claim = 0.0

    def ready(self, at: float, *, build: bool) -> None:
        """Something routed now becomes ready ``at`` (the settle delay is constant: in order);
        ``build``: some of it has a payload still to build."""
        self._ready.append(at)
        if build:
            self.build = min(self.build, at)
        self.claim = min(self.claim, at)

    def next_ready(self, now: float, poll_interval: float) -> float:
        """When to look again: the next ready time still ahead, else the next poll."""
        while self._ready and self._ready[0] <= now:
            self._ready.popleft()
        return self._ready[0] if self._ready else now + poll_interval
