"""Fixtures of the acceptance tests: the command line on a database of the fixtures."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.cli import outbox


@pytest.fixture
def cli(conn, database_url):
    """``cli("webhooks", "list")`` on a database with organization 1 and projects 1 and 2."""
    conn.execute("insert into organization (id, title) values (1, 'org')")
    conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1), (2, 'p2', 1)")

    def run(*args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        result = outbox(*args, env={"DATABASE_URL": database_url, **env})
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    return run
