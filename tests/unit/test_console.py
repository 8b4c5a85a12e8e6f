"""The console's pure parts: session cookies and CSRF tokens, where to go after login, and the
files the package must ship (templates, CSS, htmx) so that a non-editable install serves them."""

from __future__ import annotations

from importlib.resources import files

from hypothesis import given
from hypothesis import strategies as st

from outbox.console import session

KEY = session.key_for("an-admin-token-0123456789")
NOW = 1_800_000_000.0


def test_a_session_verifies_until_it_expires():
    cookie = session.issue(KEY, NOW)
    assert session.verify(KEY, cookie, NOW) == cookie
    assert session.verify(KEY, cookie, NOW + session.LIFETIME_SECONDS - 1) == cookie
    assert session.verify(KEY, cookie, NOW + session.LIFETIME_SECONDS) is None
    assert session.verify(KEY, cookie, NOW - 3600) is None  # issued in the future
    assert session.verify(session.key_for("another-token-0123456789"), cookie, NOW) is None


def test_sessions_are_new_every_time_and_keys_follow_the_token():
    assert session.issue(KEY, NOW) != session.issue(KEY, NOW)
    assert session.key_for("a" * 20) == session.key_for("a" * 20) != session.key_for("b" * 20)
    assert session.key_for(None) != session.key_for(None)  # auth off: a random key per process


@given(st.integers(min_value=0), st.characters(codec="utf-8"))
def test_any_change_to_a_session_breaks_it(position, replacement):
    cookie = session.issue(KEY, NOW)
    index = position % len(cookie)
    changed = cookie[:index] + replacement + cookie[index + 1 :]
    if changed != cookie:
        assert session.verify(KEY, changed, NOW) is None


@given(st.text(max_size=300))
def test_anything_else_is_no_session(text):
    assert session.verify(KEY, text, NOW) is None


def test_csrf_tokens_are_bound_to_their_session():
    one, two = session.issue(KEY, NOW), session.issue(KEY, NOW)
    assert session.csrf_valid(KEY, one, session.csrf_token(KEY, one))
    assert not session.csrf_valid(KEY, one, session.csrf_token(KEY, two))
    assert not session.csrf_valid(KEY, None, session.csrf_token(KEY, one))
    assert not session.csrf_valid(KEY, one, None) and not session.csrf_valid(KEY, one, "")
    assert not session.csrf_valid(KEY, one, "é" + session.csrf_token(KEY, one)[1:])


@given(st.text(max_size=100))
def test_after_login_the_browser_stays_on_this_site(target):
    path = session.local_path(target)
    assert path.startswith("/") and not path.startswith(("//", "/\\"))
    assert "\\" not in path and all(ord(c) >= 0x20 for c in path)


def test_local_paths():
    assert session.local_path("/deliveries?state=dead") == "/deliveries?state=dead"
    for other in ("//evil.example", "/\\evil.example", "https://evil.example/", "javascript:x", "", None):
        assert session.local_path(other) == "/"


def test_the_package_ships_the_console_files():
    console = files("outbox.console")
    for name in ("base.html", "webhooks.html", "delivery.html", "pipeline.html", "login.html"):
        assert (console / "templates" / name).is_file(), name
    for name in ("console.css", "console.js", "htmx.min.js", "htmx.LICENSE"):
        assert (console / "static" / name).is_file(), name
    assert "htmx" in (console / "static" / "htmx.min.js").read_text()[:200]
