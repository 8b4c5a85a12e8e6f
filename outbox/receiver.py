"""A webhook receiver on 127.0.0.1 that records what it gets: used by ``outbox demo`` and the tests.

How it answers is a function of the request (``respond``), so a test can make it fail, stall,
redirect or answer slowly; waiting for requests is by condition with a deadline, never by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.perf_counter)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def action(self) -> str:
        return str(self.json["action"])


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    # seconds to wait before answering
    delay: float = 0.0


Respond = Callable[[Received], Reply | Awaitable[Reply]]


class Receiver:
    """``async with Receiver() as r: r.url ...``; ``r.requests`` lists what arrived."""

    def __init__(self, respond: Respond | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.respond: Respond = respond or (lambda _: Reply())
        self.requests: list[Received] = []
        self._host = host
        self._port = port
        self._arrived = anyio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(received)
        self._arrived.set()
        self._arrived = anyio.Event()
        reply = self.respond(received)
        if not isinstance(reply, Reply):
            reply = await reply
        if reply.delay:
            await anyio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)

    async def wait_until(
        self,
        condition: Callable[[Sequence[Received]], bool],
        *,
        timeout: float = 10.0,
        what: str = "",
    ) -> Sequence[Received]:
        """Wait until ``condition(requests)`` holds; AssertionError after ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            while not condition(self.requests):
                await self._arrived.wait()
            return self.requests
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or 'a condition'}; "
            f"{len(self.requests)} request(s) arrived: {[r.path for r in self.requests][:20]}"
        )

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> Sequence[Received]:
        """Wait until at least ``count`` requests arrived."""
        return await self.wait_until(lambda rs: len(rs) >= count, timeout=timeout, what=f"{count} requests")
