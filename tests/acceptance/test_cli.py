"""The ``outbox`` command as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def outbox(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("outbox") or str(Path(sys.executable).parent / "outbox")
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [executable, *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_plays_a_session_and_exits_0(tmp_path):
    result = outbox("demo", cwd=tmp_path, env={"OUTBOX_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo ok: 16 webhooks delivered to 2 subscribers" in result.stdout
    for action in (
        "PROJECT_CREATED",
        "TASKS_CREATED",
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
        "TASKS_DELETED",
        "PROJECT_UPDATED",
        "PROJECT_DELETED",
    ):
        assert action in result.stdout
    assert "signature ok" in result.stdout and "BAD SIGNATURE" not in result.stdout


def test_migrate_status_print_and_uninstall(ls_database_url):
    env = {"DATABASE_URL": ls_database_url}
    status = outbox("migrate", "--status", env=env)
    assert status.returncode == 0 and status.stdout.split() == [
        "pending",
        "0001_schema.sql",
        "(versioned)",
        "pending",
        "0002_webhook_scope.sql",
        "(versioned)",
        "pending",
        "0003_payload_chunks.sql",
        "(versioned)",
        "pending",
        "0004_webhook_values.sql",
        "(versioned)",
        "pending",
        "0005_wake_plpgsql.sql",
        "(versioned)",
        "pending",
        "0006_adopted.sql",
        "(versioned)",
        "pending",
        "0007_actions.sql",
        "(versioned)",
        "pending",
        "0008_relay_busy.sql",
        "(versioned)",
        "pending",
        "0009_webhook_limits.sql",
        "(versioned)",
        "pending",
        "0010_broker_urls.sql",
        "(versioned)",
        "pending",
        "0011_events.sql",
        "(versioned)",
        "pending",
        "0012_active_webhooks_opt_in.sql",
        "(versioned)",
        "pending",
        "0013_payload_lz4.sql",
        "(versioned)",
        "pending",
        "capture.sql",
        "(repeatable)",
    ]
    printed = outbox("migrate", "--print", env=env)
    assert printed.returncode == 0
    assert (
        "create table outbox.webhook" in printed.stdout and "create trigger outbox_insert" in printed.stdout
    )
    applied = outbox("migrate", env=env)
    assert applied.returncode == 0 and "14 migration(s) applied" in applied.stdout
    assert outbox("migrate", env=env).stdout.strip() == "outbox is up to date"
    assert "begin;" not in outbox("migrate", "--print", env=env).stdout
    removed = outbox("uninstall", env=env)
    assert removed.returncode == 0 and "schema outbox kept" in removed.stdout
    assert outbox("migrate", "--status", env=env).stdout.split()[-3:] == [
        "pending",
        "capture.sql",
        "(repeatable)",
    ]


def test_a_database_without_label_studio_is_refused_with_the_tables_named(fresh_database):
    url = fresh_database("template0")
    result = outbox("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 2
    assert "Label Studio table(s) not found" in result.stderr and "task_completion" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_database_url_is_a_clear_error():
    result = outbox("relay")
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


def test_bad_configuration_is_a_clear_error(database_url):
    result = outbox("relay", env={"DATABASE_URL": database_url, "WEBHOOK_TIMEOUT": "soon"})
    assert result.returncode == 2 and "WEBHOOK_TIMEOUT: Input should be a valid number" in result.stderr


def test_passwords_never_reach_the_terminal():
    url = "postgresql://outbox:hunter2@127.0.0.1:1/labelstudio"
    result = outbox("migrate", env={"DATABASE_URL": url}, timeout=30)
    assert result.returncode == 2
    assert "hunter2" not in result.stdout + result.stderr
    assert "cannot connect" in result.stderr


def test_prune(database_url):
    result = outbox("prune", env={"DATABASE_URL": database_url})
    assert result.returncode == 0 and result.stdout.startswith("pruned 0 deliveries")
