"""The raw HTTP ceiling: how fast plain Python clients (and wrk) POST to the bench receiver.

No database, no routing, no bookkeeping: the same receiver, the same body size, the same headers
a relay sends and the same number of requests in flight. The fastest Python client is the ceiling
the relay's deliveries/s are divided by; wrk (C, no Python) is the physical limit of the receiver.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit

import aiohttp


def _headers(body: bytes) -> dict[str, str]:
    # What the relay sends for an unsigned webhook (relay/deliveries.py), minus the per-request id.
    return {
        "Content-Type": "application/json",
        "User-Agent": "outbox/bench",
        "webhook-timestamp": str(int(time.time())),
    }


async def _aiohttp(url: str, body: bytes, concurrency: int, requests: int) -> float:
    headers = _headers(body)
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    ) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                sent = dict(headers, **{"webhook-id": f"msg_{uuid.uuid4().hex}"})
                async with session.post(url, data=body, headers=sent, allow_redirects=False) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"receiver answered {r.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


async def _raw(url: str, body: bytes, concurrency: int, requests: int) -> float:
    """Keep-alive connections, one request in flight on each, responses parsed just enough."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in _headers(body).items())
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                request = (
                    f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
                    f"webhook-id: msg_{uuid.uuid4().hex}\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                writer.write(request + body)
                response = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", response)
                await reader.readexactly(int(match.group(1)) if match else 0)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


CLIENTS = {"aiohttp": _aiohttp, "raw asyncio": _raw}


def python_rate(client: str, url: str, body_size: int, concurrency: int, requests: int) -> float:
    """POST/s of one Python client (``aiohttp`` or ``raw asyncio``), run in this process."""
    body = b'{"action":"TASKS_CREATED","tasks":"' + b"x" * max(0, body_size - 40) + b'"}'
    return asyncio.run(CLIENTS[client](url, body, concurrency, requests))


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_rate(url: str, body_size: int, concurrency: int, seconds: float) -> float | None:
    """wrk's requests/s (None when wrk is not installed)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = (
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {body_size})\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["webhook-id"] = "msg_00000000000000000000000000000000"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        threads = str(min(2, concurrency))
        out = subprocess.run(
            [
                wrk,
                "-t",
                threads,
                "-c",
                str(concurrency),
                "-d",
                f"{max(1, round(seconds))}s",
                "-s",
                handle.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    return float(match.group(1)) if match else None
