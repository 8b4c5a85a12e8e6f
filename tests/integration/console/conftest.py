"""Fixtures of the console tests: the admin API (which serves the console) on 127.0.0.1, and a
browser-like client that logs in through the login form, as a person would."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from outbox.api import create_app
from tests.integration.api.conftest import ADMIN_TOKEN, ApiServer, api_settings, serve

CSRF = re.compile(r'name="csrf" value="([^"]*)"')
NONCE = re.compile(r'name="nonce" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Browser:
    """An httpx client that keeps cookies, as a browser does; ``login()`` goes through the form."""

    client: httpx.Client

    def login(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        form = self.client.get("/login")
        nonce = NONCE.search(form.text)
        assert nonce, form.text
        return self.client.post("/login", data={"nonce": nonce.group(1), "token": token, "next": "/"})

    def csrf(self, path: str = "/") -> str:
        return csrf_of(self.client.get(path).text)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf_from: str = "/") -> httpx.Response:
        return self.client.post(path, data={"csrf": self.csrf(csrf_from), **(data or {})})


@pytest.fixture
def start_console(database_url: str, project: int) -> Iterator[Callable[..., ApiServer]]:
    """``start_console(admin_token=...)``: the admin API serving the console, on a database with
    organization 1 and project 1."""
    contexts: list[Any] = []

    def start(*, admin_token: str | None = ADMIN_TOKEN, **overrides: Any) -> ApiServer:
        settings = api_settings(**overrides)
        context = serve(create_app(settings, database_url, admin_token=admin_token))
        contexts.append(context)
        return ApiServer(context.__enter__(), database_url, settings, admin_token)

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


@pytest.fixture
def console(start_console: Callable[..., ApiServer]) -> ApiServer:
    return start_console()


@pytest.fixture
def browser(console: ApiServer) -> Iterator[Browser]:
    """Not logged in yet."""
    with httpx.Client(base_url=console.url, timeout=30, follow_redirects=False) as client:
        yield Browser(client)


@pytest.fixture
def logged_in(browser: Browser) -> Browser:
    answer = browser.login()
    assert answer.status_code == 303, answer.text
    return browser
