"""Against a real Label Studio: its own webhooks and outbox's, side by side, must be the same.

Opt-in (it needs a running Label Studio on PostgreSQL): set
    OUTBOX_LS_URL=http://127.0.0.1:8081  OUTBOX_LS_TOKEN=<legacy API token>
    OUTBOX_LS_DATABASE_URL=postgresql://…/<its database>
Label Studio must allow webhooks to 127.0.0.1 (SSRF_PROTECTION_ENABLED=false). The test installs
outbox on Label Studio's real schema, subscribes the same receivers in Label Studio and in outbox,
drives a labeling session through Label Studio's REST API, and compares every body. It leaves the
database as it found it (outbox uninstalled with its data, its own project deleted).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from outbox import db, migrations
from outbox.receiver import Receiver
from relay.relay import Relay
from tests.conftest import relay_settings

LS_URL = os.environ.get("OUTBOX_LS_URL")
LS_TOKEN = os.environ.get("OUTBOX_LS_TOKEN")
LS_DATABASE = os.environ.get("OUTBOX_LS_DATABASE_URL")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not (LS_URL and LS_TOKEN and LS_DATABASE), reason="needs a real Label Studio (OUTBOX_LS_*)"
    ),
]

LABEL_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text" choice="single">'
    '<Choice value="pos"/><Choice value="neg"/></Choices></View>'
)


def result(choice: str) -> list[dict[str, Any]]:
    return [
        {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [choice]},
        }
    ]


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Every place the two JSON values differ, keys in order included."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if list(ours) != list(theirs):
            return [f"{path}: keys {list(ours)} != {list(theirs)}"]
        return [d for k in ours for d in differences(ours[k], theirs[k], f"{path}.{k}")]
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} items != {len(theirs)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    return [] if ours == theirs else [f"{path}: {ours!r} != {theirs!r}"]


@pytest.fixture
def installed() -> Any:
    assert LS_DATABASE
    with db.connect_sync(LS_DATABASE, autocommit=True) as conn:
        migrations.uninstall(conn, drop_data=True)
        migrations.migrate(conn)
    yield LS_DATABASE
    with db.connect_sync(LS_DATABASE, autocommit=True) as conn:
        migrations.uninstall(conn, drop_data=True)


@pytest.fixture
async def label_studio() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=LS_URL or "", headers={"Authorization": f"Token {LS_TOKEN}"}, timeout=120
    ) as client:
        yield client


async def test_outbox_sends_what_label_studio_sends(installed, label_studio):
    ls = label_studio
    conn = db.connect_sync(installed, autocommit=True)
    org = conn.execute("select id from organization order by id limit 1").fetchone()["id"]
    async with Receiver() as receiver, anyio.create_task_group() as tg:
        url = receiver.url
        # Label Studio's open-source API refuses organization-level webhooks: its own table takes one
        conn.execute(
            "insert into webhook (organization_id, project_id, url, send_payload, send_for_all_actions,"
            " headers, is_active, created_at, updated_at) values (%s, null, %s, true, true, '{}', true, now(), now())",
            (org, f"{url}/ls/org"),
        )
        conn.execute(
            "insert into outbox.webhook (organization_id, url) values (%s, %s)",
            (org, f"{url}/outbox/org"),
        )
        # Label Studio's last follow-up UPDATE of the task lands 37-50 ms after the annotation on an
        # idle machine (the default settle of 100 ms covers it); a loaded CI machine needs more.
        relay = Relay(installed, relay_settings(settle_ms=500).relay_config())
        await tg.start(relay.run)
        project = None
        try:

            async def step(method: str, path: str, body: Any = None) -> Any:
                response = await ls.request(method, path, json=body)
                assert response.status_code < 400, (path, response.status_code, response.text[:300])

                # Label Studio has sent its webhooks when the request returns; wait for outbox's
                def caught_up(requests: Any) -> bool:
                    mine = [r for r in requests if r.path.startswith("/outbox/")]
                    theirs = [r for r in requests if r.path.startswith("/ls/")]
                    return len(mine) >= len(theirs)

                await receiver.wait_until(
                    caught_up, timeout=15, what=f"outbox to catch up after {method} {path}"
                )
                return response.json() if response.content else None

            project = (
                await step(
                    "POST",
                    "/api/projects/",
                    {"title": "outbox-vs-ls", "label_config": LABEL_CONFIG},
                )
            )["id"]
            await step("POST", "/api/webhooks/", {"project": project, "url": f"{url}/ls/project"})
            conn.execute(
                "insert into outbox.webhook (organization_id, project_id, url) values (%s, %s, %s)",
                (org, project, f"{url}/outbox/project"),
            )
            await step(
                "POST",
                f"/api/projects/{project}/import",
                [{"text": "one"}, {"text": "two"}, {"text": "three"}],
            )
            await step(
                "POST",
                f"/api/projects/{project}/import",
                [
                    {"data": {"text": "pre A"}, "annotations": [{"result": result("neg")}]},
                    {
                        "data": {"text": "pre B"},
                        "annotations": [{"result": [], "was_cancelled": True}],
                    },
                ],
            )
            tasks = (await ls.get(f"/api/tasks/?project={project}&page_size=100")).json()
            ids = sorted(t["id"] for t in (tasks["tasks"] if isinstance(tasks, dict) else tasks))
            first = await step(
                "POST",
                f"/api/tasks/{ids[0]}/annotations/",
                {"result": result("pos"), "lead_time": 1.5},
            )
            await step("PATCH", f"/api/annotations/{first['id']}/", {"result": result("neg")})
            await step("POST", f"/api/tasks/{ids[1]}/annotations/", {"result": [], "was_cancelled": True})
            second = await step("POST", f"/api/tasks/{ids[2]}/annotations/", {"result": result("pos")})
            await step("DELETE", f"/api/annotations/{second['id']}/")
            await step("DELETE", f"/api/tasks/{ids[2]}/")
            await step(
                "POST",
                f"/api/dm/actions?id=delete_tasks&project={project}",
                {"selectedItems": {"all": False, "included": [ids[0], ids[1]]}},
            )
            # 1,200 tasks: one import transaction (1,000-row statements); then the Data Manager
            # deletes everything in transactions of 500 tasks and sends one TASKS_DELETED
            await step(
                "POST", f"/api/projects/{project}/import", [{"text": f"bulk {i}"} for i in range(1200)]
            )
            await step(
                "POST",
                f"/api/dm/actions?id=delete_tasks&project={project}",
                {"selectedItems": {"all": True, "excluded": []}},
            )
            await step("PATCH", f"/api/projects/{project}/", {"title": "outbox-vs-ls renamed"})
            await step("DELETE", f"/api/projects/{project}/")
            project = None
        finally:
            relay.stop()
            if project is not None:
                await ls.delete(f"/api/projects/{project}/")
            conn.execute("delete from webhook where url like %s", (f"{url}/%",))
    problems: list[str] = []
    for scope in ("org", "project"):
        theirs = [r.json for r in receiver.requests if r.path == f"/ls/{scope}"]
        ours = [r.json for r in receiver.requests if r.path == f"/outbox/{scope}"]
        print(
            f"\n{scope}: Label Studio sent {[b['action'] for b in theirs]}\n{scope}: outbox sent       {[b['action'] for b in ours]}"
        )
        if [b["action"] for b in ours] != [b["action"] for b in theirs]:
            problems.append(f"{scope}: actions differ")
            continue
        for mine, label_studio_body in zip(ours, theirs, strict=True):
            if mine["action"] == "TASKS_DELETED":
                # Label Studio lists a Data Manager delete in the order its query returned the
                # rows (heap order); outbox lists ids in ascending order. Same ids either way.
                for body in (mine, label_studio_body):
                    body["tasks"] = sorted(body["tasks"], key=lambda t: t["id"])
            problems += [f"{scope} {mine['action']}{d}" for d in differences(mine, label_studio_body)]
    assert problems == [], "\n".join(problems)
