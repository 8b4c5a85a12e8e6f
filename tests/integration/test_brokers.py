"""Broker destinations against the real brokers of the machine (issue 13): RabbitMQ on 5672, NATS
with JetStream on 4222, Redis on 6379, all on 127.0.0.1. Each test skips, saying why, where its
broker does not answer. Every queue, stream and key is named for the test and removed after it.

What is proved for each broker: delivery with the HTTP headers and a signature standardwebhooks
verifies; a refusal (unroutable, no stream, an error reply) retried on schedule, then dead; the
connection cut mid-stream (RabbitMQ: closed by the broker; Redis: CLIENT KILL) or the server
itself stopped and started again (NATS, a server of the test's own) with nothing lost; ordered
delivery; two relays and no duplicate; a relay killed mid-publish and nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook

from relay.signing import generate_secret
from tests.integration.conftest import expire_the_dead_relays_leases
from tests.support import lsdb
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

FINISHED = "select count(*) from outbox.delivery where webhook_id = %s and state <> 'pending'"
DEAD = "select state, attempts from outbox.delivery where webhook_id = %s"


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Message:
    body: bytes
    headers: dict[str, str]

    @property
    def number(self) -> int:
        return int(orjson.loads(self.body)["tasks"][0]["data"]["n"])


@dataclass
class Destination:
    """One broker destination of a test: its webhook URL, a URL it refuses, and what arrived."""

    name: str
    url: str
    refused_url: str
    refused_class: str
    port: int
    messages: list[Message] = field(default_factory=list)
    client: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def read(self) -> list[Message]:
        """Everything that arrived so far."""
        return await READERS[self.name](self)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Message]:
        async def enough() -> list[Message] | None:
            found = await self.read()
            return found if len(found) >= count else None

        return await eventually(enough, timeout=timeout, what=f"{count} messages on {self.name}",
                                last=lambda: str(len(self.messages)))  # fmt: skip

    async def cut(self) -> None:
        """Drop the relay's connections (the broker hangs up on them)."""
        await CUTTERS[self.name](self)


# -- RabbitMQ ---------------------------------------------------------------------------------


async def _amqp(tag: str) -> AsyncIterator[Destination]:
    import aiormq

    connection = await aiormq.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    await channel.queue_declare(tag, durable=True)
    destination = Destination(
        "amqp", f"amqp://guest:guest@127.0.0.1:5672/?routing_key={tag}",
        f"amqp://guest:guest@127.0.0.1:5672/?routing_key={tag}-nowhere", "unroutable", 5672,
        client=channel, extra={"connection": connection, "queue": tag},
    )  # fmt: skip
    try:
        yield destination
    finally:
        channel = await _amqp_channel(destination)
        await channel.queue_delete(tag)
        await destination.extra["connection"].close()


async def _amqp_channel(destination: Destination) -> Any:
    import aiormq

    if destination.client.is_closed:  # a cut closes the test's own connection too
        destination.extra["connection"] = await aiormq.connect("amqp://guest:guest@127.0.0.1:5672/")
        destination.client = await destination.extra["connection"].channel()
    return destination.client


async def _amqp_read(destination: Destination) -> list[Message]:
    channel = await _amqp_channel(destination)
    while True:
        got = await channel.basic_get(destination.extra["queue"], no_ack=True)
        if got.delivery.__class__.__name__ == "GetEmpty":
            return destination.messages
        properties = got.header.properties
        assert properties.delivery_mode == 2  # persistent
        headers = {
            k: v.decode() if isinstance(v, bytes) else v for k, v in (properties.headers or {}).items()
        }
        destination.messages.append(Message(got.body, headers))


async def _amqp_cut(destination: Destination) -> None:
    await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "close_all_connections", "outbox test: cut"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


# -- NATS (the test's own server: it can be stopped and started again) -----------------------


