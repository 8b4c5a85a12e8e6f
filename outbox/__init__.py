"""outbox: Postgres-native webhooks for Label Studio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("outbox")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# Label Studio's webhook functions for application code, on the caller's connection and inside its
# transaction (docs/custom-events.md). Light: orjson and the SQL loader only.
from outbox.emit import (  # noqa: E402
    ActiveWebhook,
    EmitError,
    emit,
    emit_for,
    get_active_webhooks,
    run_webhook,
)

__all__ = ["ActiveWebhook", "EmitError", "emit", "emit_for", "get_active_webhooks", "run_webhook"]
