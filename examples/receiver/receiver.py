"""A webhook receiver for outbox: verifies the Standard Webhooks signature, drops replays by
``webhook-id``, answers at once and does the work afterwards, on a worker thread.

    pip install standardwebhooks
    RECEIVER_SECRET=whsec_... python receiver.py        # listens on 127.0.0.1:9000

Why each step:
- outbox signs every request (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with the
  webhook's secret; ``standardwebhooks`` checks the signature and refuses a timestamp more than
  five minutes away, so a captured request cannot be replayed later.
- Delivery is at least once: a request whose answer was lost is sent again with the same
  ``webhook-id``. Remembering the ids seen makes processing happen once. (Here in memory, bounded;
  a real service records them where it records its work, e.g. a unique column, in the same
  transaction.)
- outbox waits at most ``WEBHOOK_TIMEOUT`` (10 s) for an answer, and a slow answer holds one of the
  webhook's ``max_concurrency`` slots: answer 2xx first, work later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 20 * 1024 * 1024  # outbox sends at most OUTBOX_MAX_BODY_BYTES (16 MiB by default)
log = logging.getLogger("receiver")


class SeenIds:
    """The last ``size`` webhook-ids, to drop a redelivery of one already taken."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._ids:
                self._ids.move_to_end(webhook_id)
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


Handler = Callable[[str, dict[str, Any]], None]


def log_event(webhook_id: str, event: dict[str, Any]) -> None:
    """The example's work: one line per event. Replace with yours."""
    project = (event.get("project") or {}).get("id")
    print(f"event {webhook_id} {event.get('action')} project {project}", flush=True)


def make_server(secret: str, host: str, port: int, handle: Handler = log_event) -> ThreadingHTTPServer:
    """An HTTP server that verifies, dedupes and queues every POST for ``handle``."""
    verifier = Webhook(secret)
    seen = SeenIds()
    work: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def worker() -> None:
        while True:
            webhook_id, event = work.get()
            try:
                handle(webhook_id, event)
            except Exception:  # one bad event must not stop the worker
                log.exception("handling %s failed", webhook_id)

    threading.Thread(target=worker, daemon=True, name="worker").start()

    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._answer(413, "too large")
            body = self.rfile.read(length)
            try:
                event = verifier.verify(body, dict(self.headers.items()))
            except (WebhookVerificationError, ValueError):  # ValueError: malformed headers or body
                return self._answer(401, "bad signature")
            webhook_id = self.headers["webhook-id"]
            if not seen.first_time(webhook_id):
                return self._answer(200, "duplicate")
            work.put((webhook_id, event))
            self._answer(202, "accepted")

        def _answer(self, status: int, text: str) -> None:
            data = json.dumps({"status": text}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            log.debug(format, *args)

    return ThreadingHTTPServer((host, port), Receive)


def main(handle: Handler = log_event) -> None:
    secret = os.environ.get("RECEIVER_SECRET")
    if not secret:
        raise SystemExit("RECEIVER_SECRET is not set: the webhook's signing secret (whsec_...)")
    host = os.environ.get("RECEIVER_HOST", "127.0.0.1")
    port = int(os.environ.get("RECEIVER_PORT", "9000"))
    server = make_server(secret, host, port, handle)
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop without a traceback
        server.serve_forever()


if __name__ == "__main__":
    main()
