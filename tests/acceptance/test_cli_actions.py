"""``outbox actions list|add|remove`` and ``outbox webhooks backfill`` as a user runs them."""

from __future__ import annotations

import json


def test_register_subscribe_refuse_removal_then_remove(cli, conn):  # noqa: F811
    added = cli("actions", "add", "MODEL_TRAINED", "--title", "Model trained", "--payload-key", "model")
    assert added.stdout.strip() == "action MODEL_TRAINED registered"
    table = cli("actions", "list").stdout
    assert "MODEL_TRAINED" in table and "custom" in table and "15 actions" in table
    listed = json.loads(cli("actions", "list", "--json").stdout)
    assert listed[-1] == {
        "name": "MODEL_TRAINED", "title": "Model trained", "description": "", "payload_key": "model",
        "organization_only": False, "built_in": False, "opt_in": False,
    }  # fmt: skip
    hook = json.loads(cli("webhooks", "add", "https://example.com/h", "-a", "MODEL_TRAINED", "--json").stdout)
    refused = cli("actions", "remove", "MODEL_TRAINED", ok=False)
    assert refused.returncode == 2
    assert f"in use by webhook(s) {hook['id']}" in refused.stderr
    built_in = cli("actions", "remove", "TASKS_CREATED", ok=False)
    assert built_in.returncode == 2 and "built in" in built_in.stderr
    bad = cli("actions", "add", "lower", "--title", "t", "--payload-key", "k", ok=False)
    assert bad.returncode == 2 and bad.stderr.startswith("outbox: name: ") and "name" in bad.stderr
    long = cli("actions", "add", "X" * 200, "--title", "t", "--payload-key", "k", ok=False)
    assert long.returncode == 2 and "invalid action" in long.stderr
    cli("webhooks", "remove", str(hook["id"]), "--yes")
    assert cli("actions", "remove", "MODEL_TRAINED").stdout.strip() == "action MODEL_TRAINED removed"


def test_backfill_queues_existing_tasks_for_one_webhook(cli, conn):  # noqa: F811
    conn.execute("insert into task (data, project_id) select '{}', 1 from generate_series(1, 5)")
    hook = json.loads(cli("webhooks", "add", "https://example.com/h", "--project", "1", "--json").stdout)
    done = cli("webhooks", "backfill", str(hook["id"]), "--action", "TASKS_CREATED", "--since", "1h",
               WEBHOOK_BATCH_SIZE="2")  # fmt: skip
    assert done.stdout.strip() == (
        f"webhook {hook['id']}: 5 rows queued as TASKS_CREATED, 1 event, 3 deliveries"
    )
    chunks = conn.execute(
        "select p.row_end - p.row_start as rows from outbox.payload p order by p.chunk"
    ).fetchall()
    assert [c["rows"] for c in chunks] == [2, 2, 1]
    wrong = cli(
        "webhooks", "backfill", str(hook["id"]), "--action", "TASKS_CREATED", "--project", "2", ok=False
    )
    assert wrong.returncode == 2 and "for project 1 only" in wrong.stderr
    bad_time = cli(
        "webhooks", "backfill", str(hook["id"]), "--action", "TASKS_CREATED", "--since", "soon", ok=False
    )
    assert bad_time.returncode == 2 and "--since: not a time" in bad_time.stderr
