"""examples/receiver and examples/ml_backend, run as processes: signed requests taken once, replays
and forgeries refused, and the real relay's requests verified by the example as it stands."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.signing import generate_secret, signature_header
from tests.support import lsdb

ROOT = Path(__file__).resolve().parents[3]


def signed(secret: str, event: dict[str, Any], message_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    message_id = message_id or f"msg_{uuid.uuid4()}"
    timestamp = int(time.time())
    return body, {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([secret], message_id, timestamp, body),
    }


EVENT = {"action": "ANNOTATION_CREATED", "project": {"id": 7}, "annotation": {"id": 1}, "task": {"id": 1}}


def test_receiver_takes_a_signed_request_once_and_refuses_forgeries(run_example):
    receiver = run_example("receiver/receiver.py")
    body, headers = signed(receiver.secret, EVENT, "msg_first")
    first = httpx.post(receiver.url, content=body, headers=headers)
    assert first.status_code == 202
    replayed = httpx.post(receiver.url, content=body, headers=headers)
    assert replayed.status_code == 200 and replayed.json() == {"status": "duplicate"}

    other_secret = signed(generate_secret(), EVENT, "msg_forged")
    assert httpx.post(receiver.url, content=other_secret[0], headers=other_secret[1]).status_code == 401
    tampered = httpx.post(
        receiver.url, content=body.replace(b"7", b"8"), headers={**headers, "webhook-id": "msg_x"}
    )
    assert tampered.status_code == 401
    stale_body, stale = signed(receiver.secret, EVENT, "msg_old")
    old = int(time.time()) - 3600
    stale.update(
        {
            "webhook-timestamp": str(old),
            "webhook-signature": signature_header([receiver.secret], "msg_old", old, stale_body),
        }
    )
    assert httpx.post(receiver.url, content=stale_body, headers=stale).status_code == 401
    garbled = {**headers, "webhook-signature": "garbage", "webhook-id": "msg_g"}
    assert httpx.post(receiver.url, content=body, headers=garbled).status_code == 401
    assert httpx.post(receiver.url, content=b"x").status_code == 401

    receiver.wait_for("event msg_first ANNOTATION_CREATED project 7")
    assert sum("msg_first" in line for line in receiver.lines) == 1
    assert not any("msg_forged" in line or "msg_old" in line for line in receiver.lines)
    assert "Traceback" not in "\n".join(receiver.lines)


def test_receiver_without_a_secret_says_so():
    import subprocess

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/receiver/receiver.py")],
        env={"PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "RECEIVER_SECRET is not set" in result.stderr


@pytest.mark.anyio
async def test_the_relay_delivers_to_the_example_receiver(run_example, conn, start_relay):
    receiver = run_example("receiver/receiver.py")
    lsdb.organization(conn)
    lsdb.webhook(conn, receiver.url, secret=receiver.secret)
    async with start_relay():
        conn.execute("insert into project (id, title, organization_id) values (3, 'p', 1)")
        await _wait_async(receiver, "PROJECT_CREATED project 3")


async def _wait_async(example: Any, text: str) -> None:
    from tests.support.waiting import eventually

    await eventually(
        lambda: any(text in line for line in example.lines),
        timeout=15,
        what=text,
        last=lambda: "\n".join(example.lines),
    )


def test_ml_backend_starts_training_after_n_new_annotations(run_example):
    trainer = run_example("ml_backend/trainer.py", TRAIN_EVERY="3")

    def post(event: dict[str, Any], message_id: str) -> int:
        body, headers = signed(trainer.secret, event, message_id)
        return httpx.post(trainer.url, content=body, headers=headers).status_code

    assert post(EVENT, "msg_1") == 202
    assert post(EVENT, "msg_1") == 200  # a redelivery counts once
    assert post({**EVENT, "action": "TASKS_CREATED"}, "msg_t") == 202  # not an annotation
    assert post(EVENT, "msg_2") == 202
    bulk = {"action": "ANNOTATIONS_CREATED", "project": {"id": 7}, "annotation": [{"id": 2}, {"id": 3}]}
    assert post(bulk, "msg_3") == 202
    trainer.wait_for("training started for project 7 after 4 new annotations")
    assert sum("training started" in line for line in trainer.lines) == 1
