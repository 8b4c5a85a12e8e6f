"""JSON logs (issue 11 item 5): ``--log-format json`` / ``OUTBOX_LOG_FORMAT=json`` make every line
of a relay's output one JSON object; each delivery outcome carries its fields as keys, and no
secret (webhook secret, header value, DSN password, admin token) is in any line."""

from __future__ import annotations

import json
import subprocess

import pytest
from psycopg.conninfo import make_conninfo

from outbox.receiver import Reply
from relay.signing import generate_secret
from tests.integration.conftest import OUTBOX_CLI, RELAY_ENV, _environment
from tests.support import lsdb

pytestmark = pytest.mark.anyio

PASSWORD = "Js0nLogPassw0rd"
TOKEN = "json-logs-admin-token-0123456789"
HEADER_VALUE = "Bearer header-value-never-logged"
FIELDS = {"event_id", "webhook_id", "action", "status", "duration_ms", "attempt", "state", "error_class"}


def _lines(output: str) -> list[dict]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
    return parsed


def _start(args: list[str], env: dict[str, str], log) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)


@pytest.mark.parametrize("how", ["flag", "environment"])
async def test_relay_logs_one_json_object_a_line_without_secrets(
    how, database_url, conn, project, receiver, tmp_path, sql_wait
):
    secret = generate_secret()
    receiver.respond = lambda request: Reply(status=200 if request.path == "/ok" else 500)
    ok = lsdb.webhook(conn, f"{receiver.url}/ok", secret=secret, headers={"Authorization": HEADER_VALUE})
    failing = lsdb.webhook(conn, f"{receiver.url}/failing", retry_schedule=[0, 0])
    conn.execute("insert into task (data, project_id) values ('{}', 1)")

    url = make_conninfo(database_url, password=PASSWORD)  # the test servers trust 127.0.0.1
    env = _environment(url, {**RELAY_ENV, "OUTBOX_ADMIN_TOKEN": TOKEN})
    args = [str(OUTBOX_CLI), "--log-format", "json", "relay"]
    if how == "environment":
        env["OUTBOX_LOG_FORMAT"] = "JSON"  # any case
        args = [str(OUTBOX_CLI), "relay"]
    log = tmp_path / "relay.log"
    process = _start(args, env, log)
    try:
        await sql_wait(
            "select count(*) as n from outbox.delivery where state <> 'pending'",
            until=lambda n: n == 2,
            timeout=30,
            what="one delivered, one dead",
        )
    finally:
        process.terminate()
        assert process.wait(30) == 0
    output = log.read_text()
    for part in (
        secret,
        secret.removeprefix("whsec_"),
        HEADER_VALUE,
        "header-value-never-logged",
        PASSWORD,
        TOKEN,
    ):
        assert part not in output, part
    lines = _lines(output)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    outcomes = [line for line in lines if "state" in line and "event_id" in line]
    by_state = {(line["webhook_id"], line["state"]): line for line in outcomes}
    delivered = by_state[(ok, "delivered")]
    assert set(delivered) >= FIELDS
    assert delivered["level"] == "INFO" and delivered["status"] == 200 and delivered["attempt"] == 1
    assert delivered["action"] == "TASKS_CREATED" and delivered["error_class"] is None
    assert isinstance(delivered["duration_ms"], float) and isinstance(delivered["event_id"], int)
    retried, dead = by_state[(failing, "pending")], by_state[(failing, "dead")]
    assert (retried["attempt"], dead["attempt"]) == (1, 2)
    assert retried["level"] == dead["level"] == "WARNING"
    assert dead["status"] == 500 and dead["error_class"] == "http_status"
    assert "next_attempt_in" in retried


def test_a_bad_log_format_is_one_line(database_url):
    result = subprocess.run(
        [str(OUTBOX_CLI), "--log-format", "xml", "relay"],
        env=_environment(database_url, {}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "outbox: invalid configuration: --log-format: Value error, log format must be text or json"
    ]
    env = _environment(database_url, {"OUTBOX_LOG_FORMAT": "yaml"})
    result = subprocess.run([str(OUTBOX_CLI), "relay"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "OUTBOX_LOG_FORMAT: Value error" in result.stderr
