"""Destinations: one sender that sends each request where its URL's scheme says (docs/destinations.md).

An http(s) URL goes to the HTTP sender; amqp(s), nats/tls and redis(s) URLs go to a broker
publisher, made on first use (its client library is imported then, and only then). A broker
publish ends as an ``Attempt`` like a POST does: success is the broker's confirmation (status None,
error class None: relay.schedule.decide counts it delivered); a refused connection, a timeout, a
negative acknowledgement, an unroutable message, a subject no stream takes are failed attempts.

Connections are pooled: one per broker server (scheme, host, port, credentials, vhost or database),
opened under a lock so that concurrent sends share it, dropped when it breaks and opened again by
the next send, which is how a relay carries on after a broker restarts. A host is judged by the
address policy before every new connection, by the addresses it resolves to; a plain connection is
made to the judged address itself (a name cannot resolve elsewhere in between), a TLS one to the
name, which its certificate must match.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import time
from collections.abc import Hashable
from typing import Any, Protocol

from relay.brokers import Broker, Target, action_of, broker_of, extra_missing, parse
from relay.deliveries import Attempt, Request, clean_text
from relay.errors import ErrorClass
from relay.sender import ERROR_TEXT_LIMIT, Sender
from relay.urls import AddressPolicy, blocked_address, blocked_broker

log = logging.getLogger("outbox.relay")

# the module of each broker's client (each imports its library, so each is imported on first use)
CLIENT_MODULES = {
    Broker.AMQP: "relay.sender_amqp",
    Broker.NATS: "relay.sender_nats",
    Broker.REDIS: "relay.sender_redis",
}


class Failed(Exception):
    """A failure a broker client has already classified; ``broken``: drop the connection."""

    def __init__(self, error_class: ErrorClass, message: str, *, broken: bool = False) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.broken = broken


class Client(Protocol):
    """What a broker's client module provides (``client()`` in relay.sender_amqp and the others)."""

    async def connect(self, target: Target, address: str, timeout: float) -> Any:
        """A new connection to ``target`` at ``address`` (an IP, or the name for TLS)."""
        ...

    def usable(self, connection: Any) -> bool:
        """Whether a pooled connection can still publish."""
        ...

    async def publish(self, connection: Any, target: Target, to: str, request: Request) -> None:
        """Publish and wait for the broker's confirmation; raise ``Failed`` (or anything else, which
        ``classify`` names) when it did not confirm."""
        ...

    def classify(self, exc: BaseException) -> Failed | None:
        """The failure ``exc`` is, for the library's own exceptions (None: not one of them)."""
        ...

    async def close(self, connection: Any) -> None: ...


def _failure(error_class: ErrorClass, error: str, started: float) -> Attempt:
    return Attempt(None, error_class, error, "", (time.perf_counter() - started) * 1000)


def scrubbed(message: str, request_url: str, target: Target | None) -> str:
    """``message`` without the URL or its credentials (library messages may quote either)."""
    secrets = [request_url]
    if target is not None:
        secrets += [value for value in (target.password, target.username) if value and len(value) > 2]
    for secret in secrets:
        message = message.replace(secret, "***")
    return clean_text(message, ERROR_TEXT_LIMIT)


