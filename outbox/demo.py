"""``outbox demo``: a newcomer's first run, end to end on an embedded PostgreSQL.

Creates Label Studio-shaped tables, installs outbox, starts a local receiver and a relay, then
plays a labeling session with the SQL Label Studio itself issues, printing every webhook as it
arrives. Exits 0 when every expected webhook arrived, 1 otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
from rich.console import Console

from outbox import db, embedded, migrations, sql
from outbox.config import Settings
from outbox.receiver import Received, Receiver, Reply
from relay.relay import Relay
from relay.signing import generate_secret, verify

DEMO_DATABASE = "outbox_demo"
# An import of no tasks is no import (Label Studio sends nothing); above 50,000 the demo stops being
# a quick first run.
MIN_TASKS, MAX_TASKS = 1, 50_000
POSITIVE = (
    '[{"type": "choices", "value": {"choices": ["Positive"]}, "from_name": "sentiment", "to_name": "text"}]'
)
LABEL_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)


@dataclass(frozen=True)
class Step:
    title: str
    run: Callable[[psycopg.Connection[Any]], None]
    # (webhook path, action) expected from this step
    expect: list[tuple[str, str]]


def _steps(
    tasks: int,
    batch_size: int,
    subscribe_project: Callable[[psycopg.Connection[Any]], None] = lambda c: None,
) -> list[Step]:
    """The session on ``tasks`` imported tasks; the steps touch tasks 1 to 3, or as many exist.
    ``subscribe_project`` runs right after the project is created (a project webhook must name a
    project that exists)."""
    skipped = min(2, tasks)  # task 1 when it is the only one: it then has two annotations
    deleted = list(range(1, min(3, tasks) + 1))

    def create_project(c: psycopg.Connection[Any]) -> None:
        c.execute(
            "insert into project (id, title, description, label_config, organization_id, created_by_id)"
            " values (1, 'Sentiment', 'demo project', %s, 1, 1)",
            (LABEL_CONFIG,),
        )
        # a project webhook must name a project that exists (outbox.webhook refuses others)
        subscribe_project(c)

    def import_tasks(c: psycopg.Connection[Any]) -> None:
        with c.transaction():  # one import: tasks and a pre-annotated one, as Label Studio does
            c.execute(
                "insert into task (data, project_id, inner_id) select jsonb_build_object('text',"
                " 'review #' || g), 1, g from generate_series(1, %s) g",
                (tasks,),
            )
            c.execute(
                "insert into task_completion (task_id, project_id, result, completed_by_id)"
                " values (%s, 1, '[]', 1)",
                (tasks,),
            )

    def annotate(c: psycopg.Connection[Any]) -> None:
        c.execute(
            "insert into task_completion (id, task_id, project_id, completed_by_id, lead_time, result)"
            " values (101, 1, 1, 1, 4.2, %s)",
            (POSITIVE,),
        )
        # Label Studio's follow-up counter update, milliseconds later in its own transaction
        c.execute("update task set is_labeled = true, total_annotations = 1 where id = 1")

    def edit(c: psycopg.Connection[Any]) -> None:
        c.execute(
            "update task_completion set result = jsonb_set(result, '{0,value,choices,0}', '\"Negative\"')"
            " where id = 101"
        )

    def skip(c: psycopg.Connection[Any]) -> None:
        c.execute(
            "insert into task_completion (id, task_id, project_id, completed_by_id, was_cancelled, result)"
            " values (102, %s, 1, 1, true, '[]')",
            (skipped,),
        )

    def delete_annotation(c: psycopg.Connection[Any]) -> None:
        c.execute("delete from task_completion where id = 102")

    def delete_tasks(c: psycopg.Connection[Any]) -> None:
        # The Data Manager: detach first, then delete tasks and their annotations
        c.execute("update task set project_id = null where id = any(%s)", (deleted,))
        with c.transaction():
            c.execute("delete from task where id = any(%s)", (deleted,))
            c.execute("delete from task_completion where task_id = any(%s)", (deleted,))

    def update_project(c: psycopg.Connection[Any]) -> None:
        c.execute("update project set title = 'Sentiment v2', updated_at = now() where id = 1")
        c.execute("update project set updated_at = now(), model_version = 'v2' where id = 1")  # silent

    def delete_project(c: psycopg.Connection[Any]) -> None:
        with c.transaction():
            c.execute("delete from project where id = 1")
            c.execute("delete from task_completion where project_id = 1")
            c.execute("delete from task where project_id = 1")

    both = ("/organization", "/project-1")
    # an import over WEBHOOK_BATCH_SIZE tasks is sent as several TASKS_CREATED, as Label Studio does
    chunks = math.ceil(tasks / batch_size)
    return [
        Step("create a project", create_project, [("/organization", "PROJECT_CREATED")]),
        Step(f"import {tasks} tasks in bulk", import_tasks, [(p, "TASKS_CREATED") for p in both] * chunks),
        Step("annotate task 1", annotate, [(p, "ANNOTATION_CREATED") for p in both]),
        Step("change the annotation", edit, [(p, "ANNOTATION_UPDATED") for p in both]),
        Step(f"skip task {skipped}", skip, [(p, "ANNOTATION_CREATED") for p in both]),
        Step("delete the skip", delete_annotation, [(p, "ANNOTATIONS_DELETED") for p in both]),
        Step(
            f"delete {len(deleted)} task(s) (Data Manager)",
            delete_tasks,
            [(p, "TASKS_DELETED") for p in both],
        ),
        Step("rename the project", update_project, [(p, "PROJECT_UPDATED") for p in both]),
        Step("delete the project", delete_project, [("/organization", "PROJECT_DELETED")]),
    ]


def _describe(body: dict[str, Any]) -> str:
    """The key fields of a webhook body, in one line."""
    action = body["action"]
    if "tasks" in body:
        ids = [t["id"] for t in body["tasks"]]
        rows = f"tasks {ids[0]}..{ids[-1]}" if len(ids) > 3 else f"tasks {ids}"
    elif "annotation" in body:
        annotation = body["annotation"]
        if isinstance(annotation, list):
            rows = f"{len(annotation)} annotations"
        else:
            choice = (annotation.get("result") or [{}])[0].get("value", {}).get("choices")
            rows = f"annotation {annotation['id']} on task {annotation.get('task')}" + (
                f" {choice}" if choice else " (skipped)" if annotation.get("was_cancelled") else ""
            )
    elif "annotations" in body:
        rows = f"annotations {[a['id'] for a in body['annotations']]}"
    else:
        rows = ""
    project = body.get("project") or {}
    counters = (
        f", {project['task_number']} tasks / {project['finished_task_number']} labeled"
        if "task_number" in project
        else ""
    )
    name = f" {project['title']!r}" if project.get("title") else ""
    return f"{action:20} {rows:30} project {project.get('id')}{name}{counters}"


def run_demo(settings: Settings, *, tasks: int = 12) -> int:
    """Run the demo; returns the process exit status."""
    if not MIN_TASKS <= tasks <= MAX_TASKS:
        raise ValueError(f"--tasks: {MIN_TASKS} to {MAX_TASKS} tasks, not {tasks}")
    console = Console(highlight=False, soft_wrap=True)
    # a SIGTERM (a supervisor, `timeout`) stops the embedded server on the way out, as Ctrl-C does
    with embedded.interruptible():
        server = embedded.start(settings.data_dir)
        try:
            embedded.ensure_database(server.url(), DEMO_DATABASE, fresh=True)
            url = server.url(DEMO_DATABASE)
            console.print(f"[bold]outbox demo[/] on an embedded PostgreSQL in {settings.data_dir}/")
            with db.connect_sync(url, autocommit=True) as conn:
                conn.execute(sql.read("label_studio_sandbox.sql"))
                applied = migrations.migrate(conn)
                console.print(f"  installed outbox: {', '.join(m.name for m in applied)}")
            return anyio.run(_session, settings, url, tasks, console)
        finally:
            server.stop()


async def _session(settings: Settings, url: str, tasks: int, console: Console) -> int:
    secret = generate_secret()
    started = time.perf_counter()

    def show(request: Received) -> Reply:
        signed = ""
        if request.path == "/project-1":
            ok = verify(
                secret,
                request.headers["webhook-id"],
                int(request.headers["webhook-timestamp"]),
                request.body,
                request.headers["webhook-signature"],
            )
            signed = " [green]signature ok[/]" if ok else " [red]BAD SIGNATURE[/]"
        console.print(f"    [cyan]→ {request.path[1:]:13}[/] {_describe(request.json)}{signed}")
        return Reply()

    relay_settings = settings.model_copy(update={"poll_interval": 0.5, "log_level": "WARNING"})
    async with Receiver(show) as receiver, anyio.create_task_group() as tg:
        with db.connect_sync(url, autocommit=True) as conn:
            conn.execute("insert into htx_user (id, email) values (1, 'annotator@example.com')")
            conn.execute("insert into organization (id, title, created_by_id) values (1, 'Demo', 1)")
            conn.execute(
                "insert into outbox.webhook (organization_id, url, description) values (1, %s, %s)",
                (f"{receiver.url}/organization", "organization-level: every event"),
            )
            console.print(
                f"  receiver on {receiver.url}; webhooks: [cyan]organization[/] (all events),"
                " [cyan]project-1[/] (project 1, signed, from its creation)\n"
            )

            def subscribe_project(c: psycopg.Connection[Any]) -> None:
                c.execute(
                    "insert into outbox.webhook (organization_id, project_id, url, secret, description)"
                    " values (1, 1, %s, %s, %s)",
                    (f"{receiver.url}/project-1", secret, "project 1 only, signed"),
                )

            relay = Relay(url, relay_settings.relay_config())
            await tg.start(relay.run)
            expected = 0
            steps = _steps(tasks, settings.webhook_batch_size, subscribe_project)
            for step in steps:
                console.print(f"  [bold]{step.title}[/]")
                step.run(conn)
                expected += len(step.expect)
                try:
                    await receiver.wait_for(expected, timeout=15)
                except AssertionError:
                    break
            relay.stop()
    got = sorted((r.path, r.action) for r in receiver.requests)
    want = sorted(e for step in steps for e in step.expect)
    elapsed = time.perf_counter() - started
    if got != want:
        missing = [e for e in want if e not in got]
        console.print(
            f"\n[red]demo failed[/]: missing {missing}, unexpected {[g for g in got if g not in want]}"
        )
        return 1
    console.print(
        f"\n[bold green]demo ok[/]: {len(got)} webhooks delivered to 2 subscribers"
        f" for {len(steps)} steps in {elapsed:.1f} s"
    )
    return 0
