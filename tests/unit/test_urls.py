"""Where a relay may send (relay/urls.py)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from relay.urls import (
    AddressPolicy,
    Reach,
    blocked_address,
    blocked_host,
    blocked_url,
    numeric_ipv4,
    reach,
    redact_url,
)

OPEN = AddressPolicy()
CLOSED = AddressPolicy(block_private_networks=True)


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "100.100.100.200", "0.0.0.0", "fd00:ec2::254"],
)
def test_metadata_and_link_local_are_always_refused(address):
    assert blocked_address(address, OPEN)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "192.168.0.7", "172.16.5.5", "::1", "fc00::1", "100.64.0.1"]
)
def test_private_ranges_only_when_asked(address):
    assert blocked_address(address, OPEN) is None
    assert "OUTBOX_BLOCK_PRIVATE_NETWORKS" in (blocked_address(address, CLOSED) or "")


def test_public_addresses_pass():
    assert blocked_address("93.184.216.34", CLOSED) is None


def test_urls_are_checked_before_connecting():
    assert blocked_url("http://169.254.169.254/latest/meta-data", OPEN)
    assert blocked_url("http://hooks.example.com/x", OPEN) is None  # names are checked once resolved
    assert (
        blocked_url("http://example.com/", AddressPolicy(https_only=True))
        == "plain http refused by OUTBOX_HTTPS_ONLY"
    )
    assert blocked_url("ftp://example.com/", OPEN)


def test_logged_urls_carry_no_credentials_or_query():
    assert (
        redact_url("https://user:pw@hooks.example.com:8443/in?token=abc#x")
        == "https://hooks.example.com:8443/in?…"
    )
    assert redact_url("http://[::1]:9000/p") == "http://[::1]:9000/p"


# -- issue 9 item 5: IPv6 forms of IPv4 and numeric host spellings --------------------------

ipv4s = st.ip_addresses(v=4)


def _mapped(v4: IPv4Address, _: int) -> str:
    return f"::ffff:{v4}"


def _translated(v4: IPv4Address, _: int) -> str:
    return f"::ffff:0:{v4}"


def _compatible(v4: IPv4Address, _: int) -> str:
    return f"::{v4}"


def _nat64(v4: IPv4Address, _: int) -> str:
    return f"64:ff9b::{v4}"


def _nat64_local(v4: IPv4Address, noise: int) -> str:
    # anywhere in 64:ff9b:1::/48, the IPv4 address in the low 32 bits
    prefix = int(IPv6Address("64:ff9b:1::"))
    return str(IPv6Address(prefix | (noise % 2**48) << 32 | int(v4)))


def _sixtofour(v4: IPv4Address, noise: int) -> str:
    return str(IPv6Address(0x2002 << 112 | int(v4) << 80 | noise % 2**80))


def _teredo(v4: IPv4Address, noise: int) -> str:
    # 2001:0::/32, server IPv4, flags and port, then the client IPv4 with every bit flipped
    server = noise % 2**32
    flags_port = (noise >> 32) % 2**32
    return str(IPv6Address(0x20010000 << 96 | server << 64 | flags_port << 32 | (~int(v4) & 0xFFFFFFFF)))


FORMS = [_mapped, _translated, _compatible, _nat64, _nat64_local, _sixtofour, _teredo]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__.strip("_"))
@given(v4=ipv4s, noise=st.integers(min_value=0, max_value=2**80 - 1))
def test_an_ipv6_address_is_judged_by_the_ipv4_it_embeds(form, v4, noise):
    """issue 9 item 5: every IPv6 form of an IPv4 address gets the verdict of that address."""
    if form is _compatible:
        assume(int(v4) > 1)  # ::0.0.0.0 is ::, ::0.0.0.1 is ::1: IPv6 addresses of their own
    address = form(v4, noise)
    assert reach(address) == reach(str(v4))
    for policy in (OPEN, CLOSED):
        assert (blocked_address(address, policy) is None) == (blocked_address(str(v4), policy) is None)
        host = f"[{address}]"
        assert (blocked_host(host, policy) is None) == (blocked_address(str(v4), policy) is None)


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
        "http://[64:ff9b:1::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",  # 6to4
        "http://[::169.254.169.254]/",  # IPv4-compatible
        "http://[::ffff:0:169.254.169.254]/",  # IPv4-translated
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo, client 169.254.169.254
        "http://2852039166/",
        "http://0251.0376.0251.0376/",
        "http://0xa9fea9fe/",
        "http://0XA9FEA9FE/",
        "http://169.254.43518/",
        "http://169.16689662/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0000000251.254.169.254/",
        # fullwidth digits and ideographic full stops: an IDNA host that is the literal address
        "http://１６９.２５４.１６９.２５４/",
        "http://169。254。169。254/",
    ],
)
def test_metadata_in_any_spelling_is_always_refused(url):
    """issue 9 item 5: the spellings that reached 169.254.169.254 are refused as it is."""
    assert "always refused" in (blocked_url(url, OPEN) or "")
    assert "always refused" in (blocked_url(url, CLOSED) or "")


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]"]
)
def test_loopback_spellings_follow_block_private_networks(host):
    """issue 9 item 5: loopback stays allowed by default, in any spelling, and is refused with
    OUTBOX_BLOCK_PRIVATE_NETWORKS."""
    assert blocked_url(f"http://{host}:8080/", OPEN) is None
    assert "OUTBOX_BLOCK_PRIVATE_NETWORKS" in (blocked_url(f"http://{host}:8080/", CLOSED) or "")


def test_loopback_and_unspecified_ipv6_are_themselves():
    assert reach("::1")[0] is Reach.PRIVATE
    assert reach("::")[0] is Reach.UNROUTABLE


@st.composite
def numeric_spellings(draw: st.DrawFn) -> tuple[IPv4Address, str]:
    """An IPv4 address and one way of writing it as inet_aton reads it: 1 to 4 parts, each in
    decimal, octal or hexadecimal, with leading zeros."""
    v4 = draw(ipv4s)
    count = draw(st.integers(1, 4))
    octets = list(v4.packed)
    values = [*octets[: count - 1], int.from_bytes(bytes(octets[count - 1 :]))]
    parts = []
    for value in values:
        base = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        zeros = "0" * draw(st.integers(0, 3))
        if base == "dec":
            parts.append(str(value))
        elif base == "oct":
            parts.append(f"0{zeros}{value:o}")
        else:
            parts.append(f"0x{zeros}{value:x}" if base == "hex" else f"0X{zeros}{value:X}")
    return v4, ".".join(parts)


@given(numeric_spellings())
def test_a_numeric_host_is_judged_by_the_ipv4_address_it_spells(spelled):
    """issue 9 item 5: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518... get the
    verdict of the address the OS resolves them to."""
    v4, host = spelled
    assert numeric_ipv4(host) == v4
    for policy in (OPEN, CLOSED):
        assert blocked_host(host, policy) == blocked_address(str(v4), policy)


@given(st.text(alphabet="0123456789abcdefxX.", max_size=24))
def test_numeric_hosts_are_read_as_the_c_library_reads_them(host):
    """issue 9 item 5: the spellings this module reads as numbers are exactly those inet_aton
    (the C library's parser, which getaddrinfo uses for numeric hosts) reads, as the same address."""
    try:
        expected: IPv4Address | None = IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert numeric_ipv4(host) == expected


def test_names_are_left_to_the_resolver():
    for host in ("hooks.example.com", "0x7f.example", "1.2.3.4.5", "08.0.0.1", "4294967296", ""):
        assert blocked_host(host, CLOSED) is None


def test_a_hostile_location_is_redacted_without_raising():
    """issue 9 siblings: a redirect's Location comes from the receiver."""
    assert redact_url("http://[::1/x") == "an unparseable URL"
