"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure.

``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``; during a secret
rotation both signatures are sent, space-separated, so receivers can switch at their own pace.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"


def generate_secret(nbytes: int = 32) -> str:
    """A new secret: ``whsec_`` + base64 of ``nbytes`` random bytes (24 to 64)."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a secret has 24 to 64 random bytes")
    return PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<signature>`` entry."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_in_use: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one entry per secret in use."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_in_use)


def verify(secret: str, message_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1,`` entry of a ``webhook-signature`` header matches (what a receiver does)."""
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, entry) for entry in header.split())