class Publisher:
    """Publishes to the brokers of one kind through ``client``, with a pool of connections."""

    def __init__(
        self, client: Client, *, policy: AddressPolicy, connect_timeout: float, max_body_bytes: int
    ) -> None:
        self._client = client
        self._policy = policy
        self._connect_timeout = connect_timeout
        self._max_body_bytes = max_body_bytes
        self._connections: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def send(self, request: Request) -> Attempt:
        started = time.perf_counter()
        target: Target | None = None
        try:
            target = parse(request.url)
        except ValueError as exc:  # messages of parse never hold the URL
            return _failure(ErrorClass.INVALID_URL, f"the URL cannot be published to: {exc}", started)
        refused = blocked_broker(target.tls, target.host, self._policy)
        if refused:
            return _failure(ErrorClass.BLOCKED, refused, started)
        if len(request.body) > self._max_body_bytes:
            return _failure(
                ErrorClass.TOO_LARGE,
                f"body of {len(request.body)} bytes is over OUTBOX_MAX_BODY_BYTES ({self._max_body_bytes})",
                started,
            )
        connection = None
        try:
            connection = await self._connection(target)
            to = target.address(action_of(request.body))
            async with asyncio.timeout(request.timeout):
                await self._client.publish(connection, target, to, request)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an Attempt
            failed = self._failed(exc)
            if failed.broken and connection is not None:
                await self._drop(target.server, connection)
            return _failure(failed.error_class, scrubbed(failed.message, request.url, target), started)
        return Attempt(None, None, None, "", (time.perf_counter() - started) * 1000)

    def _failed(self, exc: BaseException) -> Failed:
        if isinstance(exc, Failed):
            return exc
        known = self._client.classify(exc)
        if known is not None:
            return known
        if isinstance(exc, TimeoutError):
            return Failed(ErrorClass.TIMEOUT, "timed out waiting for the broker's confirmation", broken=True)
        if isinstance(exc, OSError):
            return Failed(ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}", broken=True)
        return Failed(ErrorClass.REQUEST, f"{type(exc).__name__} while publishing", broken=True)

    async def _connection(self, target: Target) -> Any:
        key = target.server
        found = self._connections.get(key)
        if found is not None and self._client.usable(found):
            return found
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._connections.get(key)
            if found is not None:
                if self._client.usable(found):
                    return found
                del self._connections[key]
                await self._quietly_close(found)
            judged = await self._judged_address(target)
            address = target.host if target.tls else judged
            try:
                async with asyncio.timeout(self._connect_timeout):
                    connection = await self._client.connect(target, address, self._connect_timeout)
            except TimeoutError:
                raise Failed(ErrorClass.TIMEOUT, "timed out connecting to the broker") from None
            self._connections[key] = connection
            return connection

    async def _judged_address(self, target: Target) -> str:
        """The first address ``target.host`` resolves to that the policy allows; ``Failed``
        when it resolves to none, or only to refused ones."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise Failed(ErrorClass.DNS, "name resolution timed out") from None
        except OSError as exc:
            raise Failed(ErrorClass.DNS, f"name resolution failed: {exc}") from None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            if blocked_address(address, self._policy) is None:
                return address
        reason = blocked_address(addresses[0], self._policy) if addresses else "no address"
        raise Failed(ErrorClass.BLOCKED, f"{target.host} resolves to refused addresses: {reason}")

    async def _drop(self, key: Hashable, connection: Any) -> None:
        if self._connections.get(key) is connection:
            del self._connections[key]
        await self._quietly_close(connection)

    async def _quietly_close(self, connection: Any) -> None:
        try:
            await self._client.close(connection)
        except Exception:  # noqa: BLE001 - a broken connection may fail to close: it is gone anyway
            log.debug("closing a broker connection failed", exc_info=True)

    async def aclose(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            await self._quietly_close(connection)


class Destinations:
    """The relay's sender: HTTP requests to ``http``, broker URLs to a publisher per broker."""

    def __init__(
        self, http: Sender, *, policy: AddressPolicy, connect_timeout: float, max_body_bytes: int
    ) -> None:
        self._http = http
        self._policy = policy
        self._connect_timeout = connect_timeout
        self._max_body_bytes = max_body_bytes
        self._publishers: dict[Broker, Publisher] = {}

    async def send(self, request: Request) -> Attempt:
        broker = broker_of(request.url)
        if broker is None:
            return await self._http.send(request)
        publisher = self._publishers.get(broker)
        if publisher is None:
            missing = extra_missing(broker)
            if missing is not None:
                # retried: installing the extra (and restarting the relay) fixes it
                return Attempt(None, ErrorClass.REQUEST, missing, "", 0.0)
            module = importlib.import_module(CLIENT_MODULES[broker])
            publisher = self._publishers[broker] = Publisher(
                module.client(),
                policy=self._policy,
                connect_timeout=self._connect_timeout,
                max_body_bytes=self._max_body_bytes,
            )
        return await publisher.send(request)

    async def aclose(self) -> None:
        for publisher in self._publishers.values():
            await publisher.aclose()
        await self._http.aclose()
