"""The console's session cookie and CSRF tokens: pure functions of a key, a cookie and the time.

A session is ``<issued>.<nonce>.<mac>``: when it was issued (Unix seconds), 18 random bytes, and
an HMAC-SHA256 of both under the console key. Nothing is stored on the server, so every API
process behind a load balancer accepts the same cookie, and changing ``OUTBOX_ADMIN_TOKEN`` (the
key is derived from it) ends every session at once. A session is always issued fresh at login,
never taken from the request: a cookie planted beforehand cannot become a logged-in session.

CSRF tokens are bound to the session: ``HMAC(key, "csrf" + session)``. A page of another site can
make the browser send the cookie (not with SameSite=Strict, but older browsers ignore it), yet it
cannot read a page to learn the token. Login, which has no session yet, uses a double submit: a
random value in a SameSite=Strict cookie and the same value in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "outbox_session"
LOGIN_COOKIE = "outbox_login"
LIFETIME_SECONDS = 12 * 3600
# login forms are good for this long (the login cookie's max-age)
LOGIN_SECONDS = 3600


def key_for(admin_token: str | None) -> bytes:
    """The key sessions are signed with: derived from the admin token (so that every process
    serving the console agrees), or random when authentication is off (sessions then only carry
    CSRF tokens, and last as long as the process)."""
    if admin_token is None:
        return secrets.token_bytes(32)
    return hashlib.sha256(b"outbox console session key\0" + admin_token.encode()).digest()


def _mac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, now: float) -> str:
    """A new session cookie value."""
    value = f"{int(now)}.{secrets.token_urlsafe(18)}"
    return f"{value}.{_mac(key, 'session', value)}"


def verify(key: bytes, cookie: str | None, now: float) -> str | None:
    """``cookie`` when it is a session this key issued less than ``LIFETIME_SECONDS`` ago, else
    None. Any malformed value is simply not a session."""
    if not cookie or len(cookie) > 200:
        return None
    value, _, mac = cookie.rpartition(".")
    issued, _, nonce = value.partition(".")
    if not issued.isdigit() or not nonce:
        return None
    if not hmac.compare_digest(mac.encode("utf-8", "replace"), _mac(key, "session", value).encode()):
        return None
    age = now - int(issued)
    if not -60 <= age < LIFETIME_SECONDS:  # a minute of clock skew between processes
        return None
    return cookie


def csrf_token(key: bytes, session: str) -> str:
    """The token every state-changing form of this session carries."""
    return _mac(key, "csrf", session)


def csrf_valid(key: bytes, session: str | None, given: str | None) -> bool:
    """Whether ``given`` is this session's CSRF token (constant time)."""
    if session is None or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), csrf_token(key, session).encode())


def login_nonce() -> str:
    """The double-submit value of one login form."""
    return secrets.token_urlsafe(24)


def same_value(cookie: str | None, given: str | None) -> bool:
    """The login form's double submit: the cookie and the field agree (constant time)."""
    if not cookie or not given:
        return False
    return hmac.compare_digest(cookie.encode("utf-8", "replace"), given.encode("utf-8", "replace"))


def local_path(target: str | None) -> str:
    """Where to go after login: ``target`` if it is a path of this site, else ``/`` (never
    another site: ``//evil.example`` and ``/\\evil.example`` are other sites to a browser)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in target) or len(target) > 2000:
        return "/"
    return target
