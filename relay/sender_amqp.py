"""AMQP 0-9-1 (RabbitMQ) publishing with aiormq: persistent messages, publisher confirms, mandatory.

aiormq rather than aio-pika: the relay needs a connection, a confirming channel and basic.publish,
which is aiormq's own API; aio-pika's robust connections and topology are a layer the pool of
relay.destinations already covers. One channel per exchange: the broker closes a channel that
publishes to a missing exchange, and that must not fail the publishes to other exchanges.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic
from pamqp.common import FieldTable
from yarl import URL

from relay.brokers import Target
from relay.deliveries import Request
from relay.destinations import Failed
from relay.errors import ErrorClass

PERSISTENT = 2

# aiormq logs every connection it fails to make; the relay records each as a failed attempt, and
# logs it once, without the URL
logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)


class _Connection:
    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.channels: dict[str, AbstractChannel] = {}
        self.lock = asyncio.Lock()

    async def channel(self, exchange: str) -> AbstractChannel:
        found = self.channels.get(exchange)
        if found is not None and not found.is_closed:
            return found
        async with self.lock:
            found = self.channels.get(exchange)
            if found is None or found.is_closed:
                found = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
                self.channels[exchange] = found
            return found


def _properties(request: Request) -> aiormq.spec.Basic.Properties:
    sent = {name.lower(): value for name, value in request.headers.items()}
    headers: FieldTable = dict(sent)
    timestamp = sent.get("webhook-timestamp", "")
    return aiormq.spec.Basic.Properties(
        content_type=sent.get("content-type", "application/json"),
        delivery_mode=PERSISTENT,
        message_id=sent.get("webhook-id"),
        timestamp=datetime.fromtimestamp(int(timestamp), UTC) if timestamp.isdigit() else None,
        headers=headers,
    )


class AmqpClient:
    async def connect(self, target: Target, address: str, timeout: float) -> _Connection:
        url = URL.build(
            scheme="amqps" if target.tls else "amqp",
            user=target.username or "guest",
            password=target.password or "guest",
            host=address,
            port=target.port,
            path="/" + quote(target.space, safe=""),
            encoded=False,
        )
        return _Connection(await aiormq.connect(url))

    def usable(self, connection: _Connection) -> bool:
        return not connection.connection.is_closed

    async def publish(self, connection: _Connection, target: Target, to: str, request: Request) -> None:
        channel = await connection.channel(target.destination)
        confirmation = await channel.basic_publish(
            request.body,
            exchange=target.destination,
            routing_key=to,
            properties=_properties(request),
            mandatory=True,
        )
        if not isinstance(confirmation, Basic.Ack):
            raise Failed(
                ErrorClass.NACK, f"the broker did not confirm the message ({type(confirmation).__name__})"
            )

    def classify(self, exc: BaseException) -> Failed | None:
        if isinstance(exc, aiormq.exceptions.PublishError):
            frame = exc.frame
            code, text = getattr(frame, "reply_code", "?"), getattr(frame, "reply_text", "")
            key = getattr(frame, "routing_key", "")
            return Failed(
                ErrorClass.UNROUTABLE,
                f"the broker returned the message as unroutable ({code} {text}, routing key {key!r})",
            )
        if isinstance(exc, aiormq.exceptions.DeliveryError):
            return Failed(ErrorClass.NACK, "the broker refused the message (basic.nack)")
        if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
            return Failed(ErrorClass.UNROUTABLE, f"the broker refused the publish: {_reason(exc)}")
        if isinstance(exc, aiormq.exceptions.ChannelClosed):
            return Failed(ErrorClass.NACK, f"the broker closed the channel: {_reason(exc)}")
        if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
            return Failed(ErrorClass.CONNECTION, "the channel closed while publishing")
        if isinstance(
            exc, aiormq.exceptions.AuthenticationError | aiormq.exceptions.ProbableAuthenticationError
        ):
            return Failed(ErrorClass.CONNECT, "the broker refused the login", broken=True)
        if isinstance(exc, aiormq.exceptions.ConnectionClosed):
            return Failed(
                ErrorClass.CONNECTION, f"the broker closed the connection: {_reason(exc)}", broken=True
            )
        if isinstance(exc, aiormq.exceptions.AMQPConnectionError):
            return Failed(ErrorClass.CONNECT, f"connection failed: {_reason(exc)}", broken=True)
        if isinstance(exc, aiormq.exceptions.ProtocolSyntaxError):
            # what an unknown vhost, or one the user may not open, looks like to aiormq
            return Failed(
                ErrorClass.CONNECT,
                "the broker refused the connection (vhost missing or not allowed)",
                broken=True,
            )
        if isinstance(exc, aiormq.exceptions.AMQPError):
            return Failed(ErrorClass.CONNECTION, f"{type(exc).__name__}: {_reason(exc)}", broken=True)
        return None

    async def close(self, connection: _Connection) -> None:
        await connection.connection.close()


def _reason(exc: BaseException) -> str:
    """The broker's text of an aiormq exception (its args are (code, text) or (text,))."""
    parts: list[Any] = [arg for arg in exc.args if isinstance(arg, str)]
    return parts[-1] if parts else type(exc).__name__


def client() -> AmqpClient:
    return AmqpClient()
