"""The admin side's pure parts: webhook rules, error translation, cursors, auth, metric families."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from outbox.admin import actions, validation
from outbox.admin.deliveries import decode_cursor, encode_cursor
from outbox.admin.errors import Invalid, field_errors, flatten
from outbox.admin.metrics import LATENCY_BUCKETS, Latency, Snapshot, registry
from outbox.admin.models import RecoverRequest, WebhookCreate, WebhookUpdate
from outbox.api.app import ConfigurationError, check_auth
from outbox.api.auth import check
from outbox.api.errors import Unauthorized
from outbox.config import Settings
from relay.signing import generate_secret

LS_TRANSCRIPT = Path(__file__).parents[1] / "integration" / "api" / "data" / "ls-1.23.2-webhooks-api.json"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/hook", True),
        ("HTTP://EXAMPLE.COM", True),
        ("http://user:pw@host:8080/p?q=1#f", True),
        ("http://[::1]:9000/", True),
        ("ftp://example.com/", False),
        ("example.com/hook", False),
        ("http://", False),
        ("http://host:70000/", False),
        ("http://host/a b", False),
        ("http://host/\x00", False),
        ("http://host/\ud800", False),
        ("", False),
        ("https://h/" + "a" * 2048, False),
    ],
)
def test_url_rules(url, ok):
    assert (validation.url_problems(url) == []) is ok


def test_header_rules_never_show_values():
    assert validation.header_problems({"Authorization": "Bearer x", "X-Id": "1"}) == []
    problems = validation.header_problems(
        {"Host": "evil", "X-A": "sec\r\nret", "bad name": "sec", "X-N": 5, "X-U": "\ud800"}
    )
    assert len(problems) == 5
    assert not any("sec" in p or "evil" in p for p in problems)
    assert validation.header_problems([]) and validation.header_problems({f"h{i}": "v" for i in range(11)})


def test_secret_rules_and_masking():
    secret = generate_secret()
    assert validation.secret_problem(secret) is None
    assert validation.secret_problem(generate_secret(24)) is None
    assert validation.secret_problem("whsec_" + "QUJD" * 4) is not None  # 12 bytes
    assert validation.secret_problem("whsec_not base64!") is not None
    masked = validation.mask_secret(secret)
    assert masked == "whsec_****" + secret[-4:] and validation.is_masked(masked)
    assert not validation.is_masked(secret)


def test_field_errors_read_like_label_studios():
    with pytest.raises(ValidationError) as caught:
        WebhookCreate.model_validate(
            {
                "project": "abc",
                "send_payload": "maybe",
                "is_active": None,
                "actions": ["nope", "TASKS_CREATED", 3],
            }
        )
    errors = field_errors(caught.value.errors())
    assert errors == {
        "url": ["This field is required."],
        "project": ["Incorrect type. Expected pk value, received str."],
        "send_payload": ["Must be a valid boolean."],
        "is_active": ["This field may not be null."],
        "actions": {"0": ['"nope" is not a valid choice.'], "2": ['"value" is not a valid choice.']},
    }
    assert ("actions.0", '"nope" is not a valid choice.') in flatten(errors)
    # a name of the right form is the registry's to know: Label Studio's message, by index
    assert validation.unknown_actions(["TASKS_CREATED", "NOPE"], {"TASKS_CREATED"}) == {
        "1": ['"NOPE" is not a valid choice.']
    }
    with pytest.raises(ValidationError) as caught:
        WebhookCreate.model_validate([1, 2])
    assert field_errors(caught.value.errors()) == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }
    assert "url: This field may not be blank." in str(Invalid({"url": ["This field may not be blank."]}))


def test_update_knows_what_was_sent_and_strict_types():
    update = WebhookUpdate.model_validate({"url": "https://h/", "id": 3, "created_at": "x"})
    assert update.model_fields_set == {"url"}
    with pytest.raises(ValidationError):
        WebhookUpdate.model_validate({"max_concurrency": True})
    with pytest.raises(ValidationError):
        WebhookUpdate.model_validate({"retry_schedule": [False]})
    with pytest.raises(ValidationError):
        RecoverRequest.model_validate({"since": 1700000000})
    assert RecoverRequest.model_validate({"since": "2026-01-01T00:00:00Z"}).since.year == 2026


def test_cursors_round_trip_and_refuse_garbage():
    assert decode_cursor(encode_cursor(12345)) == 12345
    for garbage in ("", "abc", encode_cursor(0), "YWZ0ZXI6MQ"):
        with pytest.raises(Invalid):
            decode_cursor(garbage)


def test_info_is_label_studios():
    recorded = {step["name"]: step["response"] for step in json.loads(LS_TRANSCRIPT.read_text())}
    for name, parameter in (("info", None), ("info_org_only", "true"), ("info_not_org_only", "false")):
        ours = {k: v.model_dump(by_alias=True) for k, v in actions.info(actions.SEED, parameter).items()}
        assert ours == recorded[name]
        assert list(ours) == list(recorded[name])
    # Label Studio: any value but "true" means false
    assert actions.info(actions.SEED, "yes") == actions.info(actions.SEED, "false")


def test_auth_header_forms():
    check(None, None)  # auth off
    check("Token s3cret-token", "s3cret-token")
    check("bearer s3cret-token", "s3cret-token")
    for header in (None, "", "Token", "Basic s3cret-token", "Token other", "Token s3cret-tokenX", "Token ü"):
        with pytest.raises(Unauthorized):
            check(header, "s3cret-token")


def test_starting_without_a_token_needs_no_auth_on_loopback():
    with pytest.raises(ConfigurationError, match="OUTBOX_ADMIN_TOKEN"):
        check_auth(Settings(admin_token=None), "127.0.0.1", no_auth=False)
    with pytest.raises(ConfigurationError, match="127.0.0.1"):
        check_auth(Settings(admin_token=None), "0.0.0.0", no_auth=True)
    with pytest.raises(ConfigurationError, match="too short"):
        check_auth(Settings(admin_token="short"), "127.0.0.1", no_auth=False)
    assert check_auth(Settings(admin_token=None), "127.0.0.1", no_auth=True) is None
    assert (
        check_auth(Settings(admin_token="a-long-enough-token"), "0.0.0.0", no_auth=False)
        == "a-long-enough-token"
    )


def test_metric_families_from_a_snapshot():
    buckets = tuple(1 if bound >= 0.05 else 0 for bound in LATENCY_BUCKETS)
    text = generate_latest(registry(Snapshot(
        changes_pending=2, events={"TASKS_CREATED": 3}, deliveries={"pending": 4, "dead": 1},
        failing=1, queue_depth=3, oldest_pending_age=12.5, relays_alive=2,
        webhooks={"active": 1}, latency={"success": Latency(buckets, 0.05, 1)},
    ))).decode()  # fmt: skip
    for line in (
        'outbox_events{action="TASKS_CREATED"} 3.0',
        'outbox_deliveries{state="dead"} 1.0',
        'outbox_deliveries{state="delivered"} 0.0',
        "outbox_dead_deliveries 1.0",
        "outbox_queue_depth 3.0",
        "outbox_oldest_pending_delivery_age_seconds 12.5",
        "outbox_relays_alive 2.0",
        'outbox_webhooks{status="paused"} 0.0',
        'outbox_attempt_duration_seconds_bucket{le="0.025",outcome="success"} 0.0',
        'outbox_attempt_duration_seconds_bucket{le="0.05",outcome="success"} 1.0',
        'outbox_attempt_duration_seconds_count{outcome="failure"} 0.0',
    ):
        assert line in text, line
