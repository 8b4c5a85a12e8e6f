-- Events beyond the first twelve (issue 10): subscriptions matched as of each change's commit,
-- storage syncs grouped into one TASKS_CREATED, the opt-in actions, and deleted rows in delete
-- events as a per-webhook option. Capture itself is in capture.sql (repeatable).

lock table outbox.webhook, outbox.change in access exclusive mode;

-- The webhook's last pause: from paused_at (null: since created_at, for a webhook created
-- inactive) until activated_at. A change captured before created_at, or during the last pause,
-- never reaches the webhook: a backlog the relay routes late must not leak into a subscription
-- that did not exist (or was paused) when it committed.
alter table outbox.webhook
    add column paused_at timestamptz
        constraint webhook_paused_at_finite check (isfinite(paused_at)),
    add column activated_at timestamptz
        constraint webhook_activated_at_finite check (isfinite(activated_at)),
    -- what delete events list: 'ids' as Label Studio ({"id": N}), or 'rows', the deleted rows
    add column delete_payload text not null default 'ids'
        constraint webhook_delete_payload_valid check (delete_payload in ('ids', 'rows'));

create or replace function outbox.webhook_before_update() returns trigger
language plpgsql as $$
begin
    new.updated_at := now();
    if new.secret is distinct from old.secret and old.secret is not null
       and new.previous_secret is not distinct from old.previous_secret then
        new.previous_secret := old.secret;
        new.previous_secret_expires_at := now() + interval '24 hours';
    end if;
    if new.is_active and not old.is_active then
        new.disabled_reason := null;
        new.disabled_at := null;
        new.activated_at := now();
        new.paused_at := coalesce(old.paused_at, old.created_at);
        delete from outbox.webhook_health where webhook_id = new.id;
    end if;
    if old.is_active and not new.is_active then
        new.paused_at := now();
    end if;
    return new;
end
$$;

-- The import storage a change belongs to, as '<storage table>:<storage id>': on the link rows a
-- sync inserts with each task, and on the storage's own update when the sync ends (the marker
-- that closes the sync). Label Studio creates each synced task in a transaction of its own and
-- sends one TASKS_CREATED per sync; the router holds a sync's tasks until its marker.
alter table outbox.change add column storage text;
create index change_storage on outbox.change (storage, id) where storage is not null;

-- The opt-in actions join the registry (sql/0007_actions.sql) as built-in ones (their payloads are
-- built by code); `opt_in` keeps them out of send_for_all_actions and of Label Studio's
-- /api/webhooks/info/ list. The registry refuses built-in rows from anyone else: its guard is
-- lifted for this insert only.
alter table outbox.action add column opt_in boolean not null default false;
alter table outbox.action disable trigger action_guard;
insert into outbox.action (name, title, description, payload_key, organization_only, built_in, opt_in)
values ('TASK_LABELED', 'Task labeled', 'A task''s is_labeled turned true (opt-in)', 'tasks', false, true, true),
       ('PREDICTIONS_CREATED', 'Predictions created', 'Predictions inserted for existing tasks (opt-in)',
        'predictions', false, true, true);
alter table outbox.action enable trigger action_guard;