class NatsServer:
    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, returns at once
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await eventually(lambda: answers(self.port), timeout=15, what="nats-server to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


async def _nats(tag: str, tmp_path: Path) -> AsyncIterator[Destination]:
    import nats
    from nats.js.api import StreamConfig

    if shutil.which("nats-server") is None:
        pytest.skip("no nats-server binary on this machine (the python-svc kind has one)")
    server = NatsServer(tmp_path / "nats")
    await server.start()
    try:
        client = await nats.connect(f"nats://127.0.0.1:{server.port}")
        stream = tag.replace("-", "_").upper()
        await client.jetstream().add_stream(StreamConfig(name=stream, subjects=[f"{tag}.>"]))
        await client.close()
        yield Destination(
            "nats", f"nats://127.0.0.1:{server.port}/{tag}.{{action}}",
            f"nats://127.0.0.1:{server.port}/{tag}-nostream.{{action}}", "no_stream", server.port,
            extra={"server": server, "stream": stream},
        )  # fmt: skip
    finally:
        server.stop()


async def _nats_read(destination: Destination) -> list[Message]:
    import nats

    server: NatsServer = destination.extra["server"]
    try:
        client = await nats.connect(
            f"nats://127.0.0.1:{server.port}", allow_reconnect=False, connect_timeout=2
        )
    except Exception:  # noqa: BLE001 - stopped for the restart: nothing readable yet
        return destination.messages
    try:
        js = client.jetstream()
        info = await js.stream_info(destination.extra["stream"])
        for seq in range(len(destination.messages) + 1, info.state.last_seq + 1):
            raw = await js.get_msg(destination.extra["stream"], seq)
            destination.messages.append(Message(raw.data or b"", dict(raw.headers or {})))
    finally:
        await client.close()
    return destination.messages


async def _nats_cut(destination: Destination) -> None:
    server: NatsServer = destination.extra["server"]
    await asyncio.to_thread(server.stop)
    await server.start()  # the same store: the stream and what it took survive


# -- Redis --------------------------------------------------------------------------------------


async def _redis(tag: str) -> AsyncIterator[Destination]:
    import redis.asyncio

    client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
    await client.set(f"{tag}-string", "not a stream")
    try:
        yield Destination(
            "redis", f"redis://127.0.0.1:6379/0?stream={tag}&maxlen=100000",
            f"redis://127.0.0.1:6379/0?stream={tag}-string", "nack", 6379, client=client,
            extra={"stream": tag},
        )  # fmt: skip
    finally:
        await client.delete(tag, f"{tag}-string")
        await client.aclose()


async def _redis_read(destination: Destination) -> list[Message]:
    entries = await destination.client.xrange(destination.extra["stream"])
    destination.messages = [
        Message(fields[b"body"], {k.decode(): v.decode() for k, v in fields.items() if k != b"body"})
        for _, fields in entries
    ]
    return destination.messages


async def _redis_cut(destination: Destination) -> None:
    await destination.client.execute_command("CLIENT", "KILL", "TYPE", "normal")


READERS = {"amqp": _amqp_read, "nats": _nats_read, "redis": _redis_read}
CUTTERS = {"amqp": _amqp_cut, "nats": _nats_cut, "redis": _redis_cut}
PORTS = {"amqp": 5672, "nats": 4222, "redis": 6379}
NAMES = {"amqp": "RabbitMQ", "nats": "NATS", "redis": "Redis"}


@pytest.fixture(params=["amqp", "nats", "redis"])
async def destination(request, tmp_path) -> AsyncIterator[Destination]:
    name = request.param
    if name != "nats" and not answers(PORTS[name]):
        pytest.skip(f"no {NAMES[name]} on 127.0.0.1:{PORTS[name]} (the python-svc machine kind runs one)")
    tag = f"outbox-test-{uuid.uuid4().hex[:10]}"
    made = _nats(tag, tmp_path) if name == "nats" else _amqp(tag) if name == "amqp" else _redis(tag)
    async with contextlib.aclosing(made) as gen:
        yield await gen.__anext__()


# -- the tests ----------------------------------------------------------------------------------


async def test_delivered_with_the_http_headers_and_a_verifiable_signature(
    conn, project, events, start_relay, sql_wait, destination
):
    secret = generate_secret()
    hook = lsdb.webhook(
        conn, destination.url, project_id=project, secret=secret, headers={"X-Tenant": "acme"}
    )
    async with start_relay():
        events(3)
        await sql_wait(FINISHED, (hook,), until=lambda n: n == 3)
    messages = await destination.wait_for(3)
    states = conn.execute(
        "select d.state, a.error_class, a.status_code from outbox.delivery d join outbox.attempt a on a.delivery_id = d.id"
        " where d.webhook_id = %s", (hook,),
    ).fetchall()  # fmt: skip
    first = messages[0]
    print(f"\n{destination.name}: {len(messages)} messages, headers {sorted(first.headers)}")
    assert {(r["state"], r["error_class"], r["status_code"]) for r in states} == {("delivered", None, None)}
    assert sorted(m.number for m in messages) == [1, 2, 3]
    for message in messages:
        payload = Webhook(secret).verify(message.body, message.headers)  # as an HTTP receiver does
        assert payload["action"] == "TASKS_CREATED"
        assert message.headers["content-type"] == "application/json"
        assert message.headers["x-tenant"] == "acme"
    assert len({m.headers["webhook-id"] for m in messages}) == 3


async def test_a_refused_publish_is_retried_on_schedule_then_dead(
    conn, project, events, start_relay, sql_wait, destination
):
    hook = lsdb.webhook(conn, destination.refused_url, project_id=project)
    async with start_relay(retry_schedule=(0, 0.1, 0.2)):
        events(1)
        await sql_wait(FINISHED, (hook,), until=lambda n: n == 1)
    delivery = conn.execute(DEAD, (hook,)).fetchone()
    attempts = conn.execute(
        "select error_class, error, duration_ms from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
        " where d.webhook_id = %s order by a.attempt",
        (hook,),
    ).fetchall()
    print(f"\n{destination.name} refused: {[(a['error_class'], a['error']) for a in attempts]}")
    assert (delivery["state"], delivery["attempts"]) == ("dead", 3)
    assert {a["error_class"] for a in attempts} == {destination.refused_class}
    assert all(a["error"] and a["duration_ms"] >= 0 for a in attempts)
    assert "guest:guest" not in str(attempts)


async def test_a_connection_cut_mid_stream_loses_nothing(
    conn, project, events, start_relay, sql_wait, destination
):
    hook = lsdb.webhook(conn, destination.url, project_id=project)
    async with start_relay(retry_schedule=(0, 0.2, 0.5, 1, 1, 1, 1, 1, 1, 1)):
        events(20)
        await destination.wait_for(5)
        await destination.cut()
        events(20, start=21)
        await sql_wait(FINISHED, (hook,), until=lambda n: n == 40, timeout=60)
    states = Counter(r["state"] for r in conn.execute(DEAD, (hook,)).fetchall())
    messages = await destination.wait_for(40)
    classes = Counter(
        r["error_class"]
        for r in conn.execute(
            "select error_class from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
            " where d.webhook_id = %s",
            (hook,),
        )
    )
    print(
        f"\n{destination.name} cut mid-stream: {dict(states)}, attempts {dict(classes)}, {len(messages)} messages"
    )
    assert states == {"delivered": 40}
    assert {m.number for m in messages} == set(range(1, 41))
    by_id: dict[str, set[int]] = {}
    for message in messages:  # a duplicate (at least once) carries the same webhook-id
        by_id.setdefault(message.headers["webhook-id"], set()).add(message.number)
    assert all(len(numbers) == 1 for numbers in by_id.values()) and len(by_id) == 40


async def test_an_ordered_webhook_publishes_one_projects_events_in_commit_order(
    conn, project, events, start_relay, sql_wait, destination
):
    hook = lsdb.webhook(conn, destination.url, project_id=project, ordered=True, max_concurrency=8)
    async with start_relay():
        numbers = events(30)
        await sql_wait(FINISHED, (hook,), until=lambda n: n == 30)
    messages = await destination.wait_for(30)
    assert [m.number for m in messages] == numbers


async def test_two_relays_publish_each_event_once(
    conn, database_url, project, events, spawn_relay, sql_wait, destination
):
    hook = lsdb.webhook(conn, destination.url, project_id=project)
    first, second = spawn_relay(database_url), spawn_relay(database_url)
    await first.registered()
    await second.registered()
    events(100)
    await sql_wait(FINISHED, (hook,), until=lambda n: n == 100, timeout=60)
    messages = await destination.wait_for(100)
    print(f"\n{destination.name}, two relays: {len(messages)} messages")
    assert sorted(m.number for m in messages) == list(range(1, 101))


async def test_a_relay_killed_mid_publish_loses_nothing(
    conn, database_url, project, events, spawn_relay, sql_wait, destination
):
    hook = lsdb.webhook(conn, destination.url, project_id=project)
    events(300)
    doomed = spawn_relay(database_url)
    doomed_id = await doomed.registered()
    await destination.wait_for(10, timeout=60)
    doomed.signal(signal.SIGKILL)
    await doomed.exited(10)
    expire_the_dead_relays_leases(conn, doomed_id)  # the time they would take passes in SQL
    spawn_relay(database_url, OUTBOX_LOG_LEVEL="WARNING")
    await sql_wait(FINISHED, (hook,), until=lambda n: n == 300, timeout=120)
    messages = await destination.wait_for(300)
    numbers = Counter(m.number for m in messages)
    ids: dict[int, set[str]] = {}
    for message in messages:
        ids.setdefault(message.number, set()).add(message.headers["webhook-id"])
    print(f"\n{destination.name}, relay killed: {len(messages)} messages, {len(messages) - 300} duplicates")
    assert set(numbers) == set(range(1, 301))
    assert all(len(found) == 1 for found in ids.values())  # duplicates carry the same webhook-id
