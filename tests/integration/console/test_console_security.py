"""Attacks on the console: its login, session cookie, CSRF protection, body limits, escaping and
secrets, against the real admin API on 127.0.0.1 (and, for a few, raw sockets)."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute

from outbox.api import create_app
from outbox.api.app import MAX_BODY_BYTES
from outbox.console import session, site
from tests.integration.api.conftest import ADMIN_TOKEN, ApiServer, api_settings
from tests.integration.console.conftest import NONCE, Browser, csrf_of

SECRET = "whsec_" + "A" * 32
HEADER_VALUE = "Bearer header-value-that-is-a-credential"


def _webhook(server: ApiServer, **fields: Any) -> dict[str, Any]:
    with server.client() as api:
        answer = api.post("/api/webhooks/", json={"url": "http://127.0.0.1:9/hook", "project": 1, **fields})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _active(server: ApiServer, webhook_id: int = 1) -> bool:
    with server.client() as api:
        return bool(api.get(f"/api/webhooks/{webhook_id}/").json()["is_active"])


# -- login and the session cookie --------------------------------------------------------------


def test_every_page_leads_to_the_login_form_and_back(browser: Browser):
    answer = browser.client.get("/deliveries?state=dead")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/deliveries%3Fstate%3Ddead"
    form = browser.client.get(answer.headers["location"])
    nonce = NONCE.search(form.text)
    assert nonce and 'name="next" value="/deliveries?state=dead"' in form.text
    logged = browser.client.post(
        "/login", data={"nonce": nonce.group(1), "token": ADMIN_TOKEN, "next": "/deliveries?state=dead"}
    )
    assert logged.status_code == 303 and logged.headers["location"] == "/deliveries?state=dead"


def test_the_session_cookie_is_httponly_samesite_strict_and_not_the_token(browser: Browser):
    answer = browser.login()
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back
    assert ADMIN_TOKEN not in cookie
    assert browser.client.get("/").status_code == 200


def test_the_cookie_is_secure_behind_https(console: ApiServer):
    """uvicorn takes X-Forwarded-Proto from 127.0.0.1 (its FORWARDED_ALLOW_IPS default)."""
    with httpx.Client(base_url=console.url, headers={"X-Forwarded-Proto": "https"}) as client:
        form = client.get("/login")
        assert "Secure" in form.headers["set-cookie"]
        nonce = NONCE.search(form.text)
        assert nonce
        # (httpx, like a browser, sends a Secure cookie only over https: hand it over)
        cookie = f"{session.LOGIN_COOKIE}={form.cookies[session.LOGIN_COOKIE]}"
        answer = client.post(
            "/login", data={"nonce": nonce.group(1), "token": ADMIN_TOKEN}, headers={"Cookie": cookie}
        )
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"] and "HttpOnly" in answer.headers["set-cookie"]


@pytest.mark.parametrize(
    "token", ["", "wrong", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", ADMIN_TOKEN.upper(), "é" * 30, "\x00" * 5]
)
def test_a_wrong_token_logs_nobody_in(browser: Browser, token: str):
    answer = browser.login(token)
    assert answer.status_code == 401
    assert "That is not the admin token." in answer.text
    assert session.COOKIE not in answer.headers.get("set-cookie", "")
    assert browser.client.get("/").status_code == 303


def test_a_login_from_another_site_is_refused(browser: Browser):
    """Another site's form cannot carry the login cookie (SameSite=Strict, and it cannot read
    the nonce), and its Origin gives it away: no session is issued either way."""
    without_cookie = httpx.post(
        f"{browser.client.base_url}/login", data={"nonce": "guess", "token": ADMIN_TOKEN}
    )
    assert without_cookie.status_code == 403
    assert session.COOKIE not in without_cookie.headers.get("set-cookie", "")
    form = browser.client.get("/login")
    nonce = NONCE.search(form.text)
    assert nonce
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        answer = browser.client.post(
            "/login", data={"nonce": nonce.group(1), "token": ADMIN_TOKEN}, headers=headers
        )
        assert answer.status_code == 403, headers
        assert session.COOKIE not in answer.headers.get("set-cookie", "")
    assert browser.client.get("/").status_code == 303


def test_a_planted_session_cookie_is_never_adopted(browser: Browser, console: ApiServer):
    """Session fixation: whatever cookie the browser had before login, login issues a new one."""
    planted = f"{int(time.time())}.chosen-by-the-attacker.{'0' * 64}"
    browser.client.cookies.set(session.COOKIE, planted)
    answer = browser.login()
    issued = answer.cookies.get(session.COOKIE)
    assert issued and issued != planted and "chosen-by-the-attacker" not in issued
    with httpx.Client(base_url=console.url) as again:
        assert Browser(again).login().cookies.get(session.COOKIE) != issued  # every login a new one
    forged = "1.abc." + "0" * 64
    with httpx.Client(base_url=console.url, cookies={session.COOKIE: forged}) as stranger:
        assert stranger.get("/").status_code == 303


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
def test_login_never_sends_the_browser_to_another_site(browser: Browser, target: str):
    form = browser.client.get("/login")
    nonce = NONCE.search(form.text)
    assert nonce
    answer = browser.client.post(
        "/login", data={"nonce": nonce.group(1), "token": ADMIN_TOKEN, "next": target}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_tampered_and_expired_sessions_are_refused(console: ApiServer):
    key = session.key_for(ADMIN_TOKEN)
    good = session.issue(key, time.time())
    issued, nonce, mac = good.split(".")
    expired = session.issue(key, time.time() - session.LIFETIME_SECONDS - 1)
    other_key = session.issue(session.key_for("another-token-0123456789"), time.time())
    for cookie in (
        f"{int(issued) + 1}.{nonce}.{mac}",
        f"{issued}.{nonce}x.{mac}",
        # (a last digit changed to one it is not: "0" alone left one MAC in 16 as it was)
        f"{issued}.{nonce}.{mac[:-1]}{'1' if mac.endswith('0') else '0'}",
        expired,
        other_key,
        "",
        "x" * 5000,
    ):
        with httpx.Client(base_url=console.url, cookies={session.COOKIE: cookie}) as client:
            assert client.get("/").status_code == 303, cookie[:80]
    with httpx.Client(base_url=console.url, cookies={session.COOKIE: good}) as client:
        assert client.get("/").status_code == 200


def test_logout_clears_the_cookie_and_needs_the_csrf_token(logged_in: Browser):
    refused = logged_in.client.post("/logout", data={})
    assert refused.status_code == 403
    assert logged_in.client.get("/").status_code == 200  # still logged in
    answer = logged_in.post("/logout")
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f'{session.COOKIE}=""') and "Max-Age=0" in cookie
    assert logged_in.client.get("/").status_code == 303


# -- CSRF ------------------------------------------------------------------------------------


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    logged_in: Browser, console: ApiServer, start_console: Any
):
    _webhook(console)
    other = Browser(httpx.Client(base_url=console.url))
    other.login()
    someone_elses = other.csrf()
    for data in (
        {},
        {"csrf": ""},
        {"csrf": "0" * 64},
        {"csrf": someone_elses},
        {"csrf": logged_in.csrf()[:-1]},
    ):
        answer = logged_in.client.post("/webhooks/1/pause", data=data)
        assert answer.status_code == 403, data
        assert "Nothing was changed" in answer.text
        assert _active(console)
    for path in ("/webhooks/1/delete", "/webhooks/1/rotate-secret", "/webhooks/1/test", "/webhooks/new"):
        assert logged_in.client.post(path, data={"url": "http://127.0.0.1:9/x"}).status_code == 403
    with console.client() as api:
        assert [w["secret"] for w in api.get("/api/webhooks/").json()] == [None]
        assert api.get("/api/deliveries/").json()["results"] == []
    assert logged_in.post("/webhooks/1/pause", csrf_from="/webhooks/1").status_code == 303
    assert not _active(console)


def test_a_post_made_by_another_site_is_refused_even_with_the_token(logged_in: Browser, console: ApiServer):
    _webhook(console)
    csrf = logged_in.csrf()
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        answer = logged_in.client.post("/webhooks/1/pause", data={"csrf": csrf}, headers=headers)
        assert answer.status_code == 403, headers
    assert _active(console)
    same = logged_in.client.post(
        "/webhooks/1/pause",
        data={"csrf": csrf},
        headers={"Origin": console.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 303 and not _active(console)


def test_the_authorization_header_works_without_csrf(console: ApiServer):
    _webhook(console)
    with console.client() as client:
        assert client.get("/").status_code == 200
        assert client.post("/webhooks/1/pause").status_code == 303
    assert not _active(console)
    with console.client(token="wrong-token-0123456789") as wrong:
        assert wrong.get("/").status_code == 303


def test_a_wrong_token_header_is_refused_even_with_a_valid_cookie(logged_in: Browser):
    answer = logged_in.client.get("/", headers={"Authorization": "Token wrong-token-0123456789"})
    assert answer.status_code == 303


# -- bodies never read without a session -----------------------------------------------------


def _raw(url: str, head: str) -> tuple[int, dict[str, str], bool]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        status_line, *lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}
        rest = data.partition(b"\r\n\r\n")[2]
        while len(rest) < int(headers.get("content-length", "0")):
            rest += sock.recv(65536)
        closed = False
        if headers.get("connection") == "close":
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
    return int(status_line.split()[1]), headers, closed


def _paths(route: APIRoute) -> str:
    return route.path.replace("{webhook_id:int}", "1").replace("{delivery_id:int}", "1")


def test_every_console_route_refuses_a_visitor_from_the_headers(console: ApiServer):
    """A console request without a session gets its redirect to the login form before any of
    its body is sent: the server read only the headers, and closes the connection."""
    checked = 0
    for router in site.ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if route.path in ("/login",):
                continue
            for method in route.methods - {"HEAD"}:
                head = (
                    f"{method} {_paths(route)} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                )
                head += "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                status, headers, closed = _raw(console.url, head)
                assert status == 303 and headers["location"].startswith("/login"), (method, route.path)
                assert closed, (method, route.path)
                checked += 1
    assert checked >= 17


def test_a_console_post_over_the_limit_gets_413(logged_in: Browser):
    csrf = logged_in.csrf()
    answer = logged_in.client.post(
        "/webhooks/new",
        content=b"csrf=" + csrf.encode() + b"&url=" + b"x" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


def test_a_form_with_too_many_fields_is_refused(logged_in: Browser):
    csrf = logged_in.csrf()
    data = "&".join([f"csrf={csrf}", *(f"actions=A{i}" for i in range(500))])
    answer = logged_in.client.post(
        "/webhooks/new", content=data.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 403


# -- escaping and secrets ----------------------------------------------------------------------


def test_values_from_the_database_render_inert(
    logged_in: Browser, console: ApiServer, conn: psycopg.Connection[Any]
):
    hostile = "<script>alert(1)</script>"
    created = _webhook(
        console, url=f"http://127.0.0.1:9/{hostile}", description=f'"><img src=x onerror=alert(2)>{hostile}'
    )
    event = conn.execute(
        "insert into outbox.event (action, project_id, row_ids, chunk_size) values ('PING', 1, '{1}', 1) returning id"
    ).fetchone()["id"]
    conn.execute(
        "insert into outbox.payload (event_id, chunk, ready_at, built_at, row_start, row_end, body)"
        " values (%s, 0, now(), now(), 0, 1, convert_to(%s, 'UTF8'))",
        (event, '{"action": "PING", "x": "</pre><script>alert(3)</script>"}'),
    )
    delivery = conn.execute(
        "insert into outbox.delivery (event_id, webhook_id, project_id, state, attempts, last_error)"
        " values (%s, %s, 1, 'dead', 1, %s) returning id",
        (event, created["id"], hostile),
    ).fetchone()["id"]
    conn.execute(
        "insert into outbox.attempt (delivery_id, attempt, started_at, duration_ms, status_code, error_class,"
        " error, response_body, request_headers)"
        " values (%s, 1, now(), 3, 500, 'http_status', %s, %s, %s)",
        (delivery, hostile, f"</pre>{hostile}", '{"X-Evil": "<script>alert(4)</script>"}'),
    )
    pages = [
        f"/webhooks/{created['id']}",
        "/",
        "/deliveries",
        f"/deliveries/{delivery}",
        f"/webhooks/{created['id']}/edit",
    ]
    for path in pages:
        html = logged_in.client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    detail = logged_in.client.get(f"/deliveries/{delivery}").text
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)" in detail


def test_pages_forbid_inline_and_foreign_scripts(logged_in: Browser):
    for path in ("/", "/deliveries", "/pipeline", "/login"):
        answer = (
            logged_in.client.get(path)
            if path != "/login"
            else httpx.get(f"{logged_in.client.base_url}/login")
        )
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", answer.text), path
        assert "http://" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', answer.text))


def test_secrets_and_header_values_are_never_shown(
    logged_in: Browser, console: ApiServer, conn: psycopg.Connection[Any]
):
    created = _webhook(console, secret=SECRET, headers={"Authorization": HEADER_VALUE})
    test = logged_in.post(f"/webhooks/{created['id']}/test", csrf_from=f"/webhooks/{created['id']}")
    delivery = int(test.headers["location"].split("/")[2].split("?")[0])
    # an attempt logged with the value in clear (as no relay does) is still shown masked
    conn.execute(
        "insert into outbox.attempt (delivery_id, attempt, started_at, duration_ms, status_code, request_headers)"
        " values (%s, 1, now(), 1, 200, %s)",
        (delivery, f'{{"Authorization": "{HEADER_VALUE}", "webhook-id": "msg_1"}}'),
    )
    for path in (
        "/",
        f"/webhooks/{created['id']}",
        f"/webhooks/{created['id']}/edit",
        f"/deliveries/{delivery}",
        "/deliveries",
    ):
        html = logged_in.client.get(path).text
        assert SECRET not in html and HEADER_VALUE not in html and "header-value" not in html, path
    assert "Authorization: ***" in logged_in.client.get(f"/webhooks/{created['id']}/edit").text


def test_editing_keeps_a_masked_header_value(logged_in: Browser, console: ApiServer):
    created = _webhook(console, headers={"Authorization": HEADER_VALUE, "X-Team": "a"})
    form = logged_in.client.get(f"/webhooks/{created['id']}/edit").text
    answer = logged_in.client.post(
        f"/webhooks/{created['id']}/edit",
        data={
            "csrf": csrf_of(form),
            "url": "http://127.0.0.1:9/changed",
            "send_for_all_actions": "all",
            "send_payload": "on",
            "headers": "Authorization: ***\nX-Team: b",
            "max_concurrency": "4",
        },
    )
    assert answer.status_code == 303, answer.text
    with console.client() as api:
        after = api.get(f"/api/webhooks/{created['id']}/").json()
    assert after["headers"] == {"Authorization": HEADER_VALUE, "X-Team": "b"}
    assert after["url"] == "http://127.0.0.1:9/changed" and after["max_concurrency"] == 4


def test_a_rotated_secret_is_shown_once(logged_in: Browser, console: ApiServer):
    created = _webhook(console, secret=SECRET)
    answer = logged_in.post(
        f"/webhooks/{created['id']}/rotate-secret", csrf_from=f"/webhooks/{created['id']}"
    )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    shown = re.search(r'<code id="secret">(whsec_[A-Za-z0-9+/=]+)</code>', answer.text)
    assert shown and shown.group(1) != SECRET
    for path in ("/", f"/webhooks/{created['id']}", f"/webhooks/{created['id']}/edit"):
        assert shown.group(1) not in logged_in.client.get(path).text


# -- without authentication --------------------------------------------------------------------


def test_no_auth_mode_needs_no_login_but_still_a_csrf_token(start_console: Any):
    open_console = start_console(admin_token=None)
    _webhook(open_console)
    with httpx.Client(base_url=open_console.url) as client:
        page = client.get("/webhooks/1")
        assert page.status_code == 200 and "no authentication" in page.text
        assert "HttpOnly" in page.headers["set-cookie"]
        assert client.post("/webhooks/1/pause", data={}).status_code == 403
        assert _active(open_console)
        assert client.post("/webhooks/1/pause", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert not _active(open_console)
    # another site's page cannot use it either
    with httpx.Client(base_url=open_console.url) as stranger:
        assert stranger.post("/webhooks/1/resume", data={"csrf": "x"}).status_code == 403
    assert not _active(open_console)


def test_the_api_and_the_console_share_one_app(console: ApiServer):
    """``outbox up`` mounts outbox.api.app's app: the console is part of it, not a second one."""
    app = create_app(api_settings(), console.database_url, admin_token=ADMIN_TOKEN)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/static"} <= paths


