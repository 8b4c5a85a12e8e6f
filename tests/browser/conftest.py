"""Fixtures of the browser tests: Debian's Chromium driven by Playwright (never a browser
Playwright downloads), and the admin API serving the console on 127.0.0.1.

Skipped, saying why, only where neither a Chromium nor Playwright is installed; CI installs both
(``.ci/run`` installs Debian's chromium when it is missing, ``.[test]`` brings Playwright).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from outbox.api import create_app
from tests.integration.api.conftest import ADMIN_TOKEN, ApiServer, api_settings, serve
from tests.support import lsdb

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str | None:
    for path in CHROMIUM_PATHS:
        if Path(path).exists():
            return path
    return shutil.which("chromium")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: OUTBOX_SCREENSHOTS if set (to look at them), else the test's tmp."""
    folder = Path(os.environ.get("OUTBOX_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def chromium_browser() -> AsyncIterator[Any]:
    executable = chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        async_playwright = None
    if executable is None or async_playwright is None:
        pytest.skip(
            "no Chromium (apt-get install chromium) or no Playwright (pip install '.[test]'): "
            f"chromium={executable}, playwright={'yes' if async_playwright else 'no'}"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def labeled(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Label Studio's organization 1 with project 1 (their own changes dropped)."""
    lsdb.organization(conn)
    lsdb.project(conn, 1)
    conn.execute("delete from outbox.change")
    return conn


@pytest.fixture
def console_server(database_url: str, labeled: psycopg.Connection[Any]) -> Iterator[ApiServer]:
    """``outbox api``'s app, served by uvicorn on 127.0.0.1 with the admin token."""
    settings = api_settings()
    with serve(create_app(settings, database_url, admin_token=ADMIN_TOKEN)) as url:
        yield ApiServer(url, database_url, settings)
