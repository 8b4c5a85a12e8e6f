"""``outbox webhooks|deliveries|events`` and ``outbox api`` as a user runs them: the installed
console script in a subprocess, on a database from the fixtures (DATABASE_URL)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from relay.signing import generate_secret
from tests.support.cli import outbox
from tests.support.waiting import wait_until_answering


def test_webhook_lifecycle(cli, conn):
    added = json.loads(cli(
        "webhooks", "add", "https://user:pw@example.com/hook?token=abc", "--project", "1",
        "-a", "TASKS_CREATED", "-a", "ANNOTATION_CREATED", "-H", "X-Token: header-secret",
        "--description", "ml backend", "--retry-schedule", "0,5s,1m", "--json",
    ).stdout)  # fmt: skip
    assert added["send_for_all_actions"] is False and added["actions"] == [
        "TASKS_CREATED",
        "ANNOTATION_CREATED",
    ]
    assert added["retry_schedule"] == [0, 5, 60] and added["organization"] == 1
    table = cli("webhooks", "list").stdout
    # a table for people: the URL without credentials or query, no header values
    assert "https://example.com/hook?…" in table and "TASKS_CREATED, ANNOTATION_CREATED" in table
    assert "pw" not in table and "abc" not in table and "header-secret" not in table
    assert json.loads(cli("webhooks", "list", "--project", "null", "--json").stdout) == []
    ident = str(added["id"])
    updated = json.loads(
        cli(
            "webhooks", "update", ident, "--all-actions", "--no-payload", "--rate-limit", "2.5", "--json"
        ).stdout
    )
    assert (updated["send_for_all_actions"], updated["send_payload"], updated["rate_limit"]) == (
        True,
        False,
        2.5,
    )
    assert updated["actions"] == ["TASKS_CREATED", "ANNOTATION_CREATED"]  # kept
    shown = cli("webhooks", "show", ident).stdout
    assert "ml backend" in shown and "X-Token" in shown and "header-secret" not in shown
    rotated = cli("webhooks", "rotate-secret", ident).stdout
    secret = rotated.split("shown this once): ")[1].split()[0]
    assert conn.execute("select secret from outbox.webhook").fetchone()["secret"] == secret
    assert "previous secret also signs until" not in rotated  # there was none before
    paused = cli("webhooks", "pause", ident).stdout
    assert "paused" in paused and "whsec_****" in paused and secret not in paused
    assert cli("webhooks", "remove", ident, "--yes").stdout.strip() == f"webhook {ident} removed"
    gone = cli("webhooks", "show", ident, ok=False)
    assert gone.returncode == 2 and f"Webhook {ident} not found" in gone.stderr


def test_same_validation_and_errors_as_the_api(cli):
    bad = cli("webhooks", "add", "ftp://example.com", "--project", "1", "-H", "Host: secret-host", ok=False)
    assert bad.returncode == 2
    assert "url: Enter a valid URL" in bad.stderr and 'Header "Host" is set by outbox' in bad.stderr
    assert "secret-host" not in bad.stderr
    as_json = cli(
        "webhooks",
        "add",
        "https://example.com",
        "--project",
        "1",
        "-a",
        "PROJECT_CREATED",
        "--json",
        ok=False,
    )
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["validation_errors"] == {
        "non_field_errors": ["Project webhook can't contain organization-only action."]
    }
    unreachable = outbox(
        "webhooks", "list", env={"DATABASE_URL": "host=127.0.0.1 port=1 dbname=x user=u password=hunter2"}
    )
    assert (
        unreachable.returncode == 2
        and "cannot connect" in unreachable.stderr
        and "hunter2" not in unreachable.stderr
    )


def test_test_event_delivery_log_retry_and_recover(cli, conn):
    secret = generate_secret()
    hook = json.loads(
        cli(
            "webhooks", "add", "http://127.0.0.1:9/hook", "--project", "1", "--secret", secret, "--json"
        ).stdout
    )
    ident = str(hook["id"])
    ping = json.loads(cli("webhooks", "test", ident, "--wait", "0", "--json").stdout)
    assert (ping["action"], ping["state"], ping["attempts"]) == ("PING", "pending", 0)
    events = json.loads(cli("events", "list", "--action", "PING", "--json").stdout)
    assert [e["id"] for e in events["results"]] == [ping["event"]]
    # dead deliveries over the last days, as a failing receiver leaves them
    moments = [datetime.now(UTC) - timedelta(hours=h) for h in (50, 30, 20, 10)]
    ids = []
    for moment in moments:
        ids.append(conn.execute(
            "insert into outbox.delivery (event_id, webhook_id, project_id, state, attempts, created_at, finished_at)"
            " values (%s, %s, 1, 'dead', 8, %s, %s) returning id", (ping["event"], hook["id"], moment, moment),
        ).fetchone()["id"])  # fmt: skip
    dead = json.loads(cli("deliveries", "list", ident, "--state", "dead", "--limit", "2", "--json").stdout)
    assert [d["id"] for d in dead["results"]] == ids[::-1][:2] and dead["next"]
    everywhere = json.loads(cli("deliveries", "list", "--state", "dead", "--project", "1", "--json").stdout)
    assert [d["id"] for d in everywhere["results"]] == ids[::-1]
    assert (
        "--state: pending, failing, delivered or dead"
        in cli("deliveries", "list", "--state", "x", ok=False).stderr
    )
    assert f"delivery {ids[0]} of webhook {ident}: dead" in cli("deliveries", "show", str(ids[0])).stdout
    retried = json.loads(cli("deliveries", "retry", str(ids[0]), "--json").stdout)
    assert (retried["state"], retried["attempts"]) == ("pending", 8)
    recovered = cli("deliveries", "recover", ident, "--since", "36h", "--until", "15h")
    assert recovered.stdout.strip() == f"2 deliveries of webhook {ident} made due again"
    states = conn.execute("select id, state from outbox.delivery where id = any(%s) order by id", (ids,))
    assert [r["state"] for r in states] == ["pending", "pending", "pending", "dead"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_api_refuses_to_start_unprotected_then_serves(database_url):
    env = {"DATABASE_URL": database_url}
    refused = outbox("api", env=env)
    assert refused.returncode == 2 and "OUTBOX_ADMIN_TOKEN is not set" in refused.stderr
    exposed = outbox("api", "--no-auth", "--host", "0.0.0.0", env=env)
    assert exposed.returncode == 2 and "only when binding to 127.0.0.1" in exposed.stderr
    port = _free_port()
    executable = shutil.which("outbox") or str(Path(sys.executable).parent / "outbox")
    token = "acceptance-admin-token-123"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    process = subprocess.Popen(
        [executable, "api", "--port", str(port)],
        env={**clean, **env, "OUTBOX_ADMIN_TOKEN": token, "OUTBOX_LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/readyz", process, timeout=20, status=200)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/api/webhooks/").status_code == 401
        answer: Any = httpx.get(base + "/api/webhooks/", headers={"Authorization": f"Token {token}"})
        assert answer.status_code == 200 and answer.json() == []
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why it stopped
    assert process.returncode in (0, -signal.SIGTERM), output
    assert token not in output
