"""``outbox up``: everything a small deployment needs, in one process.

It migrates, then runs the relay and the admin API (with the console it serves) in one event loop,
supervised together: the first SIGTERM or SIGINT (Ctrl-C) stops both (the relay finishes or
releases what it holds, within OUTBOX_SHUTDOWN_GRACE; the server finishes its requests), a second
one exits at once; either of them stopping stops the other. This module owns the signals: uvicorn's
own handlers are off.

Without DATABASE_URL it runs on the embedded PostgreSQL (``outbox.embedded``), in a database of
Label Studio-shaped tables that holds an organization and a project from the first start, with an
admin token generated once and kept in ``OUTBOX_DATA_DIR/admin-token`` (mode 0600) unless
OUTBOX_ADMIN_TOKEN is set; the embedded server is stopped on the way out.

Once both are running, a short banner goes to stderr (never through logging, whose handler masks
the token): where the console is, the token, the DATABASE_URL for psql and the CLI, and the command
that adds a first webhook. With the JSON log format the banner is one JSON line without the token
(aggregators keep what they receive): it names the file that holds it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import uvicorn
from pydantic import SecretStr

from outbox import db, embedded, migrations, sql
from outbox.config import Settings
from outbox.logs import Redactor

log = logging.getLogger("outbox.up")

TOKEN_FILE = "admin-token"
MIN_TOKEN_LENGTH = 16  # as outbox.api.app.check_auth demands


class UpError(Exception):
    """``outbox up`` cannot start as configured; the message says what to change."""


@dataclass(frozen=True)
class Target:
    """The database ``up`` runs on: DATABASE_URL's, or the embedded server's sandbox."""

    url: str
    server: embedded.EmbeddedServer | None = None
    project_id: int | None = None  # the sandbox's project, for the banner's first webhook


@dataclass(frozen=True)
class Banner:
    """What the user needs once ``up`` runs (rendered by ``text`` or ``json``)."""

    console: str
    token: str | None  # None: authentication is off (--no-auth)
    token_file: Path | None  # where a generated token is kept
    database_url: str | None  # the embedded server's (no password); None with DATABASE_URL
    first_webhook: str

    def text(self) -> str:
        if self.token is None:
            token = "none: authentication is OFF (--no-auth), 127.0.0.1 only"
        elif self.token_file is not None:
            token = f"{self.token}   (kept in {self.token_file})"
        else:
            token = "OUTBOX_ADMIN_TOKEN (yours)"
        database = (
            f"export DATABASE_URL='{self.database_url}'   (for psql; outbox commands run here find it)"
            if self.database_url
            else "DATABASE_URL (yours)"
        )
        return (
            "outbox is up: relay and admin API in one process (Ctrl-C or SIGTERM stops both)\n"
            f"  console:       {self.console}\n"
            f"  admin token:   {token}\n"
            f"  database:      {database}\n"
            f"  first webhook: {self.first_webhook}\n"
        )

    def json(self) -> str:
        return json.dumps(
            {
                "message": "outbox is up",
                "console": self.console,
                "admin_token_file": str(self.token_file) if self.token_file else None,
                "authentication": self.token is not None,
                "database_url": self.database_url,
                "first_webhook": self.first_webhook,
            }
        )


def load_token(path: Path) -> str:
    """The admin token kept in ``path``, made (random, mode 0600) when the file does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="utf-8", errors="replace").strip()
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            problem = f"{path} holds no usable admin token"
            raise UpError(f"{problem}: delete it, and `outbox up` makes a new one") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token


def admin_token(settings: Settings, *, no_auth: bool) -> tuple[str | None, Path | None]:
    """The token the API will require, and the file it came from when ``up`` made it: only on the
    embedded server, where no one else could have set one."""
    if no_auth:
        return None, None
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), None
    if settings.database_url is not None:
        return None, None  # check_auth says to set OUTBOX_ADMIN_TOKEN
    path = settings.data_dir / TOKEN_FILE
    return load_token(path), path


def listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything starts, so that a port in use is one line (and
    ``--port 0`` picks a free one, which the banner shows)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise UpError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def prepare(settings: Settings) -> Target:
    """The database, migrated: DATABASE_URL's, or the embedded server's sandbox (started, with
    Label Studio-shaped tables and their first rows)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        with db.connect_sync(url, autocommit=True) as conn:
            migrations.migrate(conn)
        return Target(url)
    server = embedded.start(settings.data_dir)
    try:
        embedded.ensure_database(server.url(), embedded.SANDBOX_DATABASE)
        url = server.url(embedded.SANDBOX_DATABASE)
        with db.connect_sync(url, autocommit=True) as conn:
            conn.execute(sql.read("label_studio_sandbox.sql"))
            conn.execute(sql.query("seed_sandbox", "up.sql"))  # before the triggers: no event
            migrations.migrate(conn)
            row = conn.execute(sql.query("sandbox_project", "up.sql")).fetchone()
    except BaseException:
        server.stop()
        raise
    return Target(url, server, row["id"] if row else None)


def console_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def run(settings: Settings, *, no_auth: bool, redact: Redactor) -> int:
    """Run until stopped; the exit status. ``redact`` is the log handler's: a token made here is
    added to it before anything can log."""
    from outbox.api.app import ConfigurationError, check_auth

    token, token_file = admin_token(settings, no_auth=no_auth)
    if token is not None:
        redact.add(token)
    try:
        with_token = settings.model_copy(update={"admin_token": SecretStr(token) if token else None})
        token = check_auth(with_token, settings.api_host, no_auth)
    except ConfigurationError as exc:
        raise UpError(str(exc)) from None
    # Interruptible until the supervisor's own handlers are in place: a SIGTERM after preparing
    # but before them (the API's imports, ~0.3 s) killed the process by the default action and
    # left the embedded PostgreSQL running.
    with listen(settings.api_host, settings.api_port) as sock, embedded.interruptible():
        target = prepare(settings)
        try:
            if target.server is not None:
                first = f"outbox webhooks add http://127.0.0.1:9000/hook --project {target.project_id or 1}"
            else:
                first = "outbox webhooks add https://example.com/hook --project <id>"
            shown_url = target.url if target.server is not None else None
            banner = Banner(console_url(sock), token, token_file, shown_url, first)
            supervise = functools.partial(_supervise, settings, target, sock, token, banner)
            # uvloop: the relay is event-loop bound (see `outbox relay`)
            uvloop = importlib.util.find_spec("uvloop") is not None
            return anyio.run(supervise, backend_options={"use_uvloop": uvloop})
        finally:
            if target.server is not None:
                target.server.stop()


# How long a forced exit waits for the app's lifespan shutdown (it closes pooled connections).
LIFESPAN_SHUTDOWN_SECONDS = 2.0


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers (``up`` owns the signals), saying when it has
    started."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit and self.started:
            # Forced (a second signal), uvicorn skips the app's lifespan shutdown; left waiting,
            # its task was cancelled at exit and logged a traceback. The app's shutdown only lets
            # go of its connection pool.
            with anyio.move_on_after(LIFESPAN_SHUTDOWN_SECONDS):
                await self.lifespan.shutdown()


class _Started:
    """A task status for ``Relay.run`` that only records that it started (registered)."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def started(self, value: object = None) -> None:
        self.event.set()


async def _supervise(
    settings: Settings, target: Target, sock: socket.socket, token: str | None, banner: Banner
) -> int:
    from outbox.api.app import create_app
    from relay.relay import Relay

    app = create_app(settings, target.url, admin_token=token)
    quiet = settings.log_level != "DEBUG"
    config = uvicorn.Config(
        app,
        # uvicorn's loggers propagate to outbox's redacting handler (see `outbox api`); its
        # start-up lines would bury the banner, and per-request lines the delivery lines
        log_config=None,
        log_level="warning" if quiet else "debug",
        access_log=not quiet,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
    )
    server = _Server(config)
    relay = Relay(target.url, settings.relay_config())
    registered = _Started()
    relay_scope = anyio.CancelScope()
    failed = False

    async def run_relay() -> None:
        try:
            with relay_scope:
                await relay.run(task_status=registered)
        finally:
            server.should_exit = True

    async def run_server() -> None:
        nonlocal failed
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's way of saying its start-up failed (it logged why)
            failed = True
        finally:
            relay.stop()

    def stop() -> None:
        relay.stop()
        server.should_exit = True

    def exit_now() -> None:
        # The server is not cancelled but told to skip its waits: cancelled, it would leave its
        # lifespan task to be cancelled at exit, which logs a traceback.
        server.should_exit = server.force_exit = True
        relay_scope.cancel()

    async def announce() -> None:
        await registered.event.wait()
        await server.ready.wait()
        text = banner.json() if settings.log_format == "json" else banner.text()
        print(text, file=sys.stderr, flush=True, end="" if text.endswith("\n") else "\n")

    async with anyio.create_task_group() as supervisor:
        supervisor.start_soon(_on_signals, stop, exit_now)
        supervisor.start_soon(announce)
        async with anyio.create_task_group() as parts:
            parts.start_soon(run_relay)
            parts.start_soon(run_server)
        supervisor.cancel_scope.cancel()
    return 1 if failed else 0


async def _on_signals(stop: Callable[[], None], exit_now: Callable[[], None]) -> None:
    """The first SIGTERM/SIGINT stops everything gracefully, the second at once; later ones are
    ignored."""
    stopping = False
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for received in signals:
                if stopping:
                    log.warning("second %s: exiting now", received.name)
                    exit_now()
                    return
                stopping = True
                log.info("%s: stopping the relay and the API", received.name)
                stop()
    finally:
        # The way out is under way, and bounded (the relay's stop deadline, the API's lifespan,
        # the embedded server's stop): later signals change nothing. Closing the receiver had left
        # them to the default action, which killed the process half-way out, the embedded server
        # left running.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
