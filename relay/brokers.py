"""Broker destinations: what a webhook URL with a broker scheme names (pure; docs/destinations.md).

- ``amqp://user:pass@host:port/vhost?exchange=E&routing_key=K`` (``amqps://``): RabbitMQ; the
  default exchange and the action name as routing key unless given.
- ``nats://user:pass@host:port/SUBJECT`` (``tls://``): a JetStream publish; ``{action}`` in the
  subject is replaced by the action name.
- ``redis://user:pass@host:port/DB?stream=S&maxlen=N`` (``rediss://``): ``XADD S MAXLEN ~ N``.

Each scheme's client library is an optional extra of the package: ``extra_missing`` says whether
it is installed without importing it, so that a webhook is refused when it is created rather than
failing at every attempt.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, unquote, urlsplit

import orjson


class Broker(StrEnum):
    AMQP = "amqp"
    NATS = "nats"
    REDIS = "redis"


# scheme -> (broker, over TLS)
SCHEMES: dict[str, tuple[Broker, bool]] = {
    "amqp": (Broker.AMQP, False),
    "amqps": (Broker.AMQP, True),
    "nats": (Broker.NATS, False),
    "tls": (Broker.NATS, True),
    "redis": (Broker.REDIS, False),
    "rediss": (Broker.REDIS, True),
}
DEFAULT_PORTS = {
    (Broker.AMQP, False): 5672,
    (Broker.AMQP, True): 5671,
    (Broker.NATS, False): 4222,
    (Broker.NATS, True): 4222,
    (Broker.REDIS, False): 6379,
    (Broker.REDIS, True): 6379,
}
# the module each broker's client is imported from, and the extra that installs it
CLIENTS = {Broker.AMQP: "aiormq", Broker.NATS: "nats", Broker.REDIS: "redis"}
ACTION = "{action}"
# AMQP short strings (exchange, routing key) are at most 255 bytes
AMQP_SHORT_STRING = 255
# a NATS subject: tokens separated by dots, no wildcards or whitespace (checked after {action})
_SUBJECT = re.compile(r"^[^.*>\s]+(\.[^.*>\s]+)*$")
# the top-level "action" key the relay's bodies start with: read without parsing the whole body
_ACTION_KEY = re.compile(rb'^\{"action":"([A-Za-z0-9_]{1,64})"')


@dataclass(frozen=True)
class Target:
    """Where one broker URL publishes; ``server`` is everything that names one connection."""

    broker: Broker
    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None
    # AMQP: the vhost; Redis: the database number as text; NATS: ""
    space: str
    # AMQP: exchange; NATS: subject (may hold {action}); Redis: stream
    destination: str
    # AMQP: routing key (None: the action name); Redis: MAXLEN (None: no trimming)
    routing_key: str | None = None
    maxlen: int | None = None

    @property
    def server(self) -> tuple[Broker, bool, str, int, str | None, str | None, str]:
        """One pooled connection per distinct value."""
        return (self.broker, self.tls, self.host, self.port, self.username, self.password, self.space)

    def address(self, action: str) -> str:
        """The exchange's routing key, the subject or the stream this action is published to."""
        if self.broker is Broker.AMQP:
            return action if self.routing_key is None else self.routing_key
        if self.broker is Broker.NATS:
            return self.destination.replace(ACTION, action)
        return self.destination


def broker_of(url: str) -> Broker | None:
    """The broker a URL's scheme names, or None (an HTTP URL, or no URL at all)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return None
    found = SCHEMES.get(scheme.lower())
    return None if found is None else found[0]


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.pop(name, None)
    if values is None:
        return None
    if len(values) != 1:
        raise ValueError(f"{name} is given more than once")
    return values[0]


@functools.lru_cache(maxsize=4096)
def parse(url: str) -> Target:
    """The target of a broker URL (kept for the next message to the same URL); ValueError with a
    message fit for people (it never repeats the URL, which may hold credentials)."""
    parts = urlsplit(url)
    found = SCHEMES.get(parts.scheme.lower())
    if found is None:
        raise ValueError(f"scheme {parts.scheme!r} is not a broker scheme")
    broker, tls = found
    host = parts.hostname
    if not host:
        raise ValueError("a broker URL needs a host")
    port = parts.port or DEFAULT_PORTS[(broker, tls)]  # ValueError for a port out of range
    if parts.fragment:
        raise ValueError("a broker URL has no fragment")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if broker is Broker.AMQP:
        target = _amqp(host, port, tls, username, password, path, query)
    elif broker is Broker.NATS:
        target = _nats(host, port, tls, username, password, path)
    else:
        target = _redis(host, port, tls, username, password, path, query)
    if query:
        raise ValueError(f"unknown parameter {sorted(query)[0]!r} for a {broker} URL")
    return target


def _amqp(
    host: str, port: int, tls: bool, username: str | None, password: str | None, path: str,
    query: dict[str, list[str]],
) -> Target:  # fmt: skip
    vhost = unquote(path) or "/"
    exchange = _one(query, "exchange") or ""
    routing_key = _one(query, "routing_key")
    for name, value in (("exchange", exchange), ("routing_key", routing_key or "")):
        if len(value.encode()) > AMQP_SHORT_STRING:
            raise ValueError(f"the AMQP {name} is longer than {AMQP_SHORT_STRING} bytes")
    if routing_key == "":
        routing_key = None
    return Target(Broker.AMQP, tls, host, port, username, password, vhost, exchange, routing_key)


def _nats(host: str, port: int, tls: bool, username: str | None, password: str | None, path: str) -> Target:
    subject = unquote(path)
    if not subject:
        raise ValueError("a NATS URL names its subject as its path: nats://host:4222/SUBJECT")
    if not _SUBJECT.match(subject.replace(ACTION, "A")):
        raise ValueError("the NATS subject must be dot-separated tokens without wildcards or whitespace")
    return Target(Broker.NATS, tls, host, port, username, password, "", subject)


def _redis(
    host: str, port: int, tls: bool, username: str | None, password: str | None, path: str,
    query: dict[str, list[str]],
) -> Target:  # fmt: skip
    database = path or "0"
    if not database.isascii() or not database.isdigit() or int(database) > 65535:
        raise ValueError("the Redis database (the URL's path) must be a number: redis://host:6379/0")
    stream = _one(query, "stream")
    if not stream:
        raise ValueError("a Redis URL names its stream: redis://host:6379/0?stream=NAME")
    maxlen_text = _one(query, "maxlen")
    maxlen = None
    if maxlen_text is not None:
        if not maxlen_text.isascii() or not maxlen_text.isdigit() or not 0 < int(maxlen_text[:19]) < 2**63:
            raise ValueError("maxlen must be a positive whole number")
        maxlen = int(maxlen_text)
    return Target(Broker.REDIS, tls, host, port, username, password, str(int(database)), stream, None, maxlen)


def action_of(body: bytes) -> str:
    """The action a relay body is about (its top-level ``action``); "" when it names none."""
    found = _ACTION_KEY.match(body[:100])
    if found:
        return found.group(1).decode()
    # a body written some other way: parse it (rare)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    action = value.get("action") if isinstance(value, dict) else None
    return action if isinstance(action, str) else ""


def extra_missing(broker: Broker) -> str | None:
    """Why webhooks of this broker cannot be delivered by this installation, or None: its client
    library (the package's extra) is not installed."""
    if importlib.util.find_spec(CLIENTS[broker]) is not None:
        return None
    return f"the {broker} client is not installed: pip install 'outbox[{broker}]'"
