"""The adopt plan, a pure decision: what is copied, what is skipped and why, what is switched off in
Label Studio; and that no header value or URL secret is ever part of what it reports."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outbox.admin.adopt import LabelStudioWebhook, plan


def hook(ident: int = 1, **changes: object) -> LabelStudioWebhook:
    values: dict[str, object] = {
        "id": ident,
        "organization_id": 1,
        "project_id": 1,
        "url": "https://hooks.example.com/x",
        "send_payload": True,
        "send_for_all_actions": True,
        "headers": {},
        "is_active": True,
        "actions": (),
    }
    values.update(changes)
    return LabelStudioWebhook(**values)  # type: ignore[arg-type]


def test_new_known_and_deleted_copies():
    planned = plan([hook(3), hook(1), hook(2)], {2: 7, 3: None}, deactivate=True)
    assert [(a.label_studio_webhook, a.outcome, a.webhook, a.deactivate) for a in planned] == [
        (1, "adopt", None, True),
        (2, "already adopted", 7, True),
        (3, "already adopted", None, True),
    ]


def test_only_active_label_studio_webhooks_are_deactivated_and_only_when_asked():
    assert [a.deactivate for a in plan([hook(1, is_active=False), hook(2)], {}, deactivate=True)] == [
        False,
        True,
    ]
    assert [a.deactivate for a in plan([hook(1)], {}, deactivate=False)] == [False]


def test_what_outbox_refuses_is_skipped_with_a_reason_and_keeps_sending_from_label_studio():
    cases = {
        "reserved header": hook(headers={"Content-Type": "text/plain"}),
        "not an object": hook(headers=["a"]),
        "unknown action": hook(send_for_all_actions=False, actions=("NOT_AN_ACTION",)),
        "organization-only action": hook(send_for_all_actions=False, actions=("PROJECT_CREATED",)),
        "bad url": hook(url="ftp://example.com/x"),
    }
    for name, bad in cases.items():
        (item,) = plan([bad], {}, deactivate=True)
        assert item.outcome == "skip", name
        assert item.reason, name
        assert not item.deactivate, name


def test_organization_level_webhooks_may_have_organization_only_actions():
    org = hook(project_id=None, send_for_all_actions=False, actions=("PROJECT_CREATED",))
    assert plan([org], {}, deactivate=False)[0].outcome == "adopt"


SECRET = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=8, max_size=40).map(
    lambda s: "SECRET" + s
)


@given(value=SECRET, query=SECRET, password=SECRET, name=st.sampled_from(["Authorization", "Host", "X-Key"]))
def test_no_header_value_or_url_secret_is_ever_reported(value, query, password, name):
    url = f"https://user:{password}@hooks.example.com/x?token={query}"
    report = plan([hook(url=url, headers={name: value, "Other": value + "\n"})], {}, deactivate=True)
    shown = report[0].model_dump_json()
    for secret in (value, query, password):
        assert secret not in shown
    assert name in report[0].headers
