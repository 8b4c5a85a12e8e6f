-- Capture: everything outbox attaches to Label Studio's own tables. This file is repeatable:
-- `outbox migrate` re-applies it (after uninstall.sql, in one transaction) whenever it changes or
-- has been uninstalled, and `outbox uninstall` removes all of it.
--
-- Triggers are AFTER ... FOR EACH STATEMENT with transition tables, so a bulk statement writes one
-- outbox.change row per (statement, project), holding ids, never payloads. They never modify the
-- application's rows and raise nothing of their own.

-- project: INSERT / UPDATE of user-editable columns / DELETE. TG_ARGV lists the columns whose
-- changes mean nothing to a webhook receiver (the one place that list lives).
create or replace function outbox.capture_project() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        insert into outbox.change (table_name, op, project_id, organization_id, row_ids)
        select 'project', 'INSERT', n.id, n.organization_id, array[n.id]
        from new_rows n;
    elsif tg_op = 'UPDATE' then
        insert into outbox.change (table_name, op, project_id, organization_id, row_ids)
        select 'project', 'UPDATE', n.id, n.organization_id, array[n.id]
        from new_rows n
        join old_rows o on o.id = n.id
        where to_jsonb(n) - tg_argv is distinct from to_jsonb(o) - tg_argv;
    else
        insert into outbox.change (table_name, op, project_id, organization_id, row_ids, old_rows)
        select 'project', 'DELETE', o.id, o.organization_id, array[o.id], jsonb_build_array(to_jsonb(o))
        from old_rows o;
    end if;
    if found then
        perform outbox.wake();
    end if;
    return null;
end
$$;

-- task: INSERT and DELETE. Task updates are no webhook in Label Studio; the one update that matters
-- (the Data Manager detaching tasks before deleting them) is recorded by capture_task_detach.
create or replace function outbox.capture_task() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        -- The hot path of every import and API call: no join, no sort (the relay looks up the
        -- organization and orders the ids).
        insert into outbox.change (table_name, op, project_id, row_ids)
        select 'task', 'INSERT', n.project_id, array_agg(n.id)
        from new_rows n
        where n.project_id is not null
        group by n.project_id;
    else
        insert into outbox.change (table_name, op, project_id, organization_id, row_ids, old_rows,
                                   detach_xid)
        select 'task', 'DELETE', r.project_id, coalesce(p.organization_id, r.organization_id),
               array_agg(r.id order by r.id), jsonb_agg(r.row order by r.id), r.detach_xid
        from (
            select o.id, to_jsonb(o) as row,
                   coalesce(o.project_id, d.project_id) as project_id, d.organization_id,
                   d.detach_xid
            from old_rows o
            left join outbox.detached_task d on o.project_id is null and d.task_id = o.id
        ) r
        left join public.project p on p.id = r.project_id
        where r.project_id is not null
        group by r.project_id, p.organization_id, r.organization_id, r.detach_xid;
    end if;
    if found then
        perform outbox.wake();
    end if;
    if tg_op = 'DELETE' then
        delete from outbox.detached_task d using old_rows o where o.project_id is null and d.task_id = o.id;
    end if;
    return null;
end
$$;

-- Row-level on purpose: PostgreSQL does not allow transition tables on `UPDATE OF column` triggers,
-- and a statement trigger on every task UPDATE would tax Label Studio's frequent counter updates.
-- With `UPDATE OF project_id ... WHEN`, only statements that detach a task call any function.
create or replace function outbox.capture_task_detach() returns trigger
language plpgsql as $$
begin
    insert into outbox.detached_task (task_id, project_id, organization_id)
    values (new.id, old.project_id, (select organization_id from public.project where id = old.project_id))
    on conflict (task_id) do update
        set project_id = excluded.project_id,
            organization_id = excluded.organization_id,
            detach_xid = excluded.detach_xid,
            detached_at = excluded.detached_at;
    return null;
end
$$;

