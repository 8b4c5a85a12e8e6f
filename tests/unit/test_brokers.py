"""Broker URLs (relay/brokers.py) and their validation (outbox/admin/validation.py): pure."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.admin.validation import url_problems
from relay import brokers
from relay.brokers import Broker, action_of, broker_of, parse
from relay.urls import AddressPolicy, blocked_broker, redact_url


def test_amqp_defaults_to_the_default_exchange_and_the_action_as_routing_key():
    target = parse("amqp://u:p%40ss@rabbit.example/")
    assert (target.broker, target.tls, target.port, target.space, target.destination) == (
        Broker.AMQP, False, 5672, "/", "",
    )  # fmt: skip
    assert (target.username, target.password) == ("u", "p@ss")
    assert target.address("TASKS_CREATED") == "TASKS_CREATED"
    given_ = parse("amqps://h:5000/ls%2Fprod?exchange=hooks&routing_key=label-studio")
    assert (given_.tls, given_.port, given_.space, given_.destination) == (True, 5000, "ls/prod", "hooks")
    assert given_.address("TASKS_CREATED") == "label-studio"
    assert parse("amqps://h").port == 5671


def test_nats_subject_takes_the_action():
    target = parse("nats://h/label-studio.{action}")
    assert (target.port, target.address("ANNOTATION_CREATED")) == (4222, "label-studio.ANNOTATION_CREATED")
    assert parse("tls://h:4443/a").tls


def test_redis_names_a_stream_and_optionally_a_maxlen():
    target = parse("rediss://:pw@h:6380/2?stream=ls&maxlen=1000")
    assert (target.tls, target.port, target.space, target.destination, target.maxlen) == (
        True, 6380, "2", "ls", 1000,
    )  # fmt: skip
    assert parse("redis://h?stream=s").space == "0" and parse("redis://h?stream=s").maxlen is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("amqp:///x", "needs a host"),
        ("amqp://h/?exchange=a&exchange=b", "more than once"),
        ("amqp://h/?exchange=" + "e" * 256, "255 bytes"),
        ("amqp://h/?queue=x", "unknown parameter 'queue'"),
        ("amqp://h:99999/", "out of range"),
        ("nats://h", "subject"),
        ("nats://h/a.*", "wildcards"),
        ("nats://h/a..b", "dot-separated"),
        ("redis://h/0", "stream"),
        ("redis://h/x?stream=s", "must be a number"),
        ("redis://h/0?stream=s&maxlen=0", "positive"),
        ("redis://h/0?stream=s&maxlen=-5", "positive"),
        ("redis://h/0?stream=s&maxlen=99999999999999999999999", "positive"),
        ("redis://h/0?stream=s#frag", "fragment"),
    ],
)
def test_a_url_that_does_not_say_where_to_publish_is_refused(url, says):
    with pytest.raises(ValueError, match=says):
        parse(url)


@given(st.text(max_size=80))
def test_parsing_anything_is_a_target_or_a_value_error_that_never_repeats_the_password(noise):
    url = f"amqp://user:hunter2secret@h/{noise}"
    try:
        parse(url)
    except ValueError as exc:
        assert "hunter2secret" not in str(exc)


def test_the_scheme_chooses_the_broker_and_http_is_none():
    assert [broker_of(u) for u in ("AMQPS://h", "tls://h/s", "rediss://h", "https://h", "nothing")] == [
        Broker.AMQP, Broker.NATS, Broker.REDIS, None, None,
    ]  # fmt: skip


def test_the_action_is_read_from_the_bodys_start_or_parsed():
    assert action_of(b'{"action":"TASKS_CREATED","tasks":[]}') == "TASKS_CREATED"
    assert action_of(b'{ "tasks": [], "action": "PROJECT_UPDATED"}') == "PROJECT_UPDATED"
    assert action_of(b"not json") == action_of(b"[1]") == action_of(b'{"action": 3}') == ""


def test_validation_accepts_broker_urls_and_says_what_is_wrong_with_bad_ones():
    assert url_problems("amqp://guest:guest@127.0.0.1:5672/?exchange=x") == []
    assert url_problems("nats://127.0.0.1:4222/ls.{action}") == []
    assert url_problems("redis://127.0.0.1:6379/0?stream=ls&maxlen=10") == []
    (problem,) = url_problems("redis://user:s3cr3tpass@h/0")
    assert "stream" in problem and "s3cr3tpass" not in problem
    assert url_problems("ftp://h/") == ["Enter a valid URL: an absolute http:// or https:// URL."]


def test_a_scheme_whose_client_is_missing_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setattr(brokers.importlib.util, "find_spec", lambda name: None)
    assert url_problems("nats://h/s") == [
        "Cannot deliver to nats: the nats client is not installed: pip install 'outbox[nats]'."
    ]


def test_tls_only_refuses_plain_brokers_and_the_policy_applies_to_broker_hosts():
    tls_only = AddressPolicy(tls_only=True)
    assert "OUTBOX_BROKER_TLS_ONLY" in (blocked_broker(False, "h", tls_only) or "")
    assert blocked_broker(True, "h", tls_only) is None
    assert "always refused" in (blocked_broker(False, "169.254.169.254", AddressPolicy()) or "")
    assert "OUTBOX_BLOCK_PRIVATE_NETWORKS" in (
        blocked_broker(False, "127.0.0.1", AddressPolicy(block_private_networks=True)) or ""
    )


def test_a_broker_url_is_logged_and_listed_without_credentials_or_query():
    shown = redact_url("amqp://user:s3cr3t@h:5672/vhost?exchange=x&routing_key=k")
    assert shown == "amqp://h:5672/vhost?…"


def test_the_relay_imports_no_broker_client_until_a_webhook_uses_one():
    code = "import sys, relay.relay; print(sorted({'aiormq', 'nats', 'redis'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
