"""Label Studio's ML-backend pattern on outbox: start training a project's model once N new
annotations have arrived, from ``ANNOTATION_CREATED`` (and ``ANNOTATIONS_CREATED``, a bulk import's)
webhooks.

    pip install standardwebhooks
    RECEIVER_SECRET=whsec_... TRAIN_EVERY=10 python trainer.py       # 127.0.0.1:9000

Subscribe it to the two actions only:

    outbox webhooks add http://127.0.0.1:9000/ --project 1 \\
        -a ANNOTATION_CREATED -a ANNOTATIONS_CREATED --generate-secret

It builds on ../receiver/receiver.py (signature check, replays dropped by webhook-id, an answer
before the work). Label Studio's own webhooks can lose an event (one try, 1 s timeout), so a
counter fed by them drifts; outbox retries until the receiver answers and the webhook-id makes a
retry count once, so every annotation is counted exactly once.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "receiver"))
from receiver import main  # noqa: E402 - the sibling example, found through the line above


class TrainAfterN:
    """Counts a project's new annotations; each time ``every`` more have arrived since the last
    training started, starts one (``start(project, count)``), never two at once for a project:
    annotations that arrive meanwhile count towards the next."""

    def __init__(self, every: int, start: Callable[[int, int], None]) -> None:
        if every < 1:
            raise ValueError("every: at least 1")
        self.every = every
        self._start = start
        self._pending: dict[int, int] = {}
        self._training: set[int] = set()
        self._lock = threading.Lock()

    def on_event(self, webhook_id: str, event: dict[str, Any]) -> None:
        action = event.get("action")
        if action == "ANNOTATION_CREATED":
            new = 1
        elif action == "ANNOTATIONS_CREATED":
            new = len(event.get("annotation") or [])
        else:
            return
        project = int(event["project"]["id"])
        with self._lock:
            count = self._pending.get(project, 0) + new
            if count < self.every or project in self._training:
                self._pending[project] = count
                return
            self._pending[project] = 0
            self._training.add(project)
        self._start(project, count)

    def finished(self, project: int) -> None:
        """A training ended: the next one may start."""
        with self._lock:
            self._training.discard(project)


def train(project: int, count: int) -> None:
    """The example's training: one line. Replace with a job submission (a queue, a Celery task,
    a Kubernetes Job...) and call ``TrainAfterN.finished`` when it ends."""
    print(f"training started for project {project} after {count} new annotations", flush=True)
    trigger.finished(project)


trigger = TrainAfterN(int(os.environ.get("TRAIN_EVERY", "10")), train)

if __name__ == "__main__":
    main(trigger.on_event)
