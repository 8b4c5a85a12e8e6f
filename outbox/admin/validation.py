"""The rules a webhook must follow, as pure functions (the same rules as the CHECK constraints of
``sql/0001_schema.sql``, so the API and CLI reject a bad webhook before the database does).

Each returns the problems it found as messages for people. No message ever contains a header value,
a secret or a URL: they are often credentials.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from relay import brokers
from relay.signing import PREFIX as SECRET_PREFIX

MAX_URL_LENGTH = 2048
# actions one webhook may list
MAX_ACTIONS = 1000
# the form of an action name (outbox.check_action, sql/0007_actions.sql)
ACTION_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")
MAX_HEADERS = 10
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8192
# set by outbox on every request: a webhook cannot override them (lower case)
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    }
)

INVALID_URL = "Enter a valid URL: an absolute http:// or https:// URL."
ORGANIZATION_ONLY_IN_PROJECT = "Project webhook can't contain organization-only action."
SECRET_FORMAT = (
    f'webhook secret must be "{SECRET_PREFIX}" followed by the base64 of 24 to 64 random bytes '
    "(`outbox webhooks rotate-secret` makes one)"
)

_HEADER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# sql/0001_schema.sql's check_webhook_secret says the same; tests/integration/test_rules_agree.py
# runs one table of cases through both
SECRET_BYTES = (24, 64)
_SECRET = re.compile(rf"^{SECRET_PREFIX}[A-Za-z0-9+/]+={{0,2}}$")
_MASKED = re.compile(rf"^{SECRET_PREFIX}\*{{4}}[A-Za-z0-9+/=]{{0,4}}$")


def encodable(text: str) -> bool:
    """Whether PostgreSQL can store ``text``: UTF-8 encodable (no lone surrogates) and no NUL."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def url_problems(url: str) -> list[str]:
    """Why ``url`` cannot be a webhook URL (empty when it can)."""
    if not url:
        return ["This field may not be blank."]
    problems = []
    if len(url) > MAX_URL_LENGTH:
        problems.append(f"Ensure this field has no more than {MAX_URL_LENGTH} characters.")
    if not encodable(url) or _WHITESPACE_OR_CONTROL.search(url):
        problems.append("Enter a valid URL: it must not contain whitespace or control characters.")
        return problems
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return [*problems, INVALID_URL]
    broker = brokers.broker_of(url)
    if broker is not None:
        return [*problems, *broker_url_problems(url, broker)]
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        problems.append(INVALID_URL)
    return problems


def broker_url_problems(url: str, broker: brokers.Broker) -> list[str]:
    """Why a broker URL (amqp://, nats://, redis:// and their TLS forms) cannot be a webhook URL:
    it does not say where to publish, or this installation lacks the broker's client."""
    try:
        brokers.parse(url)
    except ValueError as exc:  # parse's messages never repeat the URL
        return [f"Enter a valid {broker} URL: {exc} (docs/destinations.md)."]
    missing = brokers.extra_missing(broker)
    return [f"Cannot deliver to {broker}: {missing}."] if missing else []


def header_problems(headers: Any) -> list[str]:
    """Why ``headers`` cannot be a webhook's static headers: a JSON object of name to string."""
    if not isinstance(headers, Mapping):
        return ['Headers must be a JSON object of header name to string value, e.g. {"X-Token": "..."}.']
    if len(headers) > MAX_HEADERS:
        return [f"At most {MAX_HEADERS} headers are allowed."]
    problems = []
    for name, value in headers.items():
        if not isinstance(name, str) or not name or len(name) > MAX_HEADER_NAME:
            problems.append(f"Header names have 1 to {MAX_HEADER_NAME} characters.")
            continue
        if not _HEADER_NAME.match(name):
            problems.append(
                "Header names may contain only letters, digits, '-' and '_' "
                f"(header #{list(headers).index(name) + 1} does not)."
            )
            continue
        if name.lower() in RESERVED_HEADERS:
            problems.append(f'Header "{name}" is set by outbox and cannot be overridden.')
        elif not isinstance(value, str):
            problems.append(f'Header "{name}" must have a string value.')
        elif not encodable(value) or _CONTROL.search(value):
            problems.append(f'Header "{name}" must not contain control characters or newlines.')
        elif len(value) > MAX_HEADER_VALUE:
            problems.append(f'Header "{name}" is longer than {MAX_HEADER_VALUE} characters.')
    return problems


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is not a valid signing secret, or None."""
    if not _SECRET.match(secret):
        return SECRET_FORMAT
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return SECRET_FORMAT
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        return SECRET_FORMAT
    return None


def organization_only_problem(
    project_id: int | None, actions: list[str], organization_only: Collection[str]
) -> str | None:
    """A project-level webhook cannot take actions only organization-level webhooks get
    (``organization_only``: those of the registry)."""
    if project_id is not None and any(action in organization_only for action in actions):
        return ORGANIZATION_ONLY_IN_PROJECT
    return None


def unknown_actions(actions: list[str], registered: Collection[str]) -> dict[str, list[str]]:
    """The listed actions the registry does not hold, by their index (Label Studio's message)."""
    return {
        str(index): [f'"{action}" is not a valid choice.']
        for index, action in enumerate(actions)
        if action not in registered
    }


def is_masked(secret: str) -> bool:
    """Whether ``secret`` is what ``mask_secret`` shows (a client sending back what it read)."""
    return bool(_MASKED.match(secret))


def mask_secret(secret: str | None) -> str | None:
    """How a secret is shown: the prefix and its last four characters, enough to tell two apart."""
    if secret is None:
        return None
    return SECRET_PREFIX + "****" + secret[-4:]


URL_MASK = "***"


def masked_url(url: str) -> str:
    """``url`` with the password of its credentials (a broker's, or HTTP basic auth) as
    URL_MASK: what every listing of a webhook shows (API, CLI, console)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = f"{parts.username or ''}:{URL_MASK}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def unmasked_url(given: str, current: str) -> str:
    """A URL sent back with its password still URL_MASK gets the current URL's password (a client
    editing what it read), as a masked secret keeps the secret."""
    try:
        parts = urlsplit(given)
        password = parts.password
        kept = urlsplit(current).password
    except ValueError:
        return given  # url_problems says what is wrong with it
    if password != URL_MASK or kept is None:
        return given
    netloc = f"{parts.username or ''}:{kept}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))
