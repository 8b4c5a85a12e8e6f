"""Waiting for a condition with a deadline: the suite's one way to wait (never a bare sleep).

``found`` is polled until it returns something truthy, which is returned; after ``timeout``
seconds an AssertionError says what was awaited and what ``found`` last saw (``last``). ``found``
may raise AssertionError itself to give up early, e.g. when the process it watches has exited.
"""

from __future__ import annotations

import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx

T = TypeVar("T")


def _expired(what: str, timeout: float, value: Any, last: Callable[[], str] | None) -> AssertionError:
    seen = last() if last is not None else repr(value)
    return AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {seen}")


def wait_until(
    found: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    last: Callable[[], str] | None = None,
) -> T:
    """Block until ``found()`` is truthy (for code that runs outside an event loop)."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise _expired(what, timeout, value, last)
        time.sleep(interval)
    return value


async def eventually(
    found: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    last: Callable[[], str] | None = None,
) -> T:
    """Wait, in the event loop, until ``found()`` (a function or a coroutine function) is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _expired(what, timeout, value, last)
        await anyio.sleep(interval)


def wait_until_answering(
    url: str,
    process: subprocess.Popen[Any],
    *,
    timeout: float = 30,
    status: int | None = None,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Block until GET ``url`` answers (with ``status``, when given) while ``process`` runs: a
    server started as a subprocess is ready."""

    def answering() -> bool:
        assert process.poll() is None, f"exited {process.returncode}: {output()}"
        try:
            answer = httpx.get(url, timeout=2)
        except httpx.TransportError:
            return False
        return status is None or answer.status_code == status

    wait_until(answering, timeout=timeout, what=f"{url} to answer", last=output)
