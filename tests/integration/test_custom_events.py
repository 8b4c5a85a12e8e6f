"""Custom events from SQL (sql/0007_actions.sql): registered in outbox.action, recorded by
outbox.emit in the caller's transaction, delivered by a real relay to a real receiver if and only
if that transaction commits."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from standardwebhooks import Webhook

from relay.actions import CATALOG, OPT_IN
from relay.payloads import PROJECT_FIELDS
from relay.signing import generate_secret
from tests.support import lsdb

pytestmark = pytest.mark.anyio

REGISTER = "insert into outbox.action (name, title, payload_key) values (%s, %s, %s)"


@pytest.fixture
def ls(conn: Any) -> Any:
    lsdb.organization(conn, 1)
    lsdb.organization(conn, 2, user_id=2)
    lsdb.project(conn, 1, 1)
    lsdb.project(conn, 2, 1)
    lsdb.project(conn, 3, 2)
    conn.execute(REGISTER, ("MODEL_TRAINED", "Model trained", "model"))
    conn.execute("delete from outbox.change")
    return conn


def emit(conn: Any, action: str, payload: str, project_id: int | None = 1, organization_id: int = 1) -> int:
    row = conn.execute(
        "select outbox.emit(%s, %s, %s, %s::jsonb) as id", (action, organization_id, project_id, payload)
    ).fetchone()
    return int(row["id"])


def test_the_registry_is_seeded_with_label_studios_actions_as_the_relay_knows_them(conn):
    rows = conn.execute(
        "select name, title, description, payload_key, organization_only, opt_in from outbox.action"
        " where built_in order by seq"
    ).fetchall()
    assert [r["name"] for r in rows] == [a.value for a in CATALOG]
    assert {r["name"] for r in rows if r["opt_in"]} == {a.value for a in OPT_IN}
    for row in rows:
        info = CATALOG[row["name"]]  # type: ignore[index]
        assert (row["title"], row["description"], row["payload_key"], row["organization_only"]) == (
            info.name, info.description, info.key, info.organization_only
        )  # fmt: skip


async def test_an_emitted_event_is_delivered_iff_its_transaction_commits(ls, receiver, start_relay):
    secret = generate_secret()
    # ordered: the marker arrives after everything committed before it (unordered, the two
    # committed events may be sent side by side and arrive either way round)
    lsdb.webhook(ls, receiver.url, project_id=1, secret=secret, ordered=True)
    async with start_relay():
        # the application fails after emitting: rolled back
        with pytest.raises(ZeroDivisionError), ls.transaction():
            emit(ls, "MODEL_TRAINED", '{"version": "rolled back"}')
            1 / 0  # noqa: B018
        with ls.transaction():
            ls.execute("savepoint s")
            emit(ls, "MODEL_TRAINED", '{"version": "savepoint rolled back"}')
            ls.execute("rollback to savepoint s")
            emit(ls, "MODEL_TRAINED", '{"version": "committed"}')
        # a later, committed marker: once it has arrived, the rolled-back ones never will
        emit(ls, "MODEL_TRAINED", '{"version": "marker"}')
        requests = await receiver.wait_until(
            lambda got: any(r.json["model"]["version"] == "marker" for r in got)
        )
    assert [r.json["model"]["version"] for r in requests] == ["committed", "marker"]
    body = Webhook(secret).verify(requests[0].body, requests[0].headers)
    assert list(body) == ["action", "model", "project"]
    assert body["action"] == "MODEL_TRAINED"
    assert list(body["project"]) == [key for key, _ in PROJECT_FIELDS]
    assert body["project"]["id"] == 1 and body["project"]["task_number"] == 0
    assert ls.execute("select count(*) from outbox.change").fetchone()["count"] == 0


async def test_matching_is_label_studios_and_an_event_without_project_has_no_project_key(
    ls, receiver, start_relay
):
    ls.execute(
        "insert into outbox.action (name, title, payload_key, organization_only)"
        " values ('ORG_BILLED', 'Organization billed', 'invoice', true)"
    )
    url = receiver.url
    lsdb.webhook(ls, f"{url}/org")
    lsdb.webhook(ls, f"{url}/project1", project_id=1)
    lsdb.webhook(ls, f"{url}/project2", project_id=2)
    lsdb.webhook(ls, f"{url}/listed", send_for_all_actions=False, actions=["MODEL_TRAINED"])
    lsdb.webhook(ls, f"{url}/unlisted", send_for_all_actions=False, actions=["TASKS_CREATED"])
    lsdb.webhook(ls, f"{url}/other-org", organization_id=2)
    lsdb.webhook(ls, f"{url}/no-payload", send_payload=False)
    async with start_relay():
        emit(ls, "MODEL_TRAINED", '{"v": 1}')
        emit(ls, "ORG_BILLED", '[{"total": 3}]', project_id=None)
        requests = await receiver.wait_for(6)
    got = sorted((r.path, r.action) for r in requests)
    assert got == sorted([
        ("/org", "MODEL_TRAINED"), ("/org", "ORG_BILLED"), ("/project1", "MODEL_TRAINED"),
        ("/listed", "MODEL_TRAINED"), ("/no-payload", "MODEL_TRAINED"), ("/no-payload", "ORG_BILLED"),
    ])  # fmt: skip
    billed = next(r.json for r in requests if r.path == "/org" and r.action == "ORG_BILLED")
    assert billed == {"action": "ORG_BILLED", "invoice": [{"total": 3}]}
    assert {r.json == {"action": r.action} for r in requests if r.path == "/no-payload"} == {True}
    assert ls.execute("select count(*) from outbox.delivery").fetchone()["count"] == 6


async def test_an_event_no_webhook_gets_is_forgotten(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=2)
    async with start_relay():
        emit(ls, "MODEL_TRAINED", '{"unwanted": true}', project_id=1)
        emit(ls, "MODEL_TRAINED", '{"wanted": true}', project_id=2)
        (request,) = await receiver.wait_for(1)
    assert request.json["model"] == {"wanted": True}
    assert ls.execute("select count(*) from outbox.event").fetchone()["count"] == 1
    assert ls.execute("select count(*) from outbox.emitted").fetchone()["count"] == 1


async def test_a_payload_over_the_body_limit_is_dead_alone_and_the_next_event_arrives(
    ls, receiver, start_relay
):
    hook = lsdb.webhook(ls, receiver.url, project_id=1)
    async with start_relay(max_body_bytes=64 * 1024):
        big = emit(ls, "MODEL_TRAINED", '{"blob": "%s"}' % ("x" * 100_000))
        emit(ls, "MODEL_TRAINED", '{"small": true}')
        (request,) = await receiver.wait_for(1)
        assert request.json["model"] == {"small": True}
        dead = await _wait_dead(ls, big)
    assert dead["webhook_id"] == hook
    assert "OUTBOX_MAX_BODY_BYTES" in dead["last_error"] and "MODEL_TRAINED" in dead["last_error"]
    attempt = ls.execute(
        "select a.error_class from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
        " where d.event_id = %s",
        (big,),
    ).fetchone()
    assert attempt["error_class"] == "too_large"


async def _wait_dead(conn: Any, event_id: int) -> Any:
    from tests.integration.conftest import wait_for_sql

    await wait_for_sql(
        conn,
        "select count(*) from outbox.delivery where event_id = %s and state = 'dead'",
        (event_id,),
        until=lambda n: n == 1,
    )
    return conn.execute("select * from outbox.delivery where event_id = %s", (event_id,)).fetchone()


async def test_run_webhook_sends_to_one_webhook_whatever_it_lists(ls, receiver, start_relay):
    url = receiver.url
    lsdb.webhook(ls, f"{url}/org")
    target = lsdb.webhook(
        ls, f"{url}/target", project_id=1, send_for_all_actions=False, actions=["TASKS_CREATED"]
    )
    async with start_relay():
        ls.execute("select outbox.run_webhook(%s, 'MODEL_TRAINED', '{\"v\": 2}')", (target,))
        (request,) = await receiver.wait_for(1)
    assert request.path == "/target"
    assert list(request.json) == ["action", "model", "project"] and request.json["project"]["id"] == 1
    logged = ls.execute(
        "select count(*) from outbox.attempt a join outbox.delivery d on d.id = a.delivery_id"
        " where d.webhook_id = %s",
        (target,),
    ).fetchone()
    assert logged["count"] == 1


def sql_error(conn: Any, statement: str, params: Any = None) -> str:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return caught.value.diag.message_primary or ""


def test_emit_refuses_what_could_not_be_sent_with_a_message_that_names_it(ls):
    emit_sql = "select outbox.emit(%s, %s, %s, %s::jsonb)"
    assert (
        sql_error(ls, emit_sql, ("NOT_REGISTERED", 1, 1, "{}"))
        == 'outbox.emit: unknown action "NOT_REGISTERED"'
    )
    ls.execute(
        "insert into outbox.action (name, title, payload_key, organization_only)"
        " values ('ORG_BILLED', 'Organization billed', 'invoice', true)"
    )
    assert "organization-only" in sql_error(ls, emit_sql, ("ORG_BILLED", 1, 1, "{}"))
    assert "built-in" in sql_error(ls, emit_sql, ("TASKS_CREATED", 1, 1, "[]"))
    for scalar, kind in (('"text"', "string"), ("3", "number"), ("null", "null"), ("true", "boolean")):
        message = sql_error(ls, emit_sql, ("MODEL_TRAINED", 1, 1, scalar))
        assert (
            message == f"outbox.emit: the payload of MODEL_TRAINED must be a JSON object or array, not {kind}"
        )
    assert "not NULL" in sql_error(ls, emit_sql, ("MODEL_TRAINED", 1, 1, None))
    assert "organization_id is required" in sql_error(ls, emit_sql, ("MODEL_TRAINED", None, 1, "{}"))
    assert (
        sql_error(ls, emit_sql, ("MODEL_TRAINED", 9, None, "{}"))
        == "outbox.emit: organization 9 does not exist"
    )
    assert sql_error(ls, emit_sql, ("MODEL_TRAINED", 1, 99, "{}")) == "outbox.emit: project 99 does not exist"
    assert "belongs to organization 2" in sql_error(ls, emit_sql, ("MODEL_TRAINED", 1, 3, "{}"))
    assert ls.execute("select count(*) from outbox.event").fetchone()["count"] == 0


def test_the_registry_refuses_bad_actions_and_guards_built_in_and_used_ones(ls):
    for row, expected in (
        (("lower", "t", "k"), 'action name "lower" is invalid'),
        (("PING", "t", "k"), 'action name "PING" is reserved'),
        (("GOOD", "", "k"), "needs a title"),
        (("GOOD", "t", "Bad-Key"), 'payload key "Bad-Key" is invalid'),
        (("GOOD", "t", "action"), 'payload key "action" is taken'),
        (("GOOD", "t", "project"), 'payload key "project" is taken'),
        (("MODEL_TRAINED", "again", "k"), "duplicate key"),
    ):
        assert expected in sql_error(ls, REGISTER, row)
    assert "built-in actions come with outbox" in sql_error(
        ls, "insert into outbox.action (name, title, payload_key, built_in) values ('X', 't', 'k', true)"
    )
    assert sql_error(ls, "delete from outbox.action where name = 'TASKS_CREATED'") == (
        "action TASKS_CREATED is built in: it cannot be changed or removed"
    )
    assert "is built in" in sql_error(ls, "update outbox.action set title = 'x' where name = 'TASKS_CREATED'")
    assert "cannot be truncated" in sql_error(ls, "truncate outbox.action cascade")
    first = lsdb.webhook(ls, "http://127.0.0.1:9/a", send_for_all_actions=False, actions=["MODEL_TRAINED"])
    second = lsdb.webhook(ls, "http://127.0.0.1:9/b", actions=["MODEL_TRAINED", "TASKS_CREATED"])
    assert sql_error(ls, "delete from outbox.action where name = 'MODEL_TRAINED'") == (
        f"action MODEL_TRAINED is in use by webhook(s) {first}, {second}: remove it from their actions first"
    )
    assert "in use" in sql_error(ls, "update outbox.action set name = 'RENAMED' where name = 'MODEL_TRAINED'")
    ls.execute("update outbox.action set title = 'Model retrained' where name = 'MODEL_TRAINED'")
    ls.execute("update outbox.webhook set actions = array_remove(actions, 'MODEL_TRAINED')")
    ls.execute("delete from outbox.action where name = 'MODEL_TRAINED'")
    assert "unknown action(s) MODEL_TRAINED" in sql_error(
        ls,
        "insert into outbox.webhook (organization_id, url, actions) values (1, 'http://x.io', '{MODEL_TRAINED}')",
    )


def test_an_organization_only_custom_action_is_refused_on_a_project_webhook(ls):
    ls.execute(
        "insert into outbox.action (name, title, payload_key, organization_only)"
        " values ('ORG_BILLED', 'Organization billed', 'invoice', true)"
    )
    message = sql_error(
        ls,
        "insert into outbox.webhook (organization_id, project_id, url, actions)"
        " values (1, 1, 'http://x.io', '{ORG_BILLED}')",
    )
    assert (
        message
        == "webhook actions: ORG_BILLED can only be sent to organization-level webhooks (project_id null)"
    )


def test_a_removal_waits_for_a_webhook_being_added_with_the_action_and_then_refuses(ls, database_url):
    from outbox import db

    with db.connect_sync(database_url) as adding, db.connect_sync(database_url, autocommit=True) as removing:
        adding.execute(
            "insert into outbox.webhook (organization_id, url, actions) values (1, 'http://x.io', '{MODEL_TRAINED}')"
        )
        removing.execute("set lock_timeout = '200ms'")
        # the adding transaction holds the action: the removal cannot pass it unseen
        assert "lock timeout" in sql_error(removing, "delete from outbox.action where name = 'MODEL_TRAINED'")
        adding.commit()
        assert "in use by webhook(s)" in sql_error(
            removing, "delete from outbox.action where name = 'MODEL_TRAINED'"
        )


async def test_emit_for_existing_tasks_sends_the_body_their_import_sent(ls, receiver, start_relay):
    lsdb.webhook(ls, receiver.url, project_id=1)
    async with start_relay():
        ls.execute(
            "insert into task (data, project_id) select jsonb_build_object('n', i), 1 from generate_series(1, 3) i"
        )
        (captured,) = await receiver.wait_for(1)
        ids = [t["id"] for t in captured.json["tasks"]]
        with ls.transaction():
            sent = ls.execute("select outbox.emit_for('TASKS_CREATED', %s, 1) as n", (ids,)).fetchone()
        assert sent["n"] == 3
        requests = await receiver.wait_for(2)
    assert requests[1].body == captured.body  # the same bytes: same rows, same project counters
    assert requests[1].headers["webhook-id"] != captured.headers["webhook-id"]


def test_emit_for_refuses_rows_it_cannot_send(ls):
    ls.execute("insert into task (id, data, project_id) values (50, '{}', 2)")
    ls.execute("delete from outbox.change")
    call = "select outbox.emit_for(%s, %s, %s)"
    assert sql_error(ls, call, ("TASKS_CREATED", [50, 51], 1)) == (
        "outbox.emit_for: no row of project 1 has id(s) 50, 51 (first 10 shown)"
    )
    assert "not sent for existing rows" in sql_error(ls, call, ("TASKS_DELETED", [50], 2))
    assert "not sent for existing rows" in sql_error(ls, call, ("MODEL_TRAINED", [50], 2))
    assert 'unknown action "NOPE"' in sql_error(ls, call, ("NOPE", [50], 2))
    assert "needs at least one id" in sql_error(ls, call, ("TASKS_CREATED", [], 2))
    assert "project 9 does not exist" in sql_error(ls, call, ("TASKS_CREATED", [50], 9))
    assert "for one annotation" in sql_error(ls, call, ("ANNOTATION_CREATED", [1, 2], 2))
    assert ls.execute("select count(*) from outbox.change").fetchone()["count"] == 0


@pytest.mark.parametrize(
    "action", ["TASKS_CREATED", "PROJECT_CREATED", "MODEL_TRAINED", "ORG_BILLED", "TASK_LABELED"]
)
def test_active_webhooks_in_sql_match_the_relays_routing(ls, action):
    """outbox.active_webhooks (get_active_webhooks) against relay/routing.py, on random webhooks."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from relay.events import Event
    from relay.routing import Webhook, route

    ls.execute(
        "insert into outbox.action (name, title, payload_key, organization_only)"
        " values ('ORG_BILLED', 'Organization billed', 'invoice', true) on conflict do nothing"
    )
    organization_only = {"PROJECT_CREATED", "ORG_BILLED"}
    hooks = st.lists(
        st.tuples(
            st.sampled_from([(1, None), (1, 1), (1, 2), (2, None), (2, 3)]),
            st.booleans(),
            st.booleans(),
            st.sets(
                st.sampled_from(
                    ["TASKS_CREATED", "MODEL_TRAINED", "PROJECT_CREATED", "ORG_BILLED", "TASK_LABELED"]
                )
            ),
        ),
        max_size=6,
    )

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(hooks, st.sampled_from([(1, None), (1, 1), (1, 2), (2, 3)]))
    def check(specs: list[Any], scope: tuple[int, int | None]) -> None:
        organization_id, project_id = scope
        if action == "ORG_BILLED" and project_id is not None:
            return  # never emitted: outbox.emit refuses a custom organization-only one with a project
        ls.execute("delete from outbox.webhook")
        webhooks = []
        for (org, project), active, every, listed in specs:
            actions = sorted(listed) if project is None else sorted(set(listed) - organization_only)
            ident = lsdb.webhook(
                ls, "http://127.0.0.1:9/", organization_id=org, project_id=project, is_active=active,
                send_for_all_actions=every, actions=actions,
            )  # fmt: skip
            webhooks.append(Webhook(ident, org, project, active, every, frozenset(actions), True))
        found = ls.execute(
            "select webhook_id from outbox.active_webhooks(%s, %s, %s)", (organization_id, action, project_id)
        ).fetchall()
        event = Event(1, action, organization_id, project_id, ())
        assert [r["webhook_id"] for r in found] == [w.id for w in route(event, webhooks)]

    check()


def test_a_custom_action_cannot_be_opt_in(conn):
    """Opt-in is for outbox's own actions (routing knows them by name): a custom one marked so
    would be hidden from /api/webhooks/info/ and still sent to send_for_all_actions webhooks."""
    with pytest.raises(psycopg.errors.CheckViolation, match="action_opt_in_built_in"):
        conn.execute(
            "insert into outbox.action (name, title, payload_key, opt_in) values ('MINE', 'Mine', 'mine', true)"
        )
    assert conn.execute("select count(*) from outbox.action where name = 'MINE'").fetchone()["count"] == 0
