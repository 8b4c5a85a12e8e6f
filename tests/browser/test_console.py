"""The console end to end, in a real headless Chromium against a real server, relay and receiver
on 127.0.0.1: log in, create a webhook, see a test delivery arrive, make the receiver fail, see
the failure and its attempts, retry it from the page, log out. Every page is photographed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from outbox.receiver import Receiver, Reply
from tests.integration.api.conftest import ADMIN_TOKEN, ApiServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

HOSTILE = b"<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'> receiver down"
WAIT = 20_000  # ms: the relay and the page's own refresh (every 2 s) must both have happened


async def test_console_end_to_end(
    console_server: ApiServer,
    chromium_browser: Any,
    start_relay: Callable[..., Any],
    receiver: Receiver,
    labeled: psycopg.Connection[Any],
    shots: Path,
) -> None:
    from playwright.async_api import expect

    base = console_server.url
    context = await chromium_browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    csp_violations: list[str] = []
    page.on(
        "console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None
    )

    async def shot(name: str) -> None:
        await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    async with start_relay():
        # not logged in: every page leads to the login form
        await page.goto(f"{base}/deliveries")
        await expect(page).to_have_url(f"{base}/login?next=/deliveries")
        await shot("01-login")
        await page.fill("#token", "not-the-token-at-all")
        await page.click("#login")
        await expect(page.locator(".error")).to_contain_text("not the admin token")
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("#login")
        await expect(page).to_have_url(f"{base}/deliveries")
        cookies = {c["name"]: c for c in await context.cookies()}
        assert cookies["outbox_session"]["httpOnly"] and cookies["outbox_session"]["sameSite"] == "Strict"

        # create a webhook
        await page.goto(f"{base}/")
        await shot("02-webhooks-empty")
        await page.click("#new-webhook")
        await page.fill("#url", f"{receiver.url}/hook")
        await page.fill("#project", "1")
        await page.fill("#description", "console end-to-end test")
        await shot("03-webhook-new")
        await page.click("#save")
        await expect(page.locator(".notice")).to_contain_text("Webhook created")
        webhook_url = page.url.split("?")[0]
        await shot("04-webhook-created")

        # test it: the PING arrives, the page follows the delivery until its attempt is in
        await page.click("#test")
        await expect(page.locator("#attempts .attempt.ok")).to_have_count(1, timeout=WAIT)
        await expect(page.locator("h1 .badge")).to_have_text("delivered")
        pings = await receiver.wait_for(1)
        assert pings[0].json == {"action": "PING", "webhook": {"id": 1}}
        await shot("05-ping-delivered")

        # the receiver fails (with a hostile body): a Label Studio change is not delivered
        receiver.respond = lambda _: Reply(status=503, body=HOSTILE)
        labeled.execute('insert into task (data, project_id) values (\'{"text": "hello"}\', 1)')
        await receiver.wait_for(2)
        await page.goto(f"{base}/deliveries?state=failing")
        await page.goto(f"{base}/deliveries?action=TASKS_CREATED")
        await expect(page.locator("#deliveries tbody tr")).to_have_count(1)
        await shot("06-deliveries-failing")
        await page.click("#deliveries tbody tr a[href^='/deliveries/']")
        # the relay's schedule here is 5 attempts: the page follows it until it is dead
        await expect(page.locator("h1 .badge")).to_have_text("dead", timeout=WAIT)
        await expect(page.locator("#attempts .attempt.failed")).to_have_count(5)
        first = page.locator("#attempts .attempt").first
        await expect(first.locator(".code")).to_have_text("503")
        await expect(first.locator("pre.response")).to_contain_text("<script>window.pwned = 1</script>")
        assert await page.evaluate("window.pwned") is None, "a receiver's response ran as script"
        await shot("07-delivery-dead")

        # the webhook shows its health
        await page.goto(webhook_url)
        await expect(page.locator("#consecutive-failures")).not_to_have_text("0")
        await shot("08-webhook-failing")

        # the receiver is back: retry from the page
        receiver.respond = lambda _: Reply()
        await page.go_back()
        await page.click("#retry")
        await expect(page.locator(".notice")).to_contain_text("due again")
        await expect(page.locator("h1 .badge")).to_have_text("delivered", timeout=WAIT)
        await expect(page.locator("#attempts .attempt.ok")).to_have_count(1)
        await shot("09-delivery-retried")
        assert [r.action for r in receiver.requests].count("TASKS_CREATED") == 6

        await page.goto(f"{base}/pipeline")
        await expect(page.locator("#relays-alive")).to_have_text("1")
        await shot("10-pipeline")
        await page.goto(f"{base}/")
        await shot("11-webhooks")

        # log out: the cookie is gone and the console asks for the token again
        await page.click("#logout")
        await expect(page).to_have_url(f"{base}/login")
        assert "outbox_session" not in {c["name"] for c in await context.cookies()}
        await page.goto(f"{base}/")
        await expect(page).to_have_url(f"{base}/login")

    assert dialogs == [], f"a page opened dialogs: {dialogs}"
    assert csp_violations == [], f"the pages broke their own Content-Security-Policy: {csp_violations}"
    await context.close()