-- task_completion (annotations): INSERT / UPDATE of meaningful columns / DELETE, one change row per
-- project with the task of each annotation alongside (to tell imports and cascades apart).
create or replace function outbox.capture_annotation() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        -- no join, no sort, as for tasks; both aggregates read the rows in the same order
        insert into outbox.change (table_name, op, project_id, row_ids, task_ids)
        select 'task_completion', 'INSERT', r.project_id, array_agg(r.id), array_agg(r.task_id)
        from (
            select n.id, n.task_id,
                   coalesce(n.project_id, (select t.project_id from public.task t where t.id = n.task_id))
                       as project_id
            from new_rows n
        ) r
        where r.project_id is not null
        group by r.project_id;
    elsif tg_op = 'UPDATE' then
        insert into outbox.change (table_name, op, project_id, organization_id, row_ids, task_ids)
        select 'task_completion', 'UPDATE', r.project_id, p.organization_id,
               array_agg(r.id order by r.id), array_agg(r.task_id order by r.id)
        from (
            select n.id, n.task_id,
                   coalesce(n.project_id, (select t.project_id from public.task t where t.id = n.task_id))
                       as project_id
            from new_rows n
            join old_rows o on o.id = n.id
            where to_jsonb(n) - tg_argv is distinct from to_jsonb(o) - tg_argv
        ) r
        left join public.project p on p.id = r.project_id
        where r.project_id is not null
        group by r.project_id, p.organization_id;
    else
        insert into outbox.change (table_name, op, project_id, organization_id, row_ids, task_ids, old_rows)
        select 'task_completion', 'DELETE', r.project_id, coalesce(p.organization_id, r.organization_id),
               array_agg(r.id order by r.id), array_agg(r.task_id order by r.id),
               jsonb_agg(r.row order by r.id)
        from (
            select o.id, o.task_id, to_jsonb(o) as row,
                   coalesce(o.project_id, t.project_id, d.project_id) as project_id, d.organization_id
            from old_rows o
            left join public.task t on o.project_id is null and t.id = o.task_id
            left join outbox.detached_task d on o.project_id is null and d.task_id = o.task_id
        ) r
        left join public.project p on p.id = r.project_id
        where r.project_id is not null
        group by r.project_id, p.organization_id, r.organization_id;
    end if;
    if found then
        perform outbox.wake();
    end if;
    return null;
end
$$;

create trigger outbox_insert after insert on public.project
    referencing new table as new_rows
    for each statement execute function outbox.capture_project();
-- Ignored project columns: timestamps, the generated search vector, and what Label Studio derives
-- from the label config or recomputes on its own.
create trigger outbox_update after update on public.project
    referencing new table as new_rows old table as old_rows
    for each statement execute function outbox.capture_project(
        'updated_at', 'search_vector', 'model_version', 'result_count', 'label_config_hash',
        'parsed_label_config', 'data_types');
create trigger outbox_delete after delete on public.project
    referencing old table as old_rows
    for each statement execute function outbox.capture_project();

create trigger outbox_insert after insert on public.task
    referencing new table as new_rows
    for each statement execute function outbox.capture_task();
create trigger outbox_delete after delete on public.task
    referencing old table as old_rows
    for each statement execute function outbox.capture_task();
create trigger outbox_detach after update of project_id on public.task
    for each row when (old.project_id is not null and new.project_id is null)
    execute function outbox.capture_task_detach();

create trigger outbox_insert after insert on public.task_completion
    referencing new table as new_rows
    for each statement execute function outbox.capture_annotation();
-- Ignored annotation columns: the timestamp, the count Label Studio derives from `result`, and
-- updated_by_id, which an edit by another user sets in a transaction of its own before the real
-- UPDATE (one PATCH would otherwise be two events).
create trigger outbox_update after update on public.task_completion
    referencing new table as new_rows old table as old_rows
    for each statement execute function outbox.capture_annotation('updated_at', 'result_count', 'updated_by_id');
create trigger outbox_delete after delete on public.task_completion
    referencing old table as old_rows
    for each statement execute function outbox.capture_annotation();
