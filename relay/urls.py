"""Where a relay may send, and how a URL is written in logs (pure).

Cloud metadata and link-local addresses are always refused, after DNS resolution as well as for
literal IPs; loopback and private ranges only with OUTBOX_BLOCK_PRIVATE_NETWORKS (self-hosted
receivers such as ML backends live there). URLs are logged without credentials or query string.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class AddressPolicy:
    block_private_networks: bool = False
    https_only: bool = False


def blocked_address(address: str, policy: AddressPolicy) -> str | None:
    """Why sending to this IP address is refused, or None when it is allowed."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in _ALWAYS_BLOCKED:
        if ip.version == network.version and ip in network:
            return f"address {ip} is link-local, metadata or otherwise unroutable: always refused"
    if policy.block_private_networks and not ip.is_global:
        return f"address {ip} is loopback or private, refused by OUTBOX_BLOCK_PRIVATE_NETWORKS"
    return None


def blocked_url(url: str, policy: AddressPolicy) -> str | None:
    """Why this URL is refused before any connection is made, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http or https"
    if policy.https_only and parts.scheme != "https":
        return "plain http refused by OUTBOX_HTTPS_ONLY"
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a name: checked once resolved
    return blocked_address(host, policy)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: no credentials, query string or fragment (they may be secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"
