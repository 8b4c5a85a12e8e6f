"""What a relay is configured with: one frozen value, built by ``outbox.config`` from the
environment and flags, so that the relay reads no settings of its own and depends on nothing of
``outbox`` but its database helpers and SQL loader (tests/unit/test_layers.py keeps it so)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RelayConfig:
    """Every field is required: the defaults live in one place, ``outbox.config.Settings``."""

    # sent as User-Agent and recorded in outbox.relay
    version: str
    # HTTP: requests in flight per relay, timeouts (seconds), the largest body, address policy
    concurrency: int
    webhook_timeout: float
    connect_timeout: float
    max_body_bytes: int
    block_private_networks: bool
    https_only: bool
    # brokers: TLS connections only (amqps://, tls://, rediss://)
    broker_tls_only: bool
    # the pipeline: seconds between polls, the settle delay, rows per POST
    poll_interval: float
    settle_ms: int
    webhook_batch_size: int
    # retries: seconds before each attempt, ± jitter fraction
    retry_schedule: tuple[float, ...]
    retry_jitter: float
    # endpoint health: disabled after failing this long and this many times
    disable_after: timedelta
    disable_after_attempts: int
    # retention
    retention: timedelta
    dead_retention: timedelta
    # seconds one SIGTERM/SIGINT may take to stop the relay
    shutdown_grace: float

    @property
    def user_agent(self) -> str:
        return f"outbox/{self.version}"
