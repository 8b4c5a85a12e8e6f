"""Emitted events' pure parts: their route, their size, their body; and a guard on the SQL they
run (psycopg reads placeholders in comments too)."""

from __future__ import annotations

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from outbox.sql import _queries, query
from relay import chunks, payloads, routing
from relay.events import Event

webhooks = st.lists(
    st.builds(
        routing.Webhook,
        id=st.integers(1, 50),
        organization_id=st.integers(1, 3),
        project_id=st.none() | st.integers(1, 3),
        is_active=st.booleans(),
        send_for_all_actions=st.booleans(),
        actions=st.frozensets(st.sampled_from(["MODEL_TRAINED", "TASKS_CREATED"])),
        send_payload=st.booleans(),
    ),
    unique_by=lambda w: w.id,
    max_size=8,
)
events = st.builds(
    Event,
    xid=st.integers(1, 10**6),
    action=st.just("MODEL_TRAINED"),
    organization_id=st.integers(1, 3),
    project_id=st.none() | st.integers(1, 3),
    row_ids=st.just(()),
)


@given(events, webhooks, st.integers(0, 10**9))
def test_an_emitted_event_goes_where_a_captured_one_would(event, hooks, size):
    routed = routing.plan_emitted(event, None, hooks, size)
    assert list(routed.webhooks) == routing.route(event, hooks)
    assert routed.chunks == (chunks.Chunk(0, 0, size, size),)


@given(events, webhooks, st.integers(1, 50))
def test_run_webhook_goes_to_its_target_alone_while_it_is_active(event, hooks, target):
    routed = routing.plan_emitted(event, target, hooks, 10)
    assert [w.id for w in routed.webhooks] == [w.id for w in hooks if w.id == target and w.is_active]


@given(st.integers(0, 10**9), st.none() | st.integers(0, 10**7), st.booleans())
def test_the_size_estimate_errs_on_the_large_side(payload_bytes, project_bytes, has_project):
    estimate = payloads.emitted_estimate(payload_bytes, project_bytes, has_project)
    assert estimate >= payload_bytes + (project_bytes or 0 if has_project else 0)


def test_the_body_has_the_action_the_payload_under_its_key_and_the_project_when_there_is_one():
    stored = payloads.Emitted("model", orjson.Fragment(b'{"v": [1, 2]}'))
    snapshot = payloads.Snapshot(projects={})
    with_project = payloads.encode(payloads.emitted_body("MODEL_TRAINED", 7, stored, snapshot))
    assert orjson.loads(with_project) == {
        "action": "MODEL_TRAINED",
        "model": {"v": [1, 2]},
        "project": {"id": 7},
    }
    alone = payloads.encode(payloads.emitted_body("MODEL_TRAINED", None, stored, snapshot))
    assert list(orjson.loads(alone)) == ["action", "model"]
    assert payloads.needs("MODEL_TRAINED", 7, ()) == payloads.Needs(projects=frozenset({7}))


def test_no_query_mixes_positional_and_named_placeholders_comments_included():
    # psycopg reads placeholders in comments too: a "%s" in a named query's comment broke it
    for name in _queries("queries.sql"):
        text = query(name)
        positional = re.search(r"(?<!%)%[sb]", text)
        named = re.search(r"%\(\w+\)[sb]", text)
        assert not (positional and named), name
