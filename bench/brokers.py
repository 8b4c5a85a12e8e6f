"""Publishes per second to each broker: the relay's publisher (relay.destinations, the sender a
relay uses) against the broker's own client publishing the same bodies with the same guarantees
(persistent and confirmed, acknowledged by the stream, XADD's reply), same concurrency, same run.

``python -m bench.brokers [--messages N] [--concurrency C]``; brokers that do not answer on
127.0.0.1 are skipped. The database side of a relay is not in this measure (bench/throughput.py
has it): this is what the broker path itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from relay.deliveries import Request
from relay.destinations import Destinations
from relay.sender import AiohttpSender
from relay.signing import generate_secret, signature_header
from relay.urls import AddressPolicy

BODY = b'{"action":"TASKS_CREATED","tasks":[{"id":1,"data":{"text":"' + b"x" * 900 + b'"}}]}'


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def headers(n: int) -> dict[str, str]:
    message_id, timestamp = f"msg_{n:032x}", int(time.time())
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([SECRET], message_id, timestamp, BODY),
    }


SECRET = generate_secret()


async def rate(publish: Callable[[int], Awaitable[None]], messages: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await publish(n)

    await publish(-1)  # connect (and warm up) outside the measure
    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(messages)))
    return messages / (time.perf_counter() - started)


async def via_relay(url: str, messages: int, concurrency: int) -> float:
    policy = AddressPolicy()
    http = AiohttpSender(concurrency=concurrency, connect_timeout=5, max_body_bytes=1 << 24, policy=policy)
    sender = Destinations(http, policy=policy, connect_timeout=5, max_body_bytes=1 << 24)

    async def publish(n: int) -> None:
        attempt = await sender.send(Request(url, BODY, headers(n), 10))
        assert attempt.ok, attempt.error

    try:
        return await rate(publish, messages, concurrency)
    finally:
        await sender.aclose()


async def amqp(messages: int, concurrency: int) -> tuple[float, float]:
    import aiormq

    queue = f"outbox-bench-{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.queue_declare(queue, durable=True)

    async def publish(n: int) -> None:
        properties = aiormq.spec.Basic.Properties(delivery_mode=2, headers=dict(headers(n)))
        await channel.basic_publish(BODY, routing_key=queue, properties=properties, mandatory=True)

    try:
        direct = await rate(publish, messages, concurrency)
        url = f"amqp://guest:guest@127.0.0.1:5672/?routing_key={queue}"
        relayed = await via_relay(url, messages, concurrency)
    finally:
        await channel.queue_delete(queue)
        await connection.close()
    return direct, relayed


async def nats(messages: int, concurrency: int) -> tuple[float, float]:
    import nats as nats_client
    from nats.js.api import StreamConfig

    tag = f"outbox-bench-{uuid.uuid4().hex[:8]}"
    stream = tag.replace("-", "_").upper()
    client = await nats_client.connect("nats://127.0.0.1:4222")
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{tag}.>"]))

    async def publish(n: int) -> None:
        await js.publish(f"{tag}.direct", BODY, headers=headers(n), timeout=10)

    try:
        direct = await rate(publish, messages, concurrency)
        relayed = await via_relay(f"nats://127.0.0.1:4222/{tag}.{{action}}", messages, concurrency)
    finally:
        await js.delete_stream(stream)
        await client.close()
    return direct, relayed


async def redis(messages: int, concurrency: int) -> tuple[float, float]:
    import redis.asyncio

    stream = f"outbox-bench-{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.Redis(host="127.0.0.1", port=6379)

    async def publish(n: int) -> None:
        fields: dict[str, str | bytes] = {k.lower(): v for k, v in headers(n).items()}
        fields["body"] = BODY
        await client.xadd(stream, fields, maxlen=100_000, approximate=True)  # type: ignore[arg-type]

    try:
        direct = await rate(publish, messages, concurrency)
        url = f"redis://127.0.0.1:6379/0?stream={stream}&maxlen=100000"
        relayed = await via_relay(url, messages, concurrency)
    finally:
        await client.delete(stream)
        await client.aclose()
    return direct, relayed


BROKERS = {"amqp": (5672, amqp), "nats": (4222, nats), "redis": (6379, redis)}


async def run(messages: int, concurrency: int) -> dict[str, tuple[float, float] | None]:
    results: dict[str, tuple[float, float] | None] = {}
    for name, (port, measure) in BROKERS.items():
        results[name] = await measure(messages, concurrency) if answers(port) else None
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    results = asyncio.run(run(args.messages, args.concurrency))
    print(f"{args.messages} messages of {len(BODY)} bytes, {args.concurrency} in flight")
    print(f"{'broker':8} {'client msg/s':>13} {'relay msg/s':>12} {'relay/client':>13}")
    for name, found in results.items():
        if found is None:
            print(f"{name:8} {'(not answering on 127.0.0.1)':>40}")
            continue
        direct, relayed = found
        print(f"{name:8} {direct:13,.0f} {relayed:12,.0f} {relayed / direct:13.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
