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
        -- organization and orders the ids). A statement of one row (the API's) is written without
        -- the grouping, which cost 8 writers of single-row INSERTs a twentieth of their TPS
        -- (PostgreSQL 15, Label Studio's schema: 0.74 -> 0.78 of their TPS without triggers).
        -- The second INSERT is the general case.
        insert into outbox.change (table_name, op, project_id, row_ids)
        select 'task', 'INSERT', n.project_id, array[n.id]
        from new_rows n
        where n.project_id is not null and not exists (select from new_rows offset 1);
        if not found then
            insert into outbox.change (table_name, op, project_id, row_ids)
            select 'task', 'INSERT', n.project_id, array_agg(n.id)
            from new_rows n
            where n.project_id is not null
            group by n.project_id;
        end if;
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
        -- no join, no sort, as for tasks; both aggregates read the rows in the same order; one
        -- row without the grouping, as for tasks (the two forms as one statement, a CTE and
        -- UNION ALL, cost the 8 writers more than the grouping saved: 0.73 against 0.77)
        insert into outbox.change (table_name, op, project_id, row_ids, task_ids)
        select 'task_completion', 'INSERT', r.project_id, array[r.id], array[r.task_id]
        from (
            select n.id, n.task_id,
                   coalesce(n.project_id, (select t.project_id from public.task t where t.id = n.task_id))
                       as project_id
            from new_rows n
        ) r
        where r.project_id is not null and not exists (select from new_rows offset 1);
        if not found then
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
        end if;
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

-- ---------------------------------------------------------------------------------------------
-- Declared tables: one trigger declaration per captured table and operation, no function of its
-- own. capture_rows() records a statement's rows as capture_project() and the others do, read
-- through dynamic SQL from its arguments:
--   TG_ARGV[0]  the project of a row `r`, as an SQL expression over it
--   TG_ARGV[1]  the opt-in action the changes exist for ('' = always captured): while no active
--               webhook lists it, nothing is written (a webhook created later could not receive
--               those changes anyway, docs/decisions.md "Matching")
--   TG_ARGV[2…] columns whose changes mean nothing (UPDATE)
-- The events they make are declared in relay/events.py (DECLARED), their payloads in
-- relay/payloads.py. Dynamic SQL is planned on every call: meant for tables Label Studio writes
-- rarely (label links, predictions), never for task or task_completion.
create or replace function outbox.capture_rows() returns trigger
language plpgsql as $$
declare
    written bigint;
begin
    if tg_argv[1] <> '' and not exists (
        select from outbox.webhook w where w.is_active and tg_argv[1] = any (w.actions)
    ) then
        return null;
    end if;
    if tg_op = 'INSERT' then
        execute format($sql$
            insert into outbox.change (table_name, op, project_id, row_ids)
            select %L, 'INSERT', x.project_id, array_agg(x.id order by x.id)
            from (select r.id, %s as project_id from new_rows r) x
            where x.project_id is not null
            group by x.project_id $sql$, tg_table_name, tg_argv[0]);
    elsif tg_op = 'UPDATE' then
        execute format($sql$
            insert into outbox.change (table_name, op, project_id, row_ids)
            select %L, 'UPDATE', x.project_id, array_agg(x.id order by x.id)
            from (select r.id, %s as project_id
                  from new_rows r join old_rows o on o.id = r.id
                  where to_jsonb(r) - $1 is distinct from to_jsonb(o) - $1) x
            where x.project_id is not null
            group by x.project_id $sql$, tg_table_name, tg_argv[0])
        using tg_argv[2:];
    else
        execute format($sql$
            insert into outbox.change (table_name, op, project_id, organization_id, row_ids, old_rows)
            select %L, 'DELETE', x.project_id, p.organization_id, array_agg(x.id order by x.id),
                   jsonb_agg(x.row order by x.id)
            from (select r.id, to_jsonb(r) as row, %s as project_id from old_rows r) x
            left join public.project p on p.id = x.project_id
            where x.project_id is not null
            group by x.project_id, p.organization_id $sql$, tg_table_name, tg_argv[0]);
    end if;
    get diagnostics written = row_count;
    if written > 0 then
        perform outbox.wake();
    end if;
    return null;
end
$$;

-- The row-level counterpart, for derived events on hot tables: the trigger's `UPDATE OF … WHEN`
-- clause decides, so an update that is no such event calls no function at all (PostgreSQL refuses
-- transition tables on `UPDATE OF` triggers). The table has a `project_id` column (read as such:
-- to_jsonb of a whole task would cost as much as its data). TG_ARGV[0]: the opt-in action, as
-- TG_ARGV[1] of capture_rows.
create or replace function outbox.capture_row() returns trigger
language plpgsql as $$
begin
    if tg_argv[0] <> '' and not exists (
        select from outbox.webhook w where w.is_active and tg_argv[0] = any (w.actions)
    ) then
        return null;
    end if;
    insert into outbox.change (table_name, op, project_id, row_ids)
    values (tg_table_name, tg_op, new.project_id, array[new.id]);
    perform outbox.wake();
    return null;
end
$$;

-- labels_manager_labellink: LABEL_LINK_CREATED / _UPDATED / _DELETED.
create trigger outbox_insert after insert on public.labels_manager_labellink
    referencing new table as new_rows
    for each statement execute function outbox.capture_rows('r.project_id', '');
create trigger outbox_update after update on public.labels_manager_labellink
    referencing new table as new_rows old table as old_rows
    for each statement execute function outbox.capture_rows('r.project_id', '');
create trigger outbox_delete after delete on public.labels_manager_labellink
    referencing old table as old_rows
    for each statement execute function outbox.capture_rows('r.project_id', '');

-- prediction: PREDICTIONS_CREATED (opt-in).
create trigger outbox_insert after insert on public.prediction
    referencing new table as new_rows
    for each statement execute function outbox.capture_rows(
        'coalesce(r.project_id, (select t.project_id from public.task t where t.id = r.task_id))',
        'PREDICTIONS_CREATED');

-- task: TASK_LABELED (opt-in). Label Studio's counter updates touch is_labeled often; only the
-- ones that turn it true call the function.
create trigger outbox_labeled after update of is_labeled on public.task
    for each row when (new.is_labeled and not old.is_labeled and new.project_id is not null)
    execute function outbox.capture_row('TASK_LABELED');

-- Import storages. Label Studio creates each synced task in a transaction of its own, with a row
-- in the storage's link table, and sends one TASKS_CREATED per sync once it ends; the end is the
-- storage row's update of last_sync (or its status leaving in_progress). Both are recorded with
-- the storage ('<storage table>:<id>'), so the router holds a sync's tasks until its end.
-- TG_ARGV[0]: the storage table.
create or replace function outbox.capture_storage_link() returns trigger
language plpgsql as $$
begin
    insert into outbox.change (table_name, op, row_ids, storage)
    select tg_table_name, 'INSERT', array_agg(n.task_id), tg_argv[0] || ':' || n.storage_id
    from new_rows n
    group by n.storage_id;
    return null;
end
$$;

-- TG_ARGV[0]: the storage's key column (its mixin's id, `id` for S3).
create or replace function outbox.capture_storage_synced() returns trigger
language plpgsql as $$
begin
    insert into outbox.change (table_name, op, project_id, row_ids, storage)
    values (tg_table_name, 'UPDATE', new.project_id, '{}',
            tg_table_name || ':' || (to_jsonb(new) ->> tg_argv[0]));
    perform outbox.wake();
    return null;
end
$$;

create trigger outbox_insert after insert on public.io_storages_localfilesimportstoragelink
    referencing new table as new_rows
    for each statement execute function outbox.capture_storage_link('io_storages_localfilesimportstorage');
create trigger outbox_synced after update of last_sync, status on public.io_storages_localfilesimportstorage
    for each row when (new.last_sync is distinct from old.last_sync
                       or (old.status = 'in_progress' and new.status <> 'in_progress'))
    execute function outbox.capture_storage_synced('localfilesmixin_ptr_id');
create trigger outbox_insert after insert on public.io_storages_s3importstoragelink
    referencing new table as new_rows
    for each statement execute function outbox.capture_storage_link('io_storages_s3importstorage');
create trigger outbox_synced after update of last_sync, status on public.io_storages_s3importstorage
    for each row when (new.last_sync is distinct from old.last_sync
                       or (old.status = 'in_progress' and new.status <> 'in_progress'))
    execute function outbox.capture_storage_synced('id');
create trigger outbox_insert after insert on public.io_storages_gcsimportstoragelink
    referencing new table as new_rows
    for each statement execute function outbox.capture_storage_link('io_storages_gcsimportstorage');
create trigger outbox_synced after update of last_sync, status on public.io_storages_gcsimportstorage
    for each row when (new.last_sync is distinct from old.last_sync
                       or (old.status = 'in_progress' and new.status <> 'in_progress'))
    execute function outbox.capture_storage_synced('gcsstoragemixin_ptr_id');
create trigger outbox_insert after insert on public.io_storages_azureblobimportstoragelink
    referencing new table as new_rows
    for each statement execute function outbox.capture_storage_link('io_storages_azureblobimportstorage');
create trigger outbox_synced after update of last_sync, status on public.io_storages_azureblobimportstorage
    for each row when (new.last_sync is distinct from old.last_sync
                       or (old.status = 'in_progress' and new.status <> 'in_progress'))
    execute function outbox.capture_storage_synced('azureblobstoragemixin_ptr_id');
create trigger outbox_insert after insert on public.io_storages_redisimportstoragelink
    referencing new table as new_rows
    for each statement execute function outbox.capture_storage_link('io_storages_redisimportstorage');
create trigger outbox_synced after update of last_sync, status on public.io_storages_redisimportstorage
    for each row when (new.last_sync is distinct from old.last_sync
                       or (old.status = 'in_progress' and new.status <> 'in_progress'))
    execute function outbox.capture_storage_synced('redisstoragemixin_ptr_id');
