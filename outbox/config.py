"""Configuration: one typed settings object, read once from the environment.

Nothing else in outbox or relay reads ``os.environ``. Names: Label Studio's own
names where it has one (``WEBHOOK_TIMEOUT``, ``WEBHOOK_BATCH_SIZE``), ``OUTBOX_*`` for the rest.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outbox import __version__
from relay.config import RelayConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """Parse ``"7d"``, ``"24h"``, ``"30m"``, ``"10s"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 24h, 7d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_schedule(value: Any) -> tuple[float, ...]:
    """Parse a retry schedule: delays before each attempt, e.g. ``"0,5s,5m,30m"``."""
    if isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [item for item in str(value).split(",") if item.strip()]
    delays = tuple(parse_duration(item).total_seconds() for item in items)
    if not delays:
        raise ValueError("a retry schedule needs at least one attempt")
    return delays


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Schedule = Annotated[tuple[float, ...], NoDecode, BeforeValidator(parse_schedule)]

LOG_FORMATS = ("text", "json")

# Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about 27.5 hours.
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(BaseSettings):
    """Everything outbox can be configured with. Flags on the CLI override these."""

    model_config = SettingsConfigDict(env_prefix="OUTBOX_", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "OUTBOX_DATABASE_URL")
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=300, validation_alias=AliasChoices("WEBHOOK_TIMEOUT")
    )
    webhook_batch_size: int = Field(default=5000, ge=1, validation_alias=AliasChoices("WEBHOOK_BATCH_SIZE"))
    settle_ms: int = Field(default=100, ge=0)
    admin_token: SecretStr | None = None

    connect_timeout: float = Field(default=5.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    concurrency: int = Field(default=64, ge=1, le=4096)
    retry_schedule: Schedule = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    block_private_networks: bool = False
    https_only: bool = False
    broker_tls_only: bool = False
    shutdown_grace: float = Field(default=10.0, ge=0)
    secret_grace: Duration = timedelta(hours=24)
    retention: Duration = timedelta(days=7)
    dead_retention: Duration = timedelta(days=30)
    disable_after: Duration = timedelta(days=5)
    disable_after_attempts: int = Field(default=50, ge=1)
    data_dir: Path = Path(".outbox")
    # admin API (`outbox api`): where it listens, and how many webhooks one organization may have
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (`outbox up` shows it)
    max_webhooks_per_organization: int = Field(default=100, ge=1, le=100_000)
    log_level: str = "INFO"
    # text for people, json (one object a line) for log aggregators
    log_format: str = "text"

    def relay_config(self) -> RelayConfig:
        """What a relay runs with: these settings' values, and outbox's version."""
        fields = {name: getattr(self, name) for name in RelayConfig.__dataclass_fields__ if name != "version"}
        return RelayConfig(version=__version__, **fields)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log level must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        kind = value.strip().lower()
        if kind not in LOG_FORMATS:
            raise ValueError(f"log format must be {' or '.join(LOG_FORMATS)}")
        return kind


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()


def variable_name(field: str) -> str:
    """The environment variable that sets ``field``: the one the user set when several may
    (``DATABASE_URL`` or ``OUTBOX_DATABASE_URL``), else the first. Errors name this, not the
    field."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        names = [str(choice) for choice in alias.choices]
        return next((name for name in names if name in os.environ), names[0])
    if isinstance(alias, str):
        return alias
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()
