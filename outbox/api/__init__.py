"""The admin API (``outbox api``): Label Studio's webhooks API plus the delivery log, replay,
health and metrics, over the operations in ``outbox.admin``."""

from outbox.api.app import create_app

__all__ = ["create_app"]
