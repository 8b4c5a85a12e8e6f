"""Where a single-row transaction's capture cost goes: time per transaction, trigger variants.

Not part of the suite (``python -m bench.capture_cost``, about a minute): a diagnostic for the write
path. One pgbench client with ``synchronous_commit = off``, so that a transaction's time is CPU and
round trip (no WAL flush wait), runs the same single-row INSERTs (task / task_completion, 1:1)
against copies of one database that differ only in what is attached to the two tables, rounds
interleaved. The
variants peel the capture apart: PostgreSQL's statement-trigger machinery, the transition table,
one more row written, and the capture SQL itself. The variants live in this file's own SQL, on the
bench's own databases; sql/capture.sql is what ``outbox`` is measured with.
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench import harness

_EMPTY_BODIES = """
create or replace function outbox.capture_task() returns trigger language plpgsql as
$$ begin return null; end $$;
create or replace function outbox.capture_annotation() returns trigger language plpgsql as
$$ begin return null; end $$;
"""

VARIANTS: dict[str, tuple[str, str]] = {
    "none": ("no triggers (outbox uninstall)", ""),
    "statement trigger, empty": (
        "AFTER INSERT FOR EACH STATEMENT, empty plpgsql body, no transition table",
        _EMPTY_BODIES
        + """
drop trigger outbox_insert on public.task;
drop trigger outbox_insert on public.task_completion;
create trigger outbox_insert after insert on public.task
    for each statement execute function outbox.capture_task();
create trigger outbox_insert after insert on public.task_completion
    for each statement execute function outbox.capture_annotation();
""",
    ),
    "+ transition table": (
        "the same with REFERENCING NEW TABLE (as installed), empty body",
        _EMPTY_BODIES,
    ),
    "+ one constant row": (
        "the body inserts one constant outbox.change row",
        """
create or replace function outbox.capture_task() returns trigger language plpgsql as $$
begin
    insert into outbox.change (table_name, op, project_id, organization_id, row_ids)
    values ('task', 'INSERT', 1, 1, '{1}');
    return null;
end $$;
create or replace function outbox.capture_annotation() returns trigger language plpgsql as $$
begin
    insert into outbox.change (table_name, op, project_id, organization_id, row_ids)
    values ('task_completion', 'INSERT', 1, 1, '{1}');
    return null;
end $$;
""",
    ),
    "trimmed capture": (
        "capture.sql's INSERT branches without the project join, array_agg ORDER BY or wake()"
        " call (NOTIFY check inlined)",
        """
create or replace function outbox.capture_task() returns trigger language plpgsql as $$
begin
    insert into outbox.change (table_name, op, project_id, row_ids)
    select 'task', 'INSERT', n.project_id, array_agg(n.id)
    from new_rows n where n.project_id is not null group by n.project_id;
    if found and exists (select from outbox.relay where waiting) then
        perform pg_notify('outbox', '');
    end if;
    return null;
end $$;
create or replace function outbox.capture_annotation() returns trigger language plpgsql as $$
begin
    insert into outbox.change (table_name, op, project_id, row_ids, task_ids)
    select 'task_completion', 'INSERT', n.project_id, array_agg(n.id), array_agg(n.task_id)
    from new_rows n group by n.project_id;
    if found and exists (select from outbox.relay where waiting) then
        perform pg_notify('outbox', '');
    end if;
    return null;
end $$;
""",
    ),
    "outbox": ("sql/capture.sql as installed by outbox migrate", ""),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capture_cost", description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=2)
    args = parser.parse_args(argv)
    with harness.server(args.database_url) as srv:
        templates = harness.make_templates(srv)
        databases = {}
        for name, (_, sql_text) in VARIANTS.items():
            database = srv.create_database(templates.installed)
            with srv.connect(database) as conn:
                if name == "none":
                    harness.uninstall(conn)
                elif sql_text:
                    conn.execute(sql_text)
            databases[name] = database
        tps: dict[str, list[float]] = {name: [] for name in VARIANTS}
        saved = os.environ.get("PGOPTIONS")
        os.environ["PGOPTIONS"] = "-c synchronous_commit=off"
        try:
            for _ in range(args.rounds):
                for name, database in databases.items():
                    tps[name].append(harness.pgbench(srv, database, clients=1, seconds=args.seconds))
        finally:
            if saved is None:
                os.environ.pop("PGOPTIONS", None)
            else:
                os.environ["PGOPTIONS"] = saved
    base = 1e6 / max(tps["none"])
    # best of the rounds: the run least disturbed by anything else on the machine
    print(f"{'variant':28} {'µs/tx (best)':>12} {'µs/tx (median)':>15} {'added (best)':>12}")
    for name, (what, _) in VARIANTS.items():
        best = 1e6 / max(tps[name])
        median = 1e6 / statistics.median(tps[name])
        print(f"{name:28} {best:12.0f} {median:15.0f} {best - base:+12.0f}   {what}")


if __name__ == "__main__":
    main()
