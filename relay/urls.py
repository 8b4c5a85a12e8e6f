"""Where a relay may send, and how a URL is written in logs (pure).

Cloud metadata and link-local addresses are always refused, after DNS resolution as well as for
literal IPs; loopback and private ranges only with OUTBOX_BLOCK_PRIVATE_NETWORKS (self-hosted
receivers such as ML backends live there). An address is judged by where packets to it go: an
IPv6 address that embeds an IPv4 address (mapped, translated, compatible, NAT64, 6to4, Teredo) is
judged as that IPv4 address, and a host written as a number (``2852039166``, ``0xa9fea9fe``,
``0251.0376.0251.0376``, ``169.254.43518``) as the IPv4 address the OS resolves it to. URLs are
logged without credentials or query string.

URLs are parsed as the HTTP client (aiohttp) parses them, with yarl: a different parser could see
another host (``http://１６９.２５４.１６９.２５４/`` is a name to urlsplit, the literal address
169.254.169.254 to yarl, which aiohttp then connects to without resolving anything).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL  # aiohttp's URL parser: the host judged must be the host it connects to

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALWAYS_BLOCKED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 (AWS, GCP, Azure metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this network": reaches the local host on Linux
        "::/128",
        "224.0.0.0/4",  # multicast
        "ff00::/8",
    )
)

# IPv6 prefixes whose low 32 bits are the IPv4 address the packets are delivered to.
_LOW_32_BITS_EMBED_IPV4 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT); ::ffff:0:0/96, IPv4-mapped, is ipv4_mapped
        "64:ff9b::/96",  # NAT64 well-known prefix
        # NAT64 local-use prefix: operators carve /96s from it; judged by the /96 layout
        # (address in the low 32 bits), the one NAT64 gateways use.
        "64:ff9b:1::/48",
        "::/96",  # IPv4-compatible (deprecated, still routed by some stacks); :: and ::1 excepted
    )
)


class Reach(enum.Enum):
    """How far an address reaches, for the policy."""

    PUBLIC = "public"
    # loopback, private, shared and reserved ranges: refused with OUTBOX_BLOCK_PRIVATE_NETWORKS
    PRIVATE = "private"
    # link-local, cloud metadata, "this network", multicast: always refused
    UNROUTABLE = "unroutable"


@dataclass(frozen=True)
class AddressPolicy:
    block_private_networks: bool = False
    https_only: bool = False
    # brokers: only amqps://, tls:// (NATS) and rediss:// (OUTBOX_BROKER_TLS_ONLY)
    tls_only: bool = False


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address packets to this IPv6 address are delivered to, when it embeds one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour  # the 6to4 relay router at that IPv4 address
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): the data goes to the client's address
    if int(ip) <= 1:
        return None  # :: and ::1 are themselves, not IPv4-compatible 0.0.0.0 / 0.0.0.1
    for network in _LOW_32_BITS_EMBED_IPV4:
        if ip in network:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


# One part of a numeric IPv4 host as inet_aton (glibc, and so getaddrinfo) reads it: C integer
# syntax, hexadecimal after 0x, octal after a leading 0, decimal otherwise.
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
# The largest value of the last part for 1, 2, 3 or 4 parts: a, a.b (b: 24 bits), a.b.c (c: 16 bits).
_LAST_PART_MAX = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the OS resolves a numeric host to (inet_aton semantics), or None.

    ``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376`` and ``169.254.43518`` all are
    169.254.169.254 to getaddrinfo, without any DNS query.
    """
    parts = host.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        if not _NUMBER.fullmatch(part):
            return None
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:].lstrip("0") or "0", 16
        elif part.startswith("0"):
            digits, base = part.lstrip("0") or "0", 8
        else:
            digits, base = part, 10
        if len(digits) > 11:  # over 32 bits in any base; int() of a long string is not free
            return None
        values.append(int(digits, base))
    *leading, last = values
    if any(v > 0xFF for v in leading) or last > _LAST_PART_MAX[len(leading)]:
        return None
    address = 0
    for i, value in enumerate(leading):
        address |= value << (24 - 8 * i)
    return ipaddress.IPv4Address(address | last)


def reach(address: str) -> tuple[Reach, IPAddress]:
    """How far an IP address reaches, and the address that was judged (an embedded IPv4)."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = embedded_ipv4(ip) or ip
    for network in _ALWAYS_BLOCKED:
        if ip.version == network.version and ip in network:
            return Reach.UNROUTABLE, ip
    if not ip.is_global:
        return Reach.PRIVATE, ip
    return Reach.PUBLIC, ip


def blocked_address(address: str, policy: AddressPolicy) -> str | None:
    """Why sending to this IP address is refused, or None when it is allowed."""
    verdict, judged = reach(address)
    shown = address if str(judged) == address else f"{address} (IPv4 {judged})"
    if verdict is Reach.UNROUTABLE:
        return f"address {shown} is link-local, metadata or otherwise unroutable: always refused"
    if verdict is Reach.PRIVATE and policy.block_private_networks:
        return f"address {shown} is loopback or private, refused by OUTBOX_BLOCK_PRIVATE_NETWORKS"
    return None


def blocked_host(host: str, policy: AddressPolicy) -> str | None:
    """Why this URL host is refused before any connection is made, or None (a name is judged by
    the addresses it resolves to, once resolved)."""
    literal = host.split("%", 1)[0].removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        number = numeric_ipv4(literal)
        return None if number is None else blocked_address(str(number), policy)
    return blocked_address(host.removeprefix("[").removesuffix("]"), policy)


# Pure (no name is resolved here): the relay judges the same few webhook hosts for every request.
@functools.lru_cache(maxsize=4096)
def blocked_target(scheme: str, host: str, policy: AddressPolicy) -> str | None:
    """Why a request to ``scheme://host`` is refused before any connection is made, or None."""
    if scheme not in ("http", "https"):
        return f"scheme {scheme!r} is not http or https"
    if policy.https_only and scheme != "https":
        return "plain http refused by OUTBOX_HTTPS_ONLY"
    return blocked_host(host, policy)


def blocked_broker(tls: bool, host: str, policy: AddressPolicy) -> str | None:
    """Why publishing to a broker at ``host`` is refused before any connection is made, or None
    (a name is judged by the addresses it resolves to, once resolved)."""
    if policy.tls_only and not tls:
        return "a broker without TLS refused by OUTBOX_BROKER_TLS_ONLY"
    return blocked_host(host, policy)


def blocked_url(url: str | URL, policy: AddressPolicy) -> str | None:
    """Why this URL is refused before any connection is made, or None. ValueError when it cannot
    be parsed; send the ``URL`` judged here, so that the host connected to is the host judged."""
    parsed = URL(url)
    return blocked_target(parsed.scheme, parsed.raw_host or "", policy)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: no credentials, query string or fragment (they may be secret).

    Never raises: the URL may come from a receiver (a redirect's Location)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "an unparseable URL"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"
