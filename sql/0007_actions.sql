-- The action registry and custom events (docs/design.md §10, docs/custom-events.md).
--
-- Label Studio's guide has developers register an action in WebhookAction.ACTIONS and call
-- emit_webhooks() from their code, which POSTs inside the request and loses the event when the
-- request's transaction rolls back afterwards (or sends one for a change that never commits).
-- Here the registry is a table, and outbox.emit() records the event in the caller's transaction:
-- it is delivered if and only if that transaction commits.
--
-- An emitted event is matched when it is routed, after commit, like a captured change: the emit
-- writes the event, its payload (outbox.emitted) and one marker row per transaction into
-- outbox.change, which the relay already reads; the marker wakes the relay and is routed with the
-- transaction's other changes, so the captured-change path does nothing more than before.

-- ---------------------------------------------------------------------------------------------
-- the registry

-- Why a registry row is refused, as the webhook checks of 0001 do: one message that says what to
-- change. Names follow Label Studio's (upper case, digits, underscores); the payload key is the
-- body's key for the payload, so it cannot be "action", nor "project" on events that have one
-- (Label Studio's PROJECT_UPDATED is its own project).
create function outbox.check_action(name text, title text, payload_key text, organization_only boolean,
                                    built_in boolean)
returns boolean
language plpgsql immutable as $$
begin
    if name !~ '^[A-Z][A-Z0-9_]{0,99}$' then
        raise exception 'action name "%" is invalid: use upper-case letters, digits and "_", starting with a letter (at most 100)',
            left(name, 100) using errcode = 'check_violation', hint = 'e.g. MODEL_TRAINED';
    end if;
    if name = 'PING' then
        raise exception 'action name "PING" is reserved for test deliveries'
            using errcode = 'check_violation';
    end if;
    if length(title) not between 1 and 200 then
        raise exception 'action % needs a title of 1 to 200 characters (what GET /api/webhooks/info/ shows as its name)', name
            using errcode = 'check_violation';
    end if;
    if payload_key !~ '^[a-z][a-z0-9_]{0,63}$' then
        raise exception 'action % payload key "%" is invalid: use lower-case letters, digits and "_", starting with a letter',
            name, left(payload_key, 64) using errcode = 'check_violation', hint = 'e.g. model';
    end if;
    if payload_key = 'action' or (payload_key = 'project' and not organization_only and not built_in) then
        raise exception 'action % payload key "%" is taken by the body itself', name, payload_key
            using errcode = 'check_violation',
                  hint = 'every body has "action", and "project" when the event has a project';
    end if;
    return true;
end
$$;

create table outbox.action (
    name              text primary key,
    -- what Label Studio's info lists as the action's "name"
    title             text not null,
    description       text not null default '' constraint action_description_length check (length(description) <= 1000),
    -- the body's key for the payload: {"action": A, <payload_key>: ..., "project": ...}
    payload_key       text not null,
    -- sent only to organization-level webhooks, and never with a project
    organization_only boolean not null default false,
    -- shipped with outbox (Label Studio's actions): cannot be changed or removed
    built_in          boolean not null default false,
    -- registration order, the order listings show
    seq               integer generated always as identity,
    created_at        timestamptz not null default now(),
    constraint action_valid check (outbox.check_action(name, title, payload_key, organization_only, built_in))
);

-- Label Studio 1.23.2's actions, as relay/actions.py's CATALOG holds them (a test keeps them equal).
insert into outbox.action (name, title, description, payload_key, organization_only, built_in)
values ('PROJECT_CREATED', 'Project created', '', 'project', true, true),
       ('PROJECT_UPDATED', 'Project updated', '', 'project', false, true),
       ('PROJECT_DELETED', 'Project deleted', '', 'project', true, true),
       ('TASKS_CREATED', 'Task created', '', 'tasks', false, true),
       ('TASKS_DELETED', 'Task deleted', '', 'tasks', false, true),
       ('ANNOTATION_CREATED', 'Annotation created', '', 'annotation', false, true),
       ('ANNOTATIONS_CREATED', 'Annotations created', '', 'annotation', false, true),
       ('ANNOTATION_UPDATED', 'Annotation updated', '', 'annotation', false, true),
       ('ANNOTATIONS_DELETED', 'Annotation deleted', '', 'annotations', false, true),
       ('LABEL_LINK_CREATED', 'Label link created', '', 'label_link', false, true),
       ('LABEL_LINK_UPDATED', 'Label link updated', '', 'label_link', false, true),
       ('LABEL_LINK_DELETED', 'Label link deleted', '', 'label_link', false, true);

-- Built-in actions are outbox's own: their payloads are built by code. A custom action that some
-- webhook lists cannot be removed or renamed behind its back (the webhook would list an action
-- that no longer exists, and the database would refuse every later edit of it); the refusal names
-- the webhooks. check_webhook_actions locks the actions a webhook lists, so a webhook being added
-- concurrently is waited for and then seen here.
create function outbox.action_guard() returns trigger
language plpgsql as $$
declare
    users text;
begin
    if tg_op = 'INSERT' then
        if new.built_in then
            raise exception 'action %: built-in actions come with outbox; register custom ones with built_in false', new.name
                using errcode = 'check_violation';
        end if;
        return new;
    end if;
    if old.built_in then
        raise exception 'action % is built in: it cannot be changed or removed', old.name
            using errcode = 'check_violation';
    end if;
    if tg_op = 'UPDATE' and new.built_in then
        raise exception 'action %: a custom action cannot become built in', old.name
            using errcode = 'check_violation';
    end if;
    if tg_op = 'DELETE' or new.name <> old.name then
        select string_agg(w.id::text, ', ' order by w.id) into users
        from outbox.webhook w where old.name = any (w.actions);
        if users is not null then
            raise exception 'action % is in use by webhook(s) %: remove it from their actions first', old.name, users
                using errcode = 'check_violation',
                      hint = 'update outbox.webhook set actions = array_remove(actions, ''' || old.name || ''') where ...';
        end if;
    end if;
    if tg_op = 'DELETE' then
        return old;
    end if;
    return new;
end
$$;

create trigger action_guard before insert or update or delete on outbox.action
    for each row execute function outbox.action_guard();

create function outbox.action_no_truncate() returns trigger
language plpgsql as $$
begin
    raise exception 'outbox.action cannot be truncated: built-in actions cannot be removed'
        using errcode = 'check_violation';
end
$$;

create trigger action_no_truncate before truncate on outbox.action
    for each statement execute function outbox.action_no_truncate();

-- The webhook checks of 0001 now read the registry. Not immutable any more (they read a table):
-- a CHECK constraint runs them whenever a webhook row is written, which is all that is needed,
-- since the registry's guard keeps a listed action from going away.
create or replace function outbox.known_actions() returns text[]
language sql stable parallel safe as $$
    select coalesce(array_agg(a.name order by a.seq), '{}') from outbox.action a
$$;

create or replace function outbox.organization_only_actions() returns text[]
language sql stable parallel safe as $$
    select coalesce(array_agg(a.name order by a.seq), '{}') from outbox.action a where a.organization_only
$$;

create or replace function outbox.check_webhook_actions(actions text[], project_id integer) returns boolean
language plpgsql volatile as $$
declare
    unknown text;
    org_only text;
begin
    if cardinality(actions) = 0 then
        return true;
    end if;
    -- a removal of one of these actions running now waits for this transaction, then sees it
    perform 1 from outbox.action a where a.name = any (actions) for key share;
    select string_agg(coalesce(x, 'NULL'), ', ') into unknown
    from unnest(actions) x
    where x is null or not exists (select 1 from outbox.action a where a.name = x);
    if unknown is not null then
        raise exception 'webhook actions: unknown action(s) %', unknown
            using errcode = 'check_violation',
                  hint = 'known actions: ' || array_to_string(outbox.known_actions(), ', ');
    end if;
    if project_id is not null then
        select string_agg(x, ', ') into org_only
        from unnest(actions) x join outbox.action a on a.name = x
        where a.organization_only;
        if org_only is not null then
            raise exception 'webhook actions: % can only be sent to organization-level webhooks (project_id null)',
                org_only using errcode = 'check_violation';
        end if;
    end if;
    return true;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- emitted events

-- The payload of an emitted event, until the event is pruned. The key is copied from the registry
-- when the event is emitted, so that removing the action later cannot break its deliveries.
create table outbox.emitted (
    event_id    bigint primary key references outbox.event (id) on delete cascade,
    -- the emitting transaction: its marker in outbox.change leads the relay here
    xid         xid8 not null default pg_current_xact_id(),
    payload_key text not null,
    payload     jsonb not null,
    -- octet_length(payload::text), measured by the emitting transaction, so that routing never
    -- serialises a huge payload to learn that it is too large to send
    size        bigint not null,
    -- outbox.run_webhook: this webhook only, whatever its actions; null: every matching webhook
    webhook_id  integer references outbox.webhook (id) on delete cascade
);
create index emitted_xid on outbox.emitted (xid);

-- Shared by emit and run_webhook: checks, then the event, its payload and the transaction's marker.
create function outbox.record_emitted(action text, organization_id integer, project_id integer,
                                      payload jsonb, webhook_id integer)
returns bigint
language plpgsql volatile as $$
declare
    registered outbox.action%rowtype;
    project_organization integer;
    event_id bigint;
    xid text := pg_current_xact_id()::text;
begin
    select * into registered from outbox.action a where a.name = record_emitted.action;
    if not found then
        raise exception 'outbox.emit: unknown action "%"', left(coalesce(action, 'NULL'), 100)
            using errcode = 'invalid_parameter_value',
                  hint = 'register it first: insert into outbox.action (name, title, payload_key) values (...)';
    end if;
    if registered.built_in then
        raise exception 'outbox.emit: % is a built-in action, whose body is built from the rows it is about', action
            using errcode = 'invalid_parameter_value',
                  hint = 'outbox.emit_for(action, ids, project_id) sends it for existing rows';
    end if;
    if organization_id is null then
        raise exception 'outbox.emit: organization_id is required (the organization whose webhooks get %)', action
            using errcode = 'invalid_parameter_value';
    end if;
    if registered.organization_only and project_id is not null then
        raise exception 'outbox.emit: % is an organization-only action: emit it with project_id null', action
            using errcode = 'invalid_parameter_value';
    end if;
    if payload is null or jsonb_typeof(payload) not in ('object', 'array') then
        raise exception 'outbox.emit: the payload of % must be a JSON object or array, not %',
            action, coalesce(jsonb_typeof(payload), 'NULL')
            using errcode = 'invalid_parameter_value';
    end if;
    if not exists (select from public.organization o where o.id = record_emitted.organization_id) then
        raise exception 'outbox.emit: organization % does not exist', organization_id
            using errcode = 'invalid_parameter_value';
    end if;
    if project_id is not null then
        select p.organization_id into project_organization from public.project p where p.id = record_emitted.project_id;
        if not found then
            raise exception 'outbox.emit: project % does not exist', project_id
                using errcode = 'invalid_parameter_value';
        end if;
        if project_organization <> organization_id then
            raise exception 'outbox.emit: project % belongs to organization %, not %',
                project_id, project_organization, organization_id
                using errcode = 'invalid_parameter_value';
        end if;
    end if;
    insert into outbox.event (xid, action, organization_id, project_id, row_ids, chunk_size)
    values (pg_current_xact_id(), action, organization_id, project_id, '{}', 1)
    returning id into event_id;
    insert into outbox.emitted (event_id, payload_key, payload, size, webhook_id)
    values (event_id, registered.payload_key, payload, octet_length(payload::text), webhook_id);
    -- One marker per transaction. The setting is transaction-local and undone with a savepoint
    -- rolled back, as the marker is.
    if current_setting('outbox.emitted', true) is distinct from xid then
        insert into outbox.change (table_name, op, organization_id, row_ids)
        values ('emitted', 'INSERT', organization_id, '{}');
        perform set_config('outbox.emitted', xid, true);
        perform outbox.wake();
    end if;
    return event_id;
end
$$;

-- For application code: record an event of a registered action in the caller's transaction.
-- Sent, after commit, to every matching webhook as {"action": A, <payload_key>: payload,
-- "project": <the project object, built when sent>} (no "project" when project_id is null).
create function outbox.emit(action text, organization_id integer, project_id integer, payload jsonb)
returns bigint
language sql volatile as $$
    select outbox.record_emitted(action, organization_id, project_id, payload, null)
$$;

-- Label Studio's run_webhook: one event for one webhook, whatever actions it lists, through the
-- normal pipeline (signed, retried, logged). Its project is the webhook's unless one is given.
create function outbox.run_webhook(webhook_id integer, action text, payload jsonb, project_id integer default null)
returns bigint
language plpgsql volatile as $$
declare
    target outbox.webhook%rowtype;
begin
    select * into target from outbox.webhook w where w.id = run_webhook.webhook_id;
    if not found then
        raise exception 'outbox.run_webhook: webhook % does not exist', webhook_id
            using errcode = 'invalid_parameter_value';
    end if;
    if not target.is_active then
        raise exception 'outbox.run_webhook: webhook % is paused or disabled: resume it first', webhook_id
            using errcode = 'invalid_parameter_value';
    end if;
    if target.project_id is not null and project_id is not null and project_id <> target.project_id then
        raise exception 'outbox.run_webhook: webhook % is for project %, not %', webhook_id, target.project_id, project_id
            using errcode = 'invalid_parameter_value';
    end if;
    return outbox.record_emitted(action, target.organization_id, coalesce(project_id, target.project_id),
                                 payload, webhook_id);
end
$$;

-- Label Studio's get_active_webhooks: the webhooks an event of this action would go to now, by
-- the rules of relay/routing.py (a test keeps the two equal). No secrets, no headers.
create function outbox.active_webhooks(organization_id integer, action text, project_id integer default null)
returns table (webhook_id integer, webhook_project_id integer, url text, send_payload boolean)
language plpgsql stable as $$
declare
    registered outbox.action%rowtype;
begin
    select * into registered from outbox.action a where a.name = active_webhooks.action;
    if not found then
        raise exception 'outbox.active_webhooks: unknown action "%"', left(coalesce(action, 'NULL'), 100)
            using errcode = 'invalid_parameter_value';
    end if;
    return query
        select w.id, w.project_id, w.url, w.send_payload
        from outbox.webhook w
        where w.is_active and w.organization_id = active_webhooks.organization_id
          and (w.project_id is null
               or (w.project_id = active_webhooks.project_id and not registered.organization_only))
          and (w.send_for_all_actions or active_webhooks.action = any (w.actions))
        order by w.id;
end
$$;

-- Label Studio's emit_webhooks_for_instances: a built-in action for rows that exist, sent as if
-- the caller's transaction had made the change. It writes the change a capture trigger would
-- have written, so the relay groups, sizes, chunks, matches and builds it exactly like one (and
-- together with the transaction's other changes: net effect, imports and cascades as captured).
-- Returns how many rows the change holds.
create function outbox.emit_for(action text, ids integer[], project_id integer)
returns integer
language plpgsql volatile as $$
declare
    organization integer;
    missing text;
    task_ids integer[];
    table_name text;
    op text;
begin
    if not exists (select from outbox.action a where a.name = emit_for.action) then
        raise exception 'outbox.emit_for: unknown action "%"', left(coalesce(action, 'NULL'), 100)
            using errcode = 'invalid_parameter_value';
    end if;
    if project_id is null then
        raise exception 'outbox.emit_for: project_id is required' using errcode = 'invalid_parameter_value';
    end if;
    select p.organization_id into organization from public.project p where p.id = emit_for.project_id;
    if not found then
        raise exception 'outbox.emit_for: project % does not exist', project_id
            using errcode = 'invalid_parameter_value';
    end if;
    ids := coalesce(ids, '{}');
    if action in ('PROJECT_CREATED', 'PROJECT_UPDATED') then
        ids := array[project_id];
    elsif cardinality(ids) = 0 then
        raise exception 'outbox.emit_for: % needs at least one id', action using errcode = 'invalid_parameter_value';
    end if;
    -- deletes are not for rows that exist: they are captured when they happen
    case action
        when 'PROJECT_CREATED' then table_name := 'project'; op := 'INSERT';
        when 'PROJECT_UPDATED' then table_name := 'project'; op := 'UPDATE';
        when 'TASKS_CREATED' then table_name := 'task'; op := 'INSERT';
        when 'ANNOTATION_CREATED', 'ANNOTATIONS_CREATED' then table_name := 'task_completion'; op := 'INSERT';
        when 'ANNOTATION_UPDATED' then table_name := 'task_completion'; op := 'UPDATE';
        else
            raise exception 'outbox.emit_for: % is not sent for existing rows', action
                using errcode = 'invalid_parameter_value',
                      hint = 'emit_for takes PROJECT_CREATED, PROJECT_UPDATED, TASKS_CREATED, ANNOTATION_CREATED, '
                             'ANNOTATIONS_CREATED, ANNOTATION_UPDATED; custom actions carry their own payload: '
                             'outbox.emit(action, organization_id, project_id, payload)';
    end case;
    if action = 'ANNOTATION_CREATED' and cardinality(ids) <> 1 then
        raise exception 'outbox.emit_for: ANNOTATION_CREATED is for one annotation; several are ANNOTATIONS_CREATED'
            using errcode = 'invalid_parameter_value';
    end if;
    if action = 'ANNOTATIONS_CREATED' and cardinality(ids) < 2 then
        raise exception 'outbox.emit_for: ANNOTATIONS_CREATED is for several annotations; one is ANNOTATION_CREATED'
            using errcode = 'invalid_parameter_value';
    end if;
    -- the rows must exist, in that project
    if table_name = 'task' then
        select string_agg(i::text, ', ') into missing
        from (select i from unnest(ids) i
              where not exists (select from public.task t where t.id = i and t.project_id = emit_for.project_id)
              limit 10) m;
    elsif table_name = 'task_completion' then
        select string_agg(i::text, ', ') into missing
        from (select i from unnest(ids) i
              where not exists (select from public.task_completion a join public.task t on t.id = a.task_id
                                where a.id = i and t.project_id = emit_for.project_id)
              limit 10) m;
        select array_agg(a.task_id order by u.n) into task_ids
        from unnest(ids) with ordinality u(id, n)
        left join public.task_completion a on a.id = u.id;
    end if;
    if missing is not null then
        raise exception 'outbox.emit_for: no row of project % has id(s) % (first 10 shown)', project_id, missing
            using errcode = 'invalid_parameter_value';
    end if;
    insert into outbox.change (table_name, op, project_id, organization_id, row_ids, task_ids)
    values (table_name, op, project_id,
            -- as the triggers: inserts leave the organization to the relay, the rest record it
            case when op = 'INSERT' then null else organization end,
            ids, task_ids);
    perform outbox.wake();
    return cardinality(ids);
end
$$;
