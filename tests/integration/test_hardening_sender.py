"""Issue 9, hardening the sender: what a hostile webhook URL or a hostile receiver can no longer do.

Real PostgreSQL, a real relay (in-process), real HTTP servers on 127.0.0.1. The SSRF tests never
connect anywhere else: a guard on ``socket.connect`` (the one test double here, since connecting
to the refused addresses is what must not happen) records every connection the process attempts
and refuses any that is not to loopback or a unix socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.deliveries import Request, clean_text
from relay.schedule import parse_retry_after
from relay.sender import (
    AddressRefused,
    AiohttpSender,
    _GuardedResolver,
    usable_retry_after,
)
from relay.urls import AddressPolicy
from tests.support import lsdb

pytestmark = pytest.mark.anyio

OPEN = AddressPolicy()
CLOSED = AddressPolicy(block_private_networks=True)
FINISHED = "select count(*) from outbox.delivery where webhook_id = %s and state <> 'pending'"


def attempts_of(conn: Any, webhook_id: int) -> list[dict[str, Any]]:
    return conn.execute(
        "select a.*, d.state from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
        " where d.webhook_id = %s order by a.delivery_id, a.attempt",
        (webhook_id,),
    ).fetchall()


# -- a guard on every connection the process makes ---------------------------------------------


@dataclass
class ConnectGuard:
    loopback: list[Any] = field(default_factory=list)  # allowed, recorded
    elsewhere: list[Any] = field(default_factory=list)  # refused, recorded: the test fails on them


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):
        return True  # a unix socket (PostgreSQL's)
    try:
        return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def connect_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectGuard]:
    """Every ``socket.connect``/``connect_ex`` of this process (asyncio's ``sock_connect``, so
    aiohttp's, goes through them) is recorded; any not to loopback is refused before it is made."""
    guard = ConnectGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if _is_loopback(address):
            guard.loopback.append(address)
            return
        guard.elsewhere.append(address)
        raise ConnectionRefusedError(f"the test refuses a connection to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield guard


# -- item 5: SSRF through IPv6 forms of IPv4 and numeric spellings ----------------------------

METADATA_SPELLINGS = [
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b:1::a9fe:a9fe]/",  # NAT64, local-use prefix
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://[::169.254.169.254]/",  # IPv4-compatible
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo, client 169.254.169.254
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://0xa9fea9fe/",
    "http://169.254.43518/",
    "http://169.16689662/",
    "http://１６９.２５４.１６９.２５４/",  # fullwidth digits: a literal address once IDNA-mapped
    "http://169。254。169。254/",  # ideographic full stops
]
LOOPBACK_SPELLINGS = ["[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "2130706433", "0x7f000001", "127.1"]


async def test_metadata_in_any_spelling_is_refused_before_connecting(
    conn, project, events, start_relay, sql_wait, receiver, connect_guard
):
    """issue 9 item 5: IPv6 forms and numeric spellings of 169.254.169.254 are dead as `blocked`
    at the first attempt, and no connection is attempted; a loopback receiver beside them is
    delivered to (the guard does see the relay's connections)."""
    hooks = {lsdb.webhook(conn, url, project_id=project): url for url in METADATA_SPELLINGS}
    control = lsdb.webhook(conn, receiver.url + "/control", project_id=project)
    async with start_relay(retry_schedule=(0, 0.2)):
        events(1)
        await sql_wait(
            "select count(*) from outbox.delivery where state <> 'pending'",
            until=lambda n: n == len(hooks) + 1,
        )
    verdicts = {hooks[h]: [(a["state"], a["error_class"]) for a in attempts_of(conn, h)] for h in hooks}
    print(f"\nmetadata spellings: {verdicts}; refused connections {connect_guard.elsewhere}")
    assert verdicts == {url: [("dead", "blocked")] for url in METADATA_SPELLINGS}
    assert all("always refused" in a["error"] for h in hooks for a in attempts_of(conn, h))
    assert connect_guard.elsewhere == []
    assert [a["state"] for a in attempts_of(conn, control)] == ["delivered"]
    port = int(receiver.url.rsplit(":", 1)[1])
    assert any(address[1] == port for address in connect_guard.loopback)


async def test_loopback_spellings_are_refused_with_block_private_networks(
    conn, project, events, start_relay, sql_wait, receiver, connect_guard
):
    """issue 9 item 5: with OUTBOX_BLOCK_PRIVATE_NETWORKS, loopback written as an IPv6 form or a
    number is refused like 127.0.0.1, before connecting."""
    port = receiver.url.rsplit(":", 1)[1]
    hooks = [lsdb.webhook(conn, f"http://{host}:{port}/", project_id=project) for host in LOOPBACK_SPELLINGS]
    async with start_relay(block_private_networks=True):
        events(1)
        await sql_wait(
            "select count(*) from outbox.delivery where state <> 'pending'", until=lambda n: n == len(hooks)
        )
    verdicts = [[(a["state"], a["error_class"]) for a in attempts_of(conn, h)] for h in hooks]
    print(f"\nloopback spellings, private networks blocked: {verdicts}")
    assert verdicts == [[("dead", "blocked")]] * len(hooks)
    assert receiver.requests == []
    assert connect_guard.elsewhere == [] and not any(a[1] == int(port) for a in connect_guard.loopback)


@pytest.mark.parametrize(
    "name", ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::ffff:169.254.169.254", "0xa9fea9fe"]
)
async def test_resolved_ipv6_forms_are_judged_by_their_ipv4(name, connect_guard):
    """issue 9 item 5: the guarded resolver judges what getaddrinfo returns, IPv6 results too, by
    the IPv4 address they embed (the system resolver, no DNS query: these are numeric)."""
    resolver = _GuardedResolver(OPEN)
    try:
        with pytest.raises(AddressRefused, match="always refused"):
            await resolver.resolve(name, 80, socket.AF_UNSPEC)
    finally:
        await resolver.close()
    assert connect_guard.elsewhere == []


async def test_a_name_resolving_to_loopback_follows_the_policy():
    """issue 9 item 5: loopback stays allowed by default and is refused with
    OUTBOX_BLOCK_PRIVATE_NETWORKS, for names too (localhost, from /etc/hosts)."""
    for policy, refused in ((OPEN, False), (CLOSED, True)):
        resolver = _GuardedResolver(policy)
        try:
            if refused:
                with pytest.raises(AddressRefused, match="OUTBOX_BLOCK_PRIVATE_NETWORKS"):
                    await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
            else:
                assert await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
        finally:
            await resolver.close()


async def test_the_sender_refuses_before_connecting(connect_guard):
    """issue 9 item 5: the sender itself returns `blocked` for every spelling, without a socket."""
    sender = AiohttpSender(concurrency=4, connect_timeout=1.0, max_body_bytes=1024, policy=CLOSED)
    try:
        outcomes = [await sender.send(Request(url, b"{}", {}, 1.0)) for url in METADATA_SPELLINGS]
    finally:
        await sender.aclose()
    assert [o.error_class for o in outcomes] == ["blocked"] * len(METADATA_SPELLINGS)
    assert connect_guard.elsewhere == [] and connect_guard.loopback == []


# -- item 10: a body that hangs after the status does not hold a slot ---------------------------


@pytest.mark.parametrize("status", [200, 500])
async def test_a_hanging_body_does_not_hold_the_webhooks_slot(
    conn, project, events, start_relay, sql_wait, body_server, status
):
    """issue 9 item 10: a receiver that answers its status then trickles its body forever costs
    the webhook's only slot (max_concurrency 1) a moment, not its 30 s timeout: both deliveries
    finish long before it, each with the first bytes of the body kept."""
    body_server.status = status
    body_server.chunk, body_server.interval = b"first bytes;", 0.5
    hook = lsdb.webhook(conn, body_server.url + "/hook", project_id=project, timeout=30, max_concurrency=1)
    started = time.monotonic()
    async with start_relay(retry_schedule=(0,), webhook_timeout=30.0):
        events(2)
        await sql_wait(FINISHED, (hook,), until=lambda n: n == 2, timeout=20)
    took = time.monotonic() - started
    attempts = attempts_of(conn, hook)
    print(
        f"\nhanging {status} body: 2 deliveries finished in {took:.2f} s with timeout 30 s and one slot, "
        f"durations {[round(a['duration_ms']) for a in attempts]} ms, bodies {[a['response_body'] for a in attempts]}"
    )
    assert [a["state"] for a in attempts] == ["delivered" if status == 200 else "dead"] * 2
    assert [a["status_code"] for a in attempts] == [status, status]
    assert all(a["response_body"].startswith("first bytes;") for a in attempts)
    assert all(a["duration_ms"] < 15_000 for a in attempts)  # half the timeout, generously
    assert body_server.requests == 2


# -- siblings: what else a hostile receiver sends ------------------------------------------------


@dataclass
class RawServer:
    """HTTP on 127.0.0.1 that answers every request with ``answer``, bytes as given."""

    answer: bytes
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(v) for k, _, v in (line.partition(":") for line in head.decode().split("\r\n"))
                 if k.lower() == "content-length"),
                0,
            )  # fmt: skip
            await reader.readexactly(length)
            writer.write(self.answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    server = RawServer(b"")
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    yield server
    listening.close()
    await listening.wait_closed()


HOSTILE = {
    # NUL and invalid UTF-8 in the body: PostgreSQL's text refuses NUL
    "nul body": (b"HTTP/1.1 500 X\r\nContent-Length: 7\r\n\r\na\x00b\xff\xfec\x00", "http_status"),
    # a Location urlsplit cannot parse
    "broken location": (b"HTTP/1.1 302 X\r\nLocation: http://[::1/x\r\nContent-Length: 0\r\n\r\n", "redirect"),
    # bytes aiohttp refuses in a header: the parser's complaint must not carry the URL
    "invalid header": (b"HTTP/1.1 200 X\r\nX-A: a\xff\x00b\r\nContent-Length: 0\r\n\r\n", "connection"),
    # a Retry-After that str.isdigit() accepts and float() does not
    "unicode retry-after": ("HTTP/1.1 503 X\r\nRetry-After: ²\r\nContent-Length: 0\r\n\r\n".encode(), "http_status"),
    "huge retry-after": (b"HTTP/1.1 503 X\r\nRetry-After: 1" + b"0" * 30 + b"\r\nContent-Length: 0\r\n\r\n", "http_status"),
    "status 999": (b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", "http_status"),
    # 101 without an upgrade asked for: what follows is not HTTP and never ends
    "status 101": (b"HTTP/1.1 101 X\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nabc", "http_status"),
    "too many headers": (b"HTTP/1.1 200 X\r\n" + b"X-A: b\r\n" * 500 + b"Content-Length: 0\r\n\r\n", "connection"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_answers_are_recorded_as_failures(
    conn, project, events, start_relay, sql_wait, raw_server, case
):
    """issue 9 siblings: each hostile answer is one recorded attempt of the expected class, with
    storable text (no NUL, valid UTF-8, no URL, no query string), well before the timeout; the
    relay goes on delivering."""
    raw_server.answer, expected = HOSTILE[case]
    hook = lsdb.webhook(conn, raw_server.url + "/hook?token=s3cr3t", project_id=project, timeout=30)
    async with start_relay(retry_schedule=(0, 0.2), webhook_timeout=30.0):
        events(1)
        await sql_wait(FINISHED, (hook,), timeout=20)
    attempts = attempts_of(conn, hook)
    print(
        f"\n{case}: {[(a['status_code'], a['error_class'], a['error'], a['response_body']) for a in attempts]}"
    )
    assert attempts and {a["error_class"] for a in attempts} == {expected}
    for attempt in attempts:
        for text in (attempt["error"] or "", attempt["response_body"] or ""):
            assert "\x00" not in text and "s3cr3t" not in text and str(raw_server.port) not in text
        assert attempt["duration_ms"] < 15_000
    if case == "nul body":
        # invalid UTF-8 replaced, NUL dropped (the recorder's one rule for receiver text)
        assert attempts[0]["response_body"] == "ab\ufffd\ufffdc"
    if case == "broken location":
        assert attempts[0]["error"] == "redirect (302) to an unparseable URL not followed"


@given(st.text(max_size=40))
def test_retry_after_the_sender_passes_on_never_breaks_the_scheduler(value):
    """issue 9 siblings: whatever Retry-After a receiver sends, what the Attempt carries parses."""
    usable = usable_retry_after(value)
    parsed = parse_retry_after(usable, datetime.now(UTC))
    assert parsed is None or parsed >= 0
    if usable is not None:
        assert usable == value


@given(st.text(st.characters(exclude_categories=())))  # lone surrogates included
def test_storable_text_has_no_nul_and_encodes_as_utf8(text):
    """issue 9 siblings: text an Attempt carries is accepted by PostgreSQL's text type (the
    sender and the recorder clean it with the same function)."""
    kept = clean_text(text, 100)
    assert "\x00" not in kept
    kept.encode("utf-8")
    assert len(kept) <= 100
