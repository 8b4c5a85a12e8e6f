"""``outbox webhooks adopt`` (and ``POST /api/webhooks/adopt``): Label Studio's own webhooks copied
into outbox, once each, with Label Studio's copies switched off in the same transaction, on the
sandbox schema and on Label Studio 1.23.2's real one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from outbox import db, migrations
from outbox.admin import adopt
from outbox.admin.database import create_engine
from outbox.admin.errors import Invalid
from tests.integration.api.conftest import ADMIN_TOKEN, api_settings, serve
from tests.support import ls_schema
from tests.support.cli import outbox

pytestmark = pytest.mark.anyio

HEADER_SECRET = "s3cr3t-header-value-ZZ9"
URL_SECRET = "url-token-QQ7"


def _seed(conn: psycopg.Connection[Any]) -> None:
    """Label Studio's organization 1, projects 1 and 2, and four of its webhooks: project 1's with a
    secret header and two actions, an organization-level one, project 2's (inactive), and one
    outbox cannot take (a header outbox sets itself)."""
    ls_schema.label_studio_webhook(
        conn,
        1,
        f"https://ml.example.com/train?token={URL_SECRET}",
        project_id=1,
        actions=("ANNOTATION_CREATED", "ANNOTATION_UPDATED"),
        headers={"Authorization": f"Bearer {HEADER_SECRET}"},
        send_payload=False,
    )
    ls_schema.label_studio_webhook(conn, 2, "https://hooks.example.com/all")
    ls_schema.label_studio_webhook(conn, 3, "https://hooks.example.com/p2", project_id=2, is_active=False)
    ls_schema.label_studio_webhook(
        conn, 4, "https://hooks.example.com/bad", project_id=1, headers={"Host": HEADER_SECRET}
    )


@pytest.fixture
def seeded(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute("insert into organization (id, title) values (1, 'org')")
    conn.execute("insert into project (id, title, organization_id) values (1, 'p1', 1), (2, 'p2', 1)")
    _seed(conn)
    return conn


def _snapshot(conn: psycopg.Connection[Any]) -> Any:
    return (
        conn.execute("select * from outbox.webhook order by id").fetchall(),
        conn.execute("select * from outbox.adopted_webhook order by 1").fetchall(),
        conn.execute("select * from public.webhook order by id").fetchall(),
        conn.execute("select last_value from outbox.webhook_id_seq").fetchone(),
    )


def _cli(database_url: str, *args: str) -> Any:
    result = outbox("webhooks", "adopt", *args, env={"DATABASE_URL": database_url})
    assert "Traceback" not in result.stderr, result.stderr
    for secret in (HEADER_SECRET, URL_SECRET):
        assert secret not in result.stdout + result.stderr
    return result


def test_dry_run_changes_nothing_and_says_what_would_happen(seeded, database_url):
    before = _snapshot(seeded)
    result = _cli(database_url, "--dry-run", "--deactivate")
    assert result.returncode == 0, result.stderr
    assert _snapshot(seeded) == before
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "would adopt Label Studio webhook 1 (project 1, https://ml.example.com/train?…, ANNOTATION_CREATED,"
    )
    assert "headers: Authorization" in lines[0] and lines[0].endswith("; would deactivate it in Label Studio")
    assert lines[2].startswith("would adopt Label Studio webhook 3") and "deactivate" not in lines[2]
    assert lines[3].startswith("skipped Label Studio webhook 4") and "set by outbox" in lines[3]
    assert lines[4] == (
        "dry run, nothing changed: would adopt 3, 0 already adopted, 1 skipped; "
        "2 would be deactivated in Label Studio"
    )


def test_adopt_copies_deactivates_in_the_same_transaction_and_is_idempotent(seeded, database_url):
    result = _cli(database_url, "--deactivate")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.splitlines()[-1]
        == "adopted 3, 0 already adopted, 1 skipped; 2 deactivated in Label Studio"
    )
    copies = seeded.execute(
        "select a.label_studio_webhook_id as ls, w.* from outbox.adopted_webhook a"
        " join outbox.webhook w on w.id = a.webhook_id order by 1"
    ).fetchall()
    assert [c["ls"] for c in copies] == [1, 2, 3]
    first, org, inactive = copies
    assert (first["project_id"], first["organization_id"], first["url"]) == (
        1,
        1,
        f"https://ml.example.com/train?token={URL_SECRET}",
    )
    assert first["headers"] == {"Authorization": f"Bearer {HEADER_SECRET}"}
    assert (first["send_payload"], first["send_for_all_actions"]) == (False, False)
    assert sorted(first["actions"]) == ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]
    assert first["is_active"] and first["secret"] is None
    assert org["project_id"] is None and org["send_for_all_actions"]
    assert not inactive["is_active"]  # paused in Label Studio, paused in outbox
    active = {r["id"]: r["is_active"] for r in seeded.execute("select id, is_active from public.webhook")}
    assert active == {1: False, 2: False, 3: False, 4: True}  # the skipped one still sends from LS

    again = _cli(database_url, "--deactivate")
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1] == (
        "adopted 0, 3 already adopted, 1 skipped; 0 deactivated in Label Studio"
    )
    assert seeded.execute("select count(*) from outbox.webhook").fetchone()["count"] == 3


def test_a_deleted_copy_is_not_brought_back_and_deactivate_can_come_later(seeded, database_url):
    assert _cli(database_url, "--project", "1").returncode == 0  # webhook 1 adopted, 4 skipped
    output = _cli(database_url, "--project", "1").stdout
    assert "already adopted Label Studio webhook 1" in output
    seeded.execute("delete from outbox.webhook")
    later = _cli(database_url, "--project", "1", "--deactivate", "--json")
    report = json.loads(later.stdout)
    assert [
        (a["label_studio_webhook"], a["outcome"], a["webhook"], a["deactivate"]) for a in report["adoptions"]
    ] == [
        (1, "already adopted", None, True),
        (4, "skip", None, False),
    ]
    assert seeded.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0
    assert not seeded.execute("select is_active from public.webhook where id = 1").fetchone()["is_active"]


def test_without_deactivate_it_warns_about_double_delivery(seeded, database_url):
    result = _cli(database_url, "--project", "2")
    assert result.returncode == 0
    assert "receivers get every event twice" in result.stdout


async def test_two_adopts_at_once_copy_each_webhook_once(seeded, database_url):
    engine = create_engine(database_url, pool_size=4)
    reports: list[adopt.AdoptReport] = []

    async def run() -> None:
        reports.append(await adopt.adopt(engine, deactivate=True, max_per_organization=100))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(run)
    finally:
        await engine.dispose()
    assert sorted(r.count("adopt") for r in reports) == [0, 0, 3]
    assert seeded.execute("select count(*) from outbox.adopted_webhook").fetchone()["count"] == 3


async def test_the_cap_refuses_the_whole_adoption_and_label_studio_keeps_sending(seeded, database_url):
    engine = create_engine(database_url, pool_size=None)
    try:
        with pytest.raises(Invalid, match="already has 2 webhooks"):
            await adopt.adopt(engine, deactivate=True, max_per_organization=2)
    finally:
        await engine.dispose()
    assert seeded.execute("select count(*) from outbox.webhook").fetchone()["count"] == 0
    assert seeded.execute("select count(*) from outbox.adopted_webhook").fetchone()["count"] == 0
    assert seeded.execute("select bool_and(is_active) as on from public.webhook where id <> 3").fetchone()[
        "on"
    ]


def test_a_database_without_label_studios_webhook_tables(installed_database_url):
    with db.connect_sync(installed_database_url, autocommit=True) as conn:
        conn.execute("drop table public.webhook_action, public.webhook")
    result = _cli(installed_database_url)
    assert result.returncode == 2
    assert result.stderr.strip() == f"outbox: {adopt.LABEL_STUDIO_TABLES_MISSING}"


def test_not_installed_says_run_migrate(ls_database_url):
    result = _cli(ls_database_url)
    assert result.returncode == 2 and "outbox migrate" in result.stderr


def test_the_api_endpoint_does_the_same(seeded, database_url):
    settings = api_settings()
    from outbox.api import create_app

    with serve(create_app(settings, database_url, admin_token=ADMIN_TOKEN)) as base:
        client = httpx.Client(base_url=base, headers={"Authorization": f"Token {ADMIN_TOKEN}"})
        assert httpx.post(f"{base}/api/webhooks/adopt", json={}).status_code == 401
        dry = client.post("/api/webhooks/adopt", json={"dry_run": True, "project": 1})
        assert dry.status_code == 200, dry.text
        assert HEADER_SECRET not in dry.text and URL_SECRET not in dry.text
        assert [a["outcome"] for a in dry.json()["adoptions"]] == ["adopt", "skip"]
        assert client.post("/api/webhooks/adopt", json={"dry_run": "yes"}).status_code == 400
        assert client.post("/api/webhooks/adopt", json={"project": 0}).status_code == 400
        done = client.post("/api/webhooks/adopt", json={"deactivate": True})
        assert done.status_code == 200 and done.json()["dry_run"] is False
        assert [a["webhook"] is not None for a in done.json()["adoptions"]] == [True, True, True, False]
        assert client.post("/api/webhooks/adopt").json()["adoptions"][0]["outcome"] == "already adopted"


def test_on_label_studios_real_schema(fresh_database: Callable[[str], str]):
    url = fresh_database("template0")
    with db.connect_sync(url, autocommit=True) as conn:
        ls_schema.create_real_schema(conn)
        migrations.migrate(conn)
        ls_schema.organization(conn, 1)
        ls_schema.project(conn, 1)
        ls_schema.project(conn, 2)
        _seed(conn)
        result = _cli(url, "--deactivate")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == (
            "adopted 3, 0 already adopted, 1 skipped; 2 deactivated in Label Studio"
        )
        rows = conn.execute(
            "select id, is_active, updated_at > created_at as touched from public.webhook order by id"
        )
        assert [(r["id"], r["is_active"], r["touched"]) for r in rows] == [
            (1, False, True),
            (2, False, True),
            (3, False, False),
            (4, True, False),
        ]
        assert _cli(url, "--deactivate").stdout.splitlines()[-1].startswith("adopted 0, 3 already adopted")
