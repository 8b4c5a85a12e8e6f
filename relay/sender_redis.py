"""Redis Streams publishing with redis-py's asyncio client: ``XADD stream [MAXLEN ~ N] * body … headers …``.

The reply (the entry's id) is the confirmation. redis-py pools the connections to one server
itself and reconnects a dropped one; a command whose connection dropped is retried once on a new
connection (at-least-once: a consumer dedupes on ``webhook-id``, as an HTTP receiver does).
"""

from __future__ import annotations

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relay.brokers import Target
from relay.deliveries import Request
from relay.destinations import Failed
from relay.errors import ErrorClass

BODY_FIELD = "body"


class RedisClient:
    async def connect(self, target: Target, address: str, timeout: float) -> redis.asyncio.Redis:
        connection = redis.asyncio.Redis(
            host=address,
            port=target.port,
            db=int(target.space),
            username=target.username or None,
            password=target.password,
            ssl=target.tls,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        await connection.ping()  # connect now: a refused connection fails here, not at the XADD
        return connection

    def usable(self, connection: redis.asyncio.Redis) -> bool:
        return True  # the client's pool reconnects by itself

    async def publish(
        self, connection: redis.asyncio.Redis, target: Target, to: str, request: Request
    ) -> None:
        fields: dict[str, str | bytes] = {name.lower(): value for name, value in request.headers.items()}
        fields[BODY_FIELD] = request.body  # a static header named "body" does not replace the body
        await connection.xadd(to, fields, maxlen=target.maxlen, approximate=True)  # type: ignore[arg-type]

    def classify(self, exc: BaseException) -> Failed | None:
        if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
            return Failed(ErrorClass.CONNECT, "the server refused the credentials", broken=True)
        if isinstance(exc, redis.exceptions.ResponseError):
            return Failed(ErrorClass.NACK, f"the server refused the XADD: {str(exc).splitlines()[0][:200]}")
        if isinstance(exc, redis.exceptions.TimeoutError):
            return Failed(ErrorClass.TIMEOUT, "timed out waiting for the server")
        if isinstance(exc, redis.exceptions.ConnectionError):
            return Failed(ErrorClass.CONNECT, f"connection failed: {exc}", broken=True)
        if isinstance(exc, redis.exceptions.RedisError):
            return Failed(ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}", broken=True)
        return None

    async def close(self, connection: redis.asyncio.Redis) -> None:
        await connection.aclose()


def client() -> RedisClient:
    return RedisClient()
