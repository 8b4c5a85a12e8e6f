"""NATS JetStream publishing with nats-py: acknowledged by the stream that takes the subject.

The client's own reconnection is off: a connection that drops is closed, and the pool of
relay.destinations opens a new one on the next send (one way for every broker). ``Nats-Msg-Id``
is the ``webhook-id``, so a stream with a duplicate window stores a redelivered message once.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsConnection

from relay.brokers import Target
from relay.deliveries import Request
from relay.destinations import Failed
from relay.errors import ErrorClass


def _error_callback() -> tuple[Callable[[Exception], Awaitable[None]], list[bool]]:
    """The error callback, and the flag that says the first connection is being made: while it is,
    the callback raises, so that connect fails at once with the real error instead of retrying;
    afterwards it does nothing (the next publish finds the connection closed)."""
    connecting = [True]

    async def callback(exc: Exception) -> None:
        if connecting[0]:
            raise exc

    return callback, connecting


class NatsClient:
    async def connect(self, target: Target, address: str, timeout: float) -> NatsConnection:
        host = f"[{address}]" if ":" in address else address
        callback, connecting = _error_callback()
        options: dict[str, Any] = {
            "servers": [f"{'tls' if target.tls else 'nats'}://{host}:{target.port}"],
            "connect_timeout": max(1, round(timeout)),
            "allow_reconnect": False,
            "max_reconnect_attempts": 1,
            "error_cb": callback,
            "name": "outbox relay",
        }
        if target.tls:
            options["tls"] = ssl.create_default_context()
            options["tls_hostname"] = target.host
        if target.username is not None and target.password is None:
            options["token"] = target.username
        elif target.username is not None:
            options["user"], options["password"] = target.username, target.password
        connection = await nats.connect(**options)
        connecting[0] = False
        return connection

    def usable(self, connection: NatsConnection) -> bool:
        return bool(connection.is_connected)

    async def publish(self, connection: NatsConnection, target: Target, to: str, request: Request) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        if "webhook-id" in headers:
            headers["Nats-Msg-Id"] = headers["webhook-id"]
        await connection.jetstream().publish(to, request.body, timeout=request.timeout, headers=headers)

    def classify(self, exc: BaseException) -> Failed | None:
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            return Failed(ErrorClass.NO_STREAM, "no JetStream stream takes this subject")
        if isinstance(exc, nats.js.errors.APIError):
            return Failed(ErrorClass.NACK, f"the stream refused the message: {exc.description or exc.code}")
        if isinstance(exc, nats.errors.MaxPayloadError):
            return Failed(ErrorClass.TOO_LARGE, "the body is over the NATS server's max_payload")
        if isinstance(exc, nats.errors.TimeoutError):
            return Failed(ErrorClass.TIMEOUT, "timed out waiting for the stream's acknowledgement")
        if isinstance(exc, nats.errors.AuthorizationError):
            return Failed(ErrorClass.CONNECT, "the server refused the credentials", broken=True)
        if isinstance(exc, nats.errors.NoServersError | ConnectionRefusedError):
            return Failed(ErrorClass.CONNECT, "connection failed: the server refused it", broken=True)
        if isinstance(exc, ssl.SSLError):
            return Failed(ErrorClass.TLS, f"TLS error: {exc}", broken=True)
        if isinstance(exc, nats.errors.Error):
            return Failed(ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}", broken=True)
        return None

    async def close(self, connection: NatsConnection) -> None:
        await connection.close()


def client() -> NatsClient:
    return NatsClient()
