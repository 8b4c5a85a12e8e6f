"""Against a real Label Studio: its own webhooks and outbox's, side by side, must be the same.

Opt-in (it needs a running Label Studio on PostgreSQL): set
    OUTBOX_LS_URL=http://127.0.0.1:8081  OUTBOX_LS_TOKEN=<legacy API token>
    OUTBOX_LS_DATABASE_URL=postgresql://…/<its database>
Label Studio must allow webhooks to 127.0.0.1 (SSRF_PROTECTION_ENABLED=false). The test installs
outbox on Label Studio's real schema, subscribes the same receivers in Label Studio and in outbox,
drives a labeling session through Label Studio's REST API, and compares every body. It leaves the
database as it found it (outbox uninstalled with its data, its own project deleted).
Further tests take one path each: label links, a local-files storage sync (files under
OUTBOX_LS_FILES, Label Studio's LOCAL_FILES_DOCUMENT_ROOT, default /tmp/ls-files), label renames.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from outbox import db, migrations
from outbox.receiver import Received, Receiver
from relay.relay import Relay
from tests.conftest import relay_settings

LS_URL = os.environ.get("OUTBOX_LS_URL")
LS_TOKEN = os.environ.get("OUTBOX_LS_TOKEN")
LS_DATABASE = os.environ.get("OUTBOX_LS_DATABASE_URL")
# Label Studio's LOCAL_FILES_DOCUMENT_ROOT (with LOCAL_FILES_SERVING_ENABLED=true), for a storage sync
LS_FILES = os.environ.get("OUTBOX_LS_FILES", "/tmp/ls-files")

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


# Request sent -> arrival at the receiver of each annotation webhook, by side ("ls" or "outbox") and
# action, over the module's tests: the lag docs/performance.md quotes, printed at the end (no assertion)
LAGS: dict[tuple[str, str], list[float]] = defaultdict(list)


def time_arrivals(arrived: Sequence[Received], sent: float) -> None:
    """Record the lag of each annotation webhook that arrived for a request sent at ``sent``, of
    the actions both sent (outbox's ANNOTATION_UPDATED for a label rename has no counterpart)."""
    both = {r.action for r in arrived if r.path.startswith("/ls/")}
    for r in arrived:
        if r.action in both & {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}:
            LAGS[r.path.split("/")[1], r.action].append(r.received_at - sent)


@pytest.fixture(scope="module", autouse=True)
def lag_summary() -> Iterator[None]:
    yield
    for (side, action), lags in sorted(LAGS.items()):
        ms = sorted(1000 * lag for lag in lags)
        p90 = ms[math.ceil(0.9 * len(ms)) - 1]
        print(
            f"\n{action} {side}: request -> arrival median {statistics.median(ms):.0f} ms,"
            f" p90 {p90:.0f} ms, {len(ms)} webhooks"
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
                before, sent = len(receiver.requests), time.perf_counter()
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
                time_arrivals(receiver.requests[before:], sent)
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


# The paths below drive one Label Studio feature each, with the same subscriptions and comparison.


class SideBySide:
    """One receiver; Label Studio's webhooks post to /ls/<scope>, outbox's to /outbox/<scope>."""

    def __init__(self, conn: Any, ls: httpx.AsyncClient, receiver: Receiver, org: int) -> None:
        self.conn, self.ls, self.receiver, self.org = conn, ls, receiver, org

    async def step(self, method: str, path: str, body: Any = None) -> Any:
        before, sent = len(self.receiver.requests), time.perf_counter()
        response = await self.ls.request(method, path, json=body)
        assert response.status_code < 400, (path, response.status_code, response.text[:300])
        await self.caught_up(f"{method} {path}")
        time_arrivals(self.receiver.requests[before:], sent)
        return response.json() if response.content else None

    async def caught_up(self, after: str) -> None:
        """Label Studio has sent its webhooks when a request returns; wait for outbox's."""

        def as_many(requests: Any) -> bool:
            mine = [r for r in requests if r.path.startswith("/outbox/")]
            theirs = [r for r in requests if r.path.startswith("/ls/")]
            return len(mine) >= len(theirs)

        await self.receiver.wait_until(as_many, timeout=15, what=f"outbox to catch up after {after}")

    async def subscribe_project(self, project: int) -> None:
        url = self.receiver.url
        await self.step("POST", "/api/webhooks/", {"project": project, "url": f"{url}/ls/project"})
        self.conn.execute(
            "insert into outbox.webhook (organization_id, project_id, url) values (%s, %s, %s)",
            (self.org, project, f"{url}/outbox/project"),
        )

    def sent(self, side: str, scope: str) -> list[dict[str, Any]]:
        return [r.json for r in self.receiver.requests if r.path == f"/{side}/{scope}"]

    def problems(self) -> list[str]:
        """Every difference between what Label Studio and outbox sent, scope by scope."""
        found: list[str] = []
        for scope in ("org", "project"):
            theirs, ours = self.sent("ls", scope), self.sent("outbox", scope)
            print(
                f"\n{scope}: Label Studio sent {[b['action'] for b in theirs]}"
                f"\n{scope}: outbox sent       {[b['action'] for b in ours]}"
            )
            if [b["action"] for b in ours] != [b["action"] for b in theirs]:
                found.append(f"{scope}: actions differ")
                continue
            for mine, label_studio_body in zip(ours, theirs, strict=True):
                found += [f"{scope} {mine['action']}{d}" for d in differences(mine, label_studio_body)]
        return found


@pytest.fixture
async def side_by_side(installed, label_studio) -> AsyncIterator[SideBySide]:
    """Organization webhooks in Label Studio and outbox, and a relay running, for one test."""
    conn = db.connect_sync(installed, autocommit=True)
    org = conn.execute("select id from organization order by id limit 1").fetchone()["id"]
    async with Receiver() as receiver, anyio.create_task_group() as tg:
        url = receiver.url
        conn.execute(
            "insert into webhook (organization_id, project_id, url, send_payload, send_for_all_actions,"
            " headers, is_active, created_at, updated_at) values (%s, null, %s, true, true, '{}', true, now(), now())",
            (org, f"{url}/ls/org"),
        )
        conn.execute(
            "insert into outbox.webhook (organization_id, url) values (%s, %s)",
            (org, f"{url}/outbox/org"),
        )
        relay = Relay(installed, relay_settings(settle_ms=500).relay_config())
        await tg.start(relay.run)
        try:
            yield SideBySide(conn, label_studio, receiver, org)
        finally:
            relay.stop()
            conn.execute("delete from webhook where url like %s", (f"{url}/%",))
            conn.close()


@pytest.fixture
async def project(side_by_side) -> AsyncIterator[int]:
    """A project of its own, deleted (with its tasks, links and storages) at the end."""
    created = await side_by_side.ls.post(
        "/api/projects/", json={"title": "outbox-vs-ls paths", "label_config": LABEL_CONFIG}
    )
    assert created.status_code == 201, created.text[:300]
    # outbox's PROJECT_CREATED first: link_labels may pause the webhooks next, and a change routed
    # while its webhook is paused never reaches it (docs/decisions.md, "Pauses")
    await side_by_side.caught_up("POST /api/projects/")
    yield created.json()["id"]
    await side_by_side.ls.delete(f"/api/projects/{created.json()['id']}/")


def new_labels(project: int) -> list[dict[str, Any]]:
    """Two labels of the organization's library, linked into the project's Choices tag."""
    return [
        {
            "title": f"outbox-vs-ls {project} {choice}",
            "value": {"choices": [choice]},
            "project": project,
            "from_name": "sentiment",
        }
        for choice in ("pos", "neg")
    ]


async def link_labels(s: SideBySide, project: int) -> list[int]:
    """Create two labels linked into the project; their ids."""
    # POST /api/labels/ creates the labels and links them: LABEL_LINK_CREATED
    created = await s.ls.post("/api/labels/", json=new_labels(project))
    print(f"\nPOST /api/labels/ with webhooks active: {created.status_code} {created.text[:200]}")
    if created.status_code >= 400:
        # Label Studio 1.23.2 fails there while a webhook is active ("list.count() takes exactly
        # one argument", rolled back): link with every webhook paused, Label Studio's and outbox's
        ours = f"{s.receiver.url}/%"
        s.conn.execute("update webhook set is_active = false where url like %s", (ours,))
        s.conn.execute("update outbox.webhook set is_active = false where url like %s", (ours,))
        try:
            created = await s.ls.post("/api/labels/", json=new_labels(project))
        finally:
            s.conn.execute("update webhook set is_active = true where url like %s", (ours,))
            s.conn.execute("update outbox.webhook set is_active = true where url like %s", (ours,))
    assert created.status_code == 201, created.text[:300]
    await s.caught_up("POST /api/labels/")
    return [label["id"] for label in created.json()]


async def test_label_links_as_label_studio_sends_them(side_by_side, project):
    s = side_by_side
    labels: list[int] = []
    try:
        labels = await link_labels(s, project)
        await s.subscribe_project(project)
        links = (await s.ls.get(f"/api/label_links/?project={project}")).json()
        links = sorted(link["id"] for link in (links["results"] if isinstance(links, dict) else links))
        assert len(links) == 2
        await s.step("PATCH", f"/api/label_links/{links[0]}/", {"from_name": "sentiment2"})
        await s.step("DELETE", f"/api/label_links/{links[1]}/")
        problems = s.problems()
    finally:
        for label in labels:
            await s.ls.delete(f"/api/labels/{label}/")
    assert problems == []


async def test_deleting_a_label_deletes_its_links_and_outbox_says_so(side_by_side, project):
    """A documented difference (docs/events.md): DELETE /api/labels/<id>/ deletes the label's links
    with it; outbox sends LABEL_LINK_DELETED for each (the links are gone, as a label rename
    updates annotations), Label Studio sends nothing."""
    s = side_by_side
    labels = await link_labels(s, project)
    deleted = len(labels)
    try:
        await s.subscribe_project(project)
        for label in labels:
            await s.step("DELETE", f"/api/labels/{label}/")
        labels = []
        # both send this one; whatever outbox sent for the deletes comes first (commit order)
        await s.step("PATCH", f"/api/projects/{project}/", {"title": "outbox-vs-ls labels gone"})
        await s.receiver.wait_until(
            lambda _: any(b["action"] == "PROJECT_UPDATED" for b in s.sent("outbox", "project")),
            timeout=15,
            what="outbox's PROJECT_UPDATED",
        )
    finally:
        for label in labels:
            await s.ls.delete(f"/api/labels/{label}/")
    for scope in ("org", "project"):
        theirs = [b["action"] for b in s.sent("ls", scope)]
        ours = [b["action"] for b in s.sent("outbox", scope)]
        assert "LABEL_LINK_DELETED" not in theirs
        assert [a for a in ours if a != "LABEL_LINK_DELETED"] == theirs
        assert ours.count("LABEL_LINK_DELETED") == deleted


@pytest.fixture
def files(project) -> Iterator[Path]:
    """A folder of 4 JSON tasks under Label Studio's local files root, removed at the end."""
    folder = Path(LS_FILES) / f"outbox-vs-ls-{project}"
    folder.mkdir(parents=True)
    for n in range(4):
        (folder / f"task{n}.json").write_text(json.dumps({"text": f"synced {n}"}))
    yield folder
    shutil.rmtree(folder)


async def test_a_storage_sync_as_label_studio_sends_it(side_by_side, project, files):
    s = side_by_side
    await s.subscribe_project(project)
    storage = await s.step(
        "POST",
        "/api/storages/localfiles/",
        {"project": project, "path": str(files), "regex_filter": r".*\.json", "use_blob_urls": False},
    )
    # each file is a task created in a transaction of its own; Label Studio sends one event
    await s.step("POST", f"/api/storages/localfiles/{storage['id']}/sync")
    assert [b["action"] for b in s.sent("ls", "project")] == ["TASKS_CREATED"]
    assert len(s.sent("ls", "project")[0]["tasks"]) == 4
    assert s.problems() == []


async def test_a_label_rename_updates_annotations_where_label_studio_is_silent(side_by_side, project):
    """Documented: POST /api/labels/bulk rewrites annotations; outbox sends ANNOTATION_UPDATED."""
    s = side_by_side
    await s.step("POST", f"/api/projects/{project}/import", [{"text": "renamed"}])
    await s.subscribe_project(project)
    tasks = (await s.ls.get(f"/api/tasks/?project={project}")).json()
    task = (tasks["tasks"] if isinstance(tasks, dict) else tasks)[0]["id"]
    annotation = await s.step("POST", f"/api/tasks/{task}/annotations/", {"result": result("pos")})
    before = len(s.sent("ls", "project"))
    renamed = await s.step(
        "POST", "/api/labels/bulk", {"project": project, "old_label": ["pos"], "new_label": ["positive"]}
    )
    assert renamed == {"annotations_updated": 1}
    await s.receiver.wait_until(
        lambda _: s.sent("outbox", "project")[-1]["action"] == "ANNOTATION_UPDATED",
        timeout=15,
        what="outbox's ANNOTATION_UPDATED for the rename",
    )
    # Label Studio sends in the request: it sent nothing for the rename
    assert len(s.sent("ls", "project")) == before
    update = s.sent("outbox", "project")[-1]
    assert update["annotation"]["id"] == annotation["id"]
    assert update["annotation"]["result"][0]["value"] == {"choices": ["positive"]}
    # the Data Manager's rename_labels, the same (an annotation.save(update_fields=['result']))
    await s.step(
        "POST",
        f"/api/dm/actions?id=rename_labels&project={project}",
        {
            "selectedItems": {"all": True, "excluded": []},
            "control_tag": "sentiment",
            "old_label_name": "positive",
            "new_label_name": "pos",
        },
    )
    await s.receiver.wait_until(
        lambda _: len(s.sent("outbox", "project")) == before + 2,
        timeout=15,
        what="outbox's ANNOTATION_UPDATED for rename_labels",
    )
    assert len(s.sent("ls", "project")) == before
    update = s.sent("outbox", "project")[-1]
    assert update["action"] == "ANNOTATION_UPDATED"
    assert update["annotation"]["result"][0]["value"] == {"choices": ["pos"]}
