"""outbox: Postgres-native webhooks for Label Studio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("outbox")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
