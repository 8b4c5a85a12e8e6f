"""Per-webhook request rate limits: a token bucket per webhook, in this relay (pure; clock passed in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``max(1, rate)`` saved up."""

    rate: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        return cls(rate, max(1.0, rate), now)

    def _refill(self, now: float) -> None:
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; returns how many seconds to wait before using it (0 when available)."""
        self._refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def exhausted(self, now: float) -> bool:
        """Whether no token is left now (claiming more for this webhook would only queue them)."""
        self._refill(now)
        return self.tokens < 1
