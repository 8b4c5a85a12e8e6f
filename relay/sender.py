"""Sending: one POST, one ``Attempt``. The only module that speaks HTTP on the relay's hot path.

aiohttp's client, because it is what the numbers allow (POST/s against a bare local receiver at
1 / 16 / 64 in flight: httpx 1,000 / 540 / 240, httpx over aiohttp 1,500 / 2,500 / 2,150, aiohttp
3,000 / 9,800 / 8,500). httpx remains the HTTP API of the tests, the CLI and the admin side.

Expected failures (a 500, a timeout, a refused connection, a policy refusal) are values, not
exceptions: every request ends as an ``Attempt`` that can be logged and recorded.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from relay.deliveries import RESPONSE_BODY_LIMIT, Attempt, Request, clean_text
from relay.errors import ErrorClass
from relay.urls import AddressPolicy, blocked_address, blocked_url, redact_url

# Once the status line and headers are in, the status decides the attempt and the body is read
# only for the attempt log. A body sent with its headers (nearly all are) arrives within this
# window even on a loaded host; a receiver that trickles or stalls its body holds the connection,
# and a slot of the webhook's max_concurrency, this long at most instead of the whole timeout.
BODY_EXCERPT_WINDOW = 0.5
# Receiver-chosen text in an error message (a Location, a parser's complaint) is cut to this.
ERROR_TEXT_LIMIT = 300


class Sender(Protocol):
    async def send(self, request: Request) -> Attempt: ...

    async def aclose(self) -> None: ...


class AddressRefused(OSError):
    """A name resolved only to addresses the policy refuses."""


class _GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then drops refused addresses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._inner = aiohttp.DefaultResolver()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if blocked_address(r["host"], self._policy) is None]
        if not allowed:
            reason = blocked_address(results[0]["host"], self._policy) if results else None
            raise AddressRefused(f"{host} resolves to refused addresses: {reason}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _failure(error_class: ErrorClass, error: str, started: float) -> Attempt:
    return Attempt(None, error_class, error, "", (time.perf_counter() - started) * 1000)


def usable_retry_after(value: str | None) -> str | None:
    """``Retry-After`` as sent, when it can be delta-seconds or an HTTP date (printable ASCII);
    None otherwise (``²`` passes ``str.isdigit`` but not ``float``)."""
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return value


def _classify(exc: BaseException) -> tuple[ErrorClass, str]:
    """(error class, message) of a failed request; messages carry no URL (it may hold secrets)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, AddressRefused):
            return ErrorClass.BLOCKED, str(exc.os_error)
        return ErrorClass.DNS, f"name resolution failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return ErrorClass.TLS, f"TLS error: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ErrorClass.TIMEOUT, "timed out connecting"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorClass.CONNECT, f"connection failed: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, asyncio.TimeoutError):
        return ErrorClass.TIMEOUT, "timed out waiting for the response"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorClass.CONNECTION, "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientResponseError):
        # the receiver broke HTTP (a bad status line, an invalid or oversized header); str(exc)
        # would add the URL
        return ErrorClass.CONNECTION, f"invalid HTTP response: {clean_text(exc.message, ERROR_TEXT_LIMIT)}"
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        # the exception text holds the URL, which may hold credentials
        return ErrorClass.INVALID_URL, f"the URL cannot be requested ({type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}"
    return ErrorClass.REQUEST, f"{type(exc).__name__} while sending the request"


class AiohttpSender:
    """Shares one connection pool across all webhooks; at most ``concurrency`` connections."""

    def __init__(
        self,
        *,
        concurrency: int,
        connect_timeout: float,
        max_body_bytes: int,
        policy: AddressPolicy,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._max_body_bytes = max_body_bytes
        self._policy = policy
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=concurrency,
                limit_per_host=0,
                ttl_dns_cache=10,
                resolver=_GuardedResolver(policy),
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
        )

    async def send(self, request: Request) -> Attempt:
        started = time.perf_counter()
        try:
            url = URL(request.url)  # parsed once: the host judged is the host connected to
            refused = blocked_url(url, self._policy)
        except (TypeError, ValueError):
            # the exception text holds the URL, which may hold credentials
            return _failure(ErrorClass.INVALID_URL, "the URL cannot be parsed", started)
        if refused:
            return _failure(ErrorClass.BLOCKED, refused, started)
        if len(request.body) > self._max_body_bytes:
            return _failure(
                ErrorClass.TOO_LARGE,
                f"body of {len(request.body)} bytes is over OUTBOX_MAX_BODY_BYTES ({self._max_body_bytes})",
                started,
            )
        timeout = aiohttp.ClientTimeout(total=request.timeout, sock_connect=self._connect_timeout)
        status: int | None = None
        retry_after: str | None = None
        location: str | None = None
        chunks: list[bytes] = []
        try:
            async with self._session.post(
                url,
                data=request.body,
                headers=dict(request.headers),
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                status = response.status
                retry_after = usable_retry_after(response.headers.get("Retry-After"))
                location = response.headers.get("Location")
                elapsed = time.perf_counter() - started
                window = max(0.0, min(BODY_EXCERPT_WINDOW, request.timeout - elapsed))
                try:
                    async with asyncio.timeout(window):
                        await self._read_start(response, chunks)
                except TimeoutError:
                    response.close()  # the rest of the body is not waited for
        except Exception as exc:  # noqa: BLE001 - every failure becomes an Attempt
            error_class, error = _classify(exc)
            if status is None:
                for spelled in (request.url, str(url)):  # no message may carry the URL
                    error = error.replace(spelled, "<url>")
                return _failure(error_class, clean_text(error, ERROR_TEXT_LIMIT), started)
            # The status arrived and decides; only the body was broken.
        duration = (time.perf_counter() - started) * 1000
        text = clean_text(b"".join(chunks).decode("utf-8", errors="replace"), RESPONSE_BODY_LIMIT)
        if 200 <= status < 300:
            return Attempt(status, None, None, text, duration)
        if 300 <= status < 400:
            target = clean_text(redact_url(location), ERROR_TEXT_LIMIT) if location else "nowhere"
            error = f"redirect ({status}) to {target} not followed"
            return Attempt(status, ErrorClass.REDIRECT, error, text, duration)
        return Attempt(status, ErrorClass.HTTP_STATUS, f"HTTP {status}", text, duration, retry_after)

    @staticmethod
    async def _read_start(response: aiohttp.ClientResponse, chunks: list[bytes]) -> None:
        """Read the first 4 KiB of the body into ``chunks``, as it arrives (a body cut off by the
        excerpt window still shows what came); a longer body is not read (the connection is
        dropped)."""
        size = 0
        while size < RESPONSE_BODY_LIMIT:
            chunk = await response.content.read(RESPONSE_BODY_LIMIT - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if not response.content.at_eof():
            response.close()

    async def aclose(self) -> None:
        await self._session.close()
