"""Standard Webhooks signatures, checked against the reference implementation."""

from __future__ import annotations

import base64
import uuid

import pytest
from standardwebhooks import Webhook as Reference

from relay.deliveries import Claimed, request_headers
from relay.signing import generate_secret, sign, signature_header, verify


def claimed(secret=None, previous=None, headers=None):
    return Claimed(
        id=1, message_id=uuid.UUID(int=5), event_id=1, chunk=0, webhook_id=1, attempts=0, action="TASKS_CREATED",
        url="https://example.com/", headers=headers or {}, secret=secret, previous_secret=previous,
        send_payload=True, timeout=None, retry_schedule=None,
    )  # fmt: skip


def test_generated_secrets_have_the_standard_format():
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    with pytest.raises(ValueError):
        generate_secret(16)


def test_the_reference_library_verifies_our_signature():
    secret, body = generate_secret(), b'{"action": "TASKS_CREATED"}'
    import time

    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "msg_1", now, body),
    }
    assert Reference(secret).verify(body, headers) == {"action": "TASKS_CREATED"}
    assert verify(secret, "msg_1", now, body, headers["webhook-signature"])
    assert not verify(secret, "msg_1", now, body + b" ", headers["webhook-signature"])


def test_during_a_rotation_either_secret_verifies():
    old, new, body = generate_secret(), generate_secret(), b"{}"
    header = signature_header([new, old], "msg_2", 1700000000, body)
    assert header.count("v1,") == 2
    assert verify(new, "msg_2", 1700000000, body, header) and verify(old, "msg_2", 1700000000, body, header)


def test_headers_carry_the_trio_and_log_static_values_masked():
    secret = generate_secret()
    sent, logged = request_headers(
        claimed(secret, headers={"Authorization": "Bearer t0ken"}), b"{}", 1700000000, "outbox/1"
    )
    assert sent["Authorization"] == "Bearer t0ken" and logged["Authorization"] == "***"
    assert sent["webhook-id"] == logged["webhook-id"] == "msg_" + "0" * 31 + "5"
    assert (
        sent["webhook-signature"]
        == logged["webhook-signature"]
        == sign(secret, sent["webhook-id"], 1700000000, b"{}")
    )
    assert sent["Content-Type"] == "application/json" and sent["User-Agent"] == "outbox/1"


def test_unsigned_webhooks_still_get_an_id_and_timestamp():
    sent, _ = request_headers(claimed(), b"{}", 1700000000, "outbox/1")
    assert "webhook-signature" not in sent and sent["webhook-timestamp"] == "1700000000"
