"""The receiver the benchmarks deliver to: a bare asyncio HTTP/1.1 server, in its own process.

aiohttp.web costs more CPU per request than the relay itself does, and on a 2-core machine the
receiver shares the cores with the relay and PostgreSQL; a receiver that parses only what it must
(Content-Length, webhook-id) and answers ``200`` with keep-alive leaves the most room for what is
measured. It records, per request, the arrival time (``time.monotonic()``: CLOCK_MONOTONIC is
system-wide on Linux, so it compares with the driver's clock), the ``webhook-id`` and the path.

Control endpoints (GET): ``/_stats`` (counts and first/last arrival), ``/_arrivals`` (every
record), ``/_reset``. Run as ``python -m bench.receiver``; it prints ``PORT <n>`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
MAX_HEAD = 64 * 1024


@dataclass
class Log:
    """What arrived: parallel lists, appended in arrival order."""

    times: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    bytes: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.times),
            "distinct": len(set(self.ids)),
            "first": self.times[0] if self.times else None,
            "last": self.times[-1] if self.times else None,
            "bytes": self.bytes,
        }


class _Protocol(asyncio.Protocol):
    def __init__(self, log: Log) -> None:
        self._log = log
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        # body bytes still to skip for the request being read, and its record
        self._remaining = 0
        self._pending: tuple[str, str] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._pending is not None:
                take = min(self._remaining, len(buffer))
                del buffer[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._finish()
                continue
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    assert self._transport is not None
                    self._transport.close()
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._start(head)

    def _start(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        method, path, _ = lines[0].split(b" ", 2)
        length = 0
        webhook_id = ""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"webhook-id":
                webhook_id = value.strip().decode()
        self._remaining = length
        self._log.bytes += length
        self._pending = (path.decode(), webhook_id if method == b"POST" else "")

    def _finish(self) -> None:
        assert self._pending is not None and self._transport is not None
        path, webhook_id = self._pending
        self._pending = None
        if path.startswith("/_"):
            self._transport.write(self._control(path))
            return
        self._log.times.append(time.monotonic())
        self._log.ids.append(webhook_id)
        self._log.paths.append(path)
        self._transport.write(RESPONSE)

    def _control(self, path: str) -> bytes:
        log = self._log
        if path == "/_stats":
            body = json.dumps(log.stats()).encode()
        elif path == "/_arrivals":
            body = json.dumps({"times": log.times, "ids": log.ids, "paths": log.paths}).encode()
        elif path == "/_reset":
            log.times.clear()
            log.ids.clear()
            log.paths.clear()
            log.bytes = 0
            body = b"{}"
        else:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    log = Log()
    server = await loop.create_server(lambda: _Protocol(log), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


class ReceiverProcess:
    """``with ReceiverProcess() as r: r.url ...``: the receiver in a child process."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ReceiverProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            self._process.kill()
            raise RuntimeError(f"the bench receiver did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/_stats"))

    def arrivals(self) -> dict[str, list[Any]]:
        return dict(self._get("/_arrivals"))

    def reset(self) -> None:
        self._get("/_reset")

    def wait_for(self, count: int, *, timeout: float, interval: float = 0.02) -> dict[str, Any]:
        """Poll until ``count`` requests arrived; returns the last stats (may be short on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["count"] >= count or time.monotonic() > deadline:
                return stats
            time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