def test_a_urls_password_is_never_shown_and_kept_when_sent_back_masked(
    logged_in: Browser, console: ApiServer, conn: psycopg.Connection[Any]
):
    """A broker's (or HTTP basic auth's) password in a webhook URL: listings show the URL without
    credentials, the edit form shows it masked, and sending the form back keeps the password."""
    password = "brokerPassw0rd-never-shown"
    created = _webhook(console, url=f"http://user:{password}@127.0.0.1:9/hook?token=also-secret")
    for path in ("/", f"/webhooks/{created['id']}", f"/webhooks/{created['id']}/delete", "/deliveries"):
        html = logged_in.client.get(path).text
        assert password not in html and "also-secret" not in html, path
    form = logged_in.client.get(f"/webhooks/{created['id']}/edit").text
    assert password not in form and "user:***@127.0.0.1:9" in form
    answer = logged_in.client.post(
        f"/webhooks/{created['id']}/edit",
        data={
            "csrf": csrf_of(form),
            "url": "http://user:***@127.0.0.1:9/moved?token=also-secret",
            "send_for_all_actions": "all",
            "send_payload": "on",
            "max_concurrency": "8",
        },
    )
    assert answer.status_code == 303, answer.text
    with console.client() as api:
        after = api.get(f"/api/webhooks/{created['id']}/").json()
    assert after["url"] == "http://user:***@127.0.0.1:9/moved?token=also-secret"  # listed masked
    stored = conn.execute("select url from outbox.webhook where id = %s", (created["id"],)).fetchone()
    assert stored["url"] == f"http://user:{password}@127.0.0.1:9/moved?token=also-secret"
