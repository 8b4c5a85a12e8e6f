"""Where a relay may send (relay/urls.py)."""

from __future__ import annotations

import pytest

from relay.urls import AddressPolicy, blocked_address, blocked_url, redact_url

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
