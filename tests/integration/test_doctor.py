"""``outbox doctor`` (issue 11 item 3): each check, against a database where the test caused the
problem it looks for, names it and says how to fix it; a healthy installation with a live relay is
exit status 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from outbox import db, doctor
from outbox.doctor import Limits, Report
from outbox.receiver import Reply
from tests.support import lsdb
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

CHECKS = [
    "database",
    "migrations",
    "triggers",
    "relays",
    "backlog",
    "dead_deliveries",
    "disabled_webhooks",
    "notification_queue",
    "long_transactions",
    "webhook_projects",
]
OUTBOX = Path(sys.executable).parent / "outbox"


def finding(report: Report, name: str) -> doctor.Finding:
    return next(f for f in report.findings if f.name == name)


def failed(report: Report) -> list[str]:
    return [f.name for f in report.findings if not f.ok]


def run_doctor(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_") and k != "DATABASE_URL"}
    return subprocess.run(
        [str(OUTBOX), "doctor", *args],
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_healthy_installation_with_a_live_relay_is_exit_0(database_url, project, start_relay):
    async with start_relay():
        report = doctor.examine(database_url)
        assert [f.name for f in report.findings] == CHECKS
        assert report.ok, report.text()
        result = run_doctor(database_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is True and [c["name"] for c in body["checks"]] == CHECKS
    assert all(set(c) == {"name", "ok", "detail", "fix"} and c["ok"] for c in body["checks"])


def test_no_relay_is_named(database_url):
    report = doctor.examine(database_url)
    assert failed(report) == ["relays"]
    assert finding(report, "relays").detail.startswith("no relay is alive")
    assert "outbox relay" in (finding(report, "relays").fix or "")


async def test_a_relay_that_stopped_without_unregistering_is_named(database_url, conn, start_relay):
    conn.execute(
        "insert into outbox.relay (id, hostname, pid, version, heartbeat_at)"
        " values (gen_random_uuid(), 'gone-host', 4242, 'x', now() - interval '5 minutes')"
    )
    async with start_relay():
        report = doctor.examine(database_url)
    assert failed(report) == ["relays"]
    assert "stopped without unregistering: gone-host pid 4242" in finding(report, "relays").detail
    assert "1 alive" in finding(report, "relays").detail


def test_a_disabled_capture_trigger_is_named_with_its_fix(installed_database_url):
    with db.connect_sync(installed_database_url, autocommit=True) as conn:
        conn.execute("alter table task disable trigger outbox_insert")
        conn.execute("alter table task_completion enable replica trigger outbox_update")
        conn.execute("drop trigger outbox_delete on project")
    found = finding(doctor.examine(installed_database_url), "triggers")
    assert not found.ok
    assert "outbox_insert on public.task is disabled" in found.detail
    assert "outbox_update on public.task_completion is enabled only in replica sessions" in found.detail
    assert "missing: outbox_delete on public.project" in found.detail
    assert "alter table public.task enable trigger outbox_insert" in (found.fix or "")
    assert "outbox migrate" in (found.fix or "")


def test_an_edited_migration_is_named(installed_database_url):
    with db.connect_sync(installed_database_url, autocommit=True) as conn:
        conn.execute(
            "update outbox.schema_migrations set checksum = 'edited' where name = '0002_webhook_scope.sql'"
        )
    found = finding(doctor.examine(installed_database_url), "migrations")
    assert not found.ok and "0002_webhook_scope.sql differ" in found.detail


def test_pending_migrations_and_no_outbox_at_all(installed_database_url, ls_database_url):
    with db.connect_sync(installed_database_url, autocommit=True) as conn:
        conn.execute("delete from outbox.schema_migrations where name = 'capture.sql'")
    found = finding(doctor.examine(installed_database_url), "migrations")
    assert not found.ok and found.detail == "pending: capture.sql" and found.fix == "run `outbox migrate`"
    report = doctor.examine(ls_database_url)
    assert [(f.name, f.ok) for f in report.findings] == [("database", True), ("migrations", False)]
    assert finding(report, "migrations").detail == "outbox is not installed"


async def _deliver_once(conn, start_relay, receiver, status: int, **webhook) -> tuple[int, Report]:
    """A webhook whose receiver answers ``status`` to its one attempt; the event delivered or dead."""
    receiver.respond = lambda request: Reply(status=status)
    webhook_id = lsdb.webhook(conn, receiver.url, retry_schedule=[0], **webhook)
    async with start_relay():
        conn.execute("insert into task (data, project_id) values ('{}', 1)")
        await eventually(
            lambda: conn.execute(
                "select count(*) as n from outbox.delivery where state <> 'pending'"
            ).fetchone()["n"],
            timeout=20,
            what="the delivery to finish",
        )
        report = doctor.examine(conn.info.dsn)
    return webhook_id, report


async def test_a_dead_delivery_is_named(conn, project, start_relay, receiver):
    webhook_id, report = await _deliver_once(conn, start_relay, receiver, 500)
    found = finding(report, "dead_deliveries")
    assert not found.ok and found.detail == "1 dead delivery(ies) on 1 webhook(s)"
    assert f"outbox deliveries recover {webhook_id}" in (found.fix or "")


async def test_a_webhook_outbox_disabled_is_named(conn, project, start_relay, receiver):
    webhook_id, report = await _deliver_once(conn, start_relay, receiver, 410)  # Gone: disabled
    found = finding(report, "disabled_webhooks")
    assert not found.ok and f"webhook {webhook_id}: " in found.detail
    assert found.fix == f"fix the receiver, then `outbox webhooks resume {webhook_id}`"
    # a webhook paused by a person is no problem
    conn.execute("update outbox.webhook set is_active = true where id = %s", (webhook_id,))
    conn.execute("update outbox.webhook set is_active = false where id = %s", (webhook_id,))
    assert finding(doctor.examine(conn.info.dsn), "disabled_webhooks").ok


def test_an_old_pending_delivery_is_named(database_url, conn, project):
    webhook_id = lsdb.webhook(conn, "http://127.0.0.1:9/hook")
    event = conn.execute(
        "insert into outbox.event (action, organization_id, project_id, chunk_size) values"
        " ('TASKS_CREATED', 1, 1, 100) returning id"
    ).fetchone()["id"]
    conn.execute(
        "insert into outbox.delivery (event_id, webhook_id, project_id, created_at, next_attempt_at)"
        " values (%s, %s, 1, now() - interval '2 hours', now() - interval '1 hour')",
        (event, webhook_id),
    )
    found = finding(doctor.examine(database_url), "backlog")
    assert not found.ok and found.detail.startswith("1 delivery(ies) due, due for 3600")
    # a paused webhook's deliveries wait on purpose
    conn.execute("update outbox.webhook set is_active = false where id = %s", (webhook_id,))
    assert finding(doctor.examine(database_url), "backlog").ok


def test_a_long_running_transaction_is_named(database_url):
    with psycopg.connect(database_url, application_name="holding-back") as holder:
        holder.execute("select txid_current()")  # an open transaction with an xid
        pid = holder.info.backend_pid
        found = finding(doctor.examine(database_url, Limits(long_transaction=0)), "long_transactions")
        assert finding(doctor.examine(database_url), "long_transactions").ok  # under the default limit
    assert not found.ok and f"pid {pid} (postgres, holding-back, idle in transaction)" in found.detail
    assert f"pg_terminate_backend({pid})" in (found.fix or "")
    assert finding(doctor.examine(database_url, Limits(long_transaction=0)), "long_transactions").ok


def test_a_listener_that_does_not_consume_fills_the_notification_queue(database_url):
    with psycopg.connect(database_url) as stuck, psycopg.connect(database_url, autocommit=True) as talker:
        stuck.execute("listen doctor_test")
        stuck.commit()
        stuck.execute("select 1")  # in a transaction: it reads no notification until it ends
        talker.execute(
            "select pg_notify('doctor_test', repeat('x', 7000) || g) from generate_series(1, 300) g"
        )
        found = finding(doctor.examine(database_url, Limits(notification_queue=0)), "notification_queue")
        stuck.rollback()
    assert not found.ok and "NOTIFY queue in use" in found.detail
    assert "LISTENs" in (found.fix or "")


def test_a_webhook_whose_project_was_deleted_is_named(database_url, conn, project):
    webhook_id = lsdb.webhook(conn, "http://127.0.0.1:9/hook", project_id=1)
    assert finding(doctor.examine(database_url), "webhook_projects").ok
    conn.execute("delete from project where id = 1")
    found = finding(doctor.examine(database_url), "webhook_projects")
    assert not found.ok and found.detail.endswith(f"webhook {webhook_id} (project 1)")
    assert found.fix is not None and f"outbox webhooks remove {webhook_id}" in found.fix


def test_an_unreachable_database_is_one_line_and_exit_1(unused_tcp_port_url):
    result = run_doctor(unused_tcp_port_url)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL  database: cannot connect: "), lines
    assert "S3cretPW" not in result.stdout + result.stderr
    as_json = json.loads(run_doctor(unused_tcp_port_url, "--json").stdout)
    assert as_json["ok"] is False and [c["name"] for c in as_json["checks"]] == ["database"]


@pytest.fixture
def unused_tcp_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://someone:S3cretPW@127.0.0.1:{port}/nothing"
