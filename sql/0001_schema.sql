-- outbox schema: the capture queue, subscriptions, events, deliveries and their attempt log.
-- Applied by `outbox migrate` (or by psql from `outbox migrate --print`). Everything lives in schema
-- `outbox`; nothing here touches Label Studio's tables (see capture.sql for that).

create schema if not exists outbox;

-- What `outbox migrate` applied, with the checksum of each file.
create table outbox.schema_migrations (
    name       text primary key,
    kind       text not null check (kind in ('versioned', 'repeatable')),
    checksum   text not null,
    applied_at timestamptz not null default now()
);

-- One row per (statement, project) on a watched table, written by the capture triggers in the
-- application's own transaction. Ids only (and old rows for deletes): payloads are built later by
-- the relay, because building jsonb for every inserted row made bulk imports 4-5x slower.
-- Rows are deleted as soon as a relay has turned them into events.
create table outbox.change (
    id              bigint generated always as identity primary key,
    xid             xid8 not null default pg_current_xact_id(),
    table_name      text not null,
    op              text not null check (op in ('INSERT', 'UPDATE', 'DELETE')),
    project_id      integer,
    -- null for inserts: the relay reads it from the project
    organization_id integer,
    row_ids         integer[] not null,
    -- task_completion only: the task of each row, parallel to row_ids
    task_ids        integer[],
    -- DELETE only: the rows as they were
    old_rows        jsonb,
    -- task DELETE of tasks the Data Manager detached first: the detaching transaction, which ties
    -- together the deletes Label Studio spreads over several transactions (500 tasks each)
    detach_xid      xid8,
    captured_at     timestamptz not null default clock_timestamp()
);
create index change_detach_xid on outbox.change (detach_xid) where detach_xid is not null;

-- Label Studio's Data Manager deletes tasks in two transactions: first `project_id = NULL`, then the
-- DELETE. The first records here which project each task left, so the delete can still be routed.
create table outbox.detached_task (
    task_id         integer primary key,
    project_id      integer not null,
    organization_id integer,
    detach_xid      xid8 not null default pg_current_xact_id(),
    detached_at     timestamptz not null default now()
);
create index detached_task_xid on outbox.detached_task (detach_xid);

-- Relays announce themselves here. `waiting` is the only thing the capture triggers read: they
-- NOTIFY only while some relay is idle and listening (NOTIFY takes a cluster-wide lock at commit).
create table outbox.relay (
    id           uuid primary key,
    hostname     text not null,
    pid          integer not null,
    version      text not null,
    started_at   timestamptz not null default now(),
    heartbeat_at timestamptz not null default now(),
    waiting      boolean not null default false
);

-- NOTIFY is only a wake-up hint, sent while some relay is idle and listening. Every notifying
-- transaction takes a cluster-wide lock at commit (measured: 8 writers fell from ~12,500 to ~3,800
-- TPS), so a busy relay polls instead. The payload is constant, so PostgreSQL folds all of a
-- transaction's notifications into one.
create function outbox.wake() returns void
language sql as $$
    select pg_notify('outbox', '')
    from outbox.relay
    where waiting and heartbeat_at > now() - interval '1 minute'
    limit 1
$$;

-- The actions a webhook may subscribe to (Label Studio 1.23.2's list). Kept as SQL functions so the
-- constraints below can use them; relay/actions.py holds the same catalog for Python.
create function outbox.known_actions() returns text[]
language sql immutable parallel safe as $$
    select array['PROJECT_CREATED', 'PROJECT_UPDATED', 'PROJECT_DELETED',
                 'TASKS_CREATED', 'TASKS_DELETED',
                 'ANNOTATION_CREATED', 'ANNOTATIONS_CREATED', 'ANNOTATION_UPDATED',
                 'ANNOTATIONS_DELETED',
                 'LABEL_LINK_CREATED', 'LABEL_LINK_UPDATED', 'LABEL_LINK_DELETED']
$$;

create function outbox.organization_only_actions() returns text[]
language sql immutable parallel safe as $$
    select array['PROJECT_CREATED', 'PROJECT_DELETED']
$$;

-- Validation for webhook rows inserted with plain SQL. Each raises a message that says what is wrong
-- and how to fix it, never echoing a value that could be a secret (header values, URL credentials).
create function outbox.check_webhook_url(url text) returns boolean
language plpgsql immutable as $$
begin
    if url !~* '^https?://[^/?#\s@]*@?[^/?#\s]+' then
        raise exception 'webhook url must be an absolute http:// or https:// URL'
            using errcode = 'check_violation', hint = 'e.g. https://example.com/hooks/label-studio';
    end if;
    if length(url) > 2048 then
        raise exception 'webhook url is longer than 2048 characters'
            using errcode = 'check_violation';
    end if;
    if url ~ '[\s\x00-\x1f\x7f]' then
        raise exception 'webhook url must not contain whitespace or control characters'
            using errcode = 'check_violation';
    end if;
    return true;
end
$$;

create function outbox.check_webhook_headers(headers jsonb) returns boolean
language plpgsql immutable as $$
declare
    name text;
    value jsonb;
    reserved constant text[] := array['content-type', 'content-length', 'host', 'transfer-encoding',
                                      'connection', 'webhook-id', 'webhook-timestamp',
                                      'webhook-signature', 'user-agent'];
begin
    if jsonb_typeof(headers) <> 'object' then
        raise exception 'webhook headers must be a JSON object of header name to string value'
            using errcode = 'check_violation', hint = 'e.g. {"Authorization": "Bearer ..."}';
    end if;
    if (select count(*) from jsonb_object_keys(headers)) > 10 then
        raise exception 'webhook headers: at most 10 headers are allowed'
            using errcode = 'check_violation';
    end if;
    for name, value in select * from jsonb_each(headers) loop
        if name !~ '^[A-Za-z0-9_-]+$' then
            raise exception 'webhook header name "%" is invalid: use letters, digits, "-" and "_"',
                left(name, 64) using errcode = 'check_violation';
        end if;
        if lower(name) = any (reserved) then
            raise exception 'webhook header "%" is set by outbox and cannot be overridden', name
                using errcode = 'check_violation';
        end if;
        if jsonb_typeof(value) <> 'string' then
            raise exception 'webhook header "%" must have a string value', name
                using errcode = 'check_violation';
        end if;
        if value #>> '{}' ~ '[\x00-\x1f\x7f]' then
            raise exception 'webhook header "%" must not contain control characters or newlines', name
                using errcode = 'check_violation';
        end if;
    end loop;
    return true;
end
$$;

create function outbox.check_webhook_actions(actions text[], project_id integer) returns boolean
language plpgsql immutable as $$
declare
    unknown text;
    org_only text;
begin
    select string_agg(a, ', ') into unknown
    from unnest(actions) a where a is null or a <> all (outbox.known_actions());
    if unknown is not null then
        raise exception 'webhook actions: unknown action(s) %', unknown
            using errcode = 'check_violation',
                  hint = 'known actions: ' || array_to_string(outbox.known_actions(), ', ');
    end if;
    if project_id is not null then
        select string_agg(a, ', ') into org_only
        from unnest(actions) a where a = any (outbox.organization_only_actions());
        if org_only is not null then
            raise exception 'webhook actions: % can only be sent to organization-level webhooks (project_id null)',
                org_only using errcode = 'check_violation';
        end if;
    end if;
    return true;
end
$$;

create function outbox.check_webhook_secret(secret text) returns boolean
language plpgsql immutable as $$
declare
    key_length integer;
begin
    if secret is null then
        return true;
    end if;
    begin
        key_length := length(decode(substr(secret, 7), 'base64'));
    exception when others then
        key_length := null;
    end;
    if secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' or key_length is null
       or key_length not between 24 and 64 then
        raise exception 'webhook secret must be "whsec_" followed by the base64 of 24 to 64 random bytes'
            using errcode = 'check_violation',
                  hint = '`outbox webhooks rotate-secret` or outbox.generate_secret() makes one';
    end if;
    return true;
end
$$;

-- For SQL users: a fresh secret (32 random bytes). The CLI and API generate their own with Python's
-- `secrets`; both produce the same format.
create function outbox.generate_secret() returns text
language sql volatile as $$
    select 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
                                     'hex'), 'base64')
$$;

-- A subscription. The first columns are Label Studio's webhook model; the rest are outbox's.
create table outbox.webhook (
    id                   integer generated by default as identity primary key,
    organization_id      integer not null,
    project_id           integer,
    url                  text not null constraint webhook_url_valid check (outbox.check_webhook_url(url)),
    send_payload         boolean not null default true,
    send_for_all_actions boolean not null default true,
    actions              text[] not null default '{}',
    headers              jsonb not null default '{}'
                         constraint webhook_headers_valid check (outbox.check_webhook_headers(headers)),
    secret               text constraint webhook_secret_valid check (outbox.check_webhook_secret(secret)),
    is_active            boolean not null default true,
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    description          text not null default '',
    -- events of one project are delivered one at a time, in commit order
    ordered              boolean not null default false,
    max_concurrency      integer not null default 8
                         constraint webhook_max_concurrency_range check (max_concurrency between 1 and 1000),
    -- requests per second over all relays (bursts of up to max(1, rate_limit)); null = unlimited
    rate_limit           double precision constraint webhook_rate_limit_positive check (rate_limit > 0),
    -- seconds; null = WEBHOOK_TIMEOUT
    timeout              double precision constraint webhook_timeout_range check (timeout > 0 and timeout <= 300),
    -- delay in seconds before each attempt; null = the relay's default schedule
    retry_schedule       integer[] constraint webhook_retry_schedule_valid
                         check (cardinality(retry_schedule) between 1 and 50 and 0 <= all (retry_schedule)),
    -- the secret that was replaced, still signed with until previous_secret_expires_at
    previous_secret      text constraint webhook_previous_secret_valid
                         check (outbox.check_webhook_secret(previous_secret)),
    previous_secret_expires_at timestamptz,
    disabled_reason      text,
    disabled_at          timestamptz,
    constraint webhook_actions_valid check (outbox.check_webhook_actions(actions, project_id))
);
create index webhook_organization on outbox.webhook (organization_id);

-- Maintains updated_at, keeps the replaced secret valid for a grace period, and makes re-enabling a
-- webhook (is_active back to true) clear the reason it was disabled and its failure count.
create function outbox.webhook_before_update() returns trigger
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
        delete from outbox.webhook_health where webhook_id = new.id;
    end if;
    return new;
end
$$;

-- Health per webhook, kept apart from the subscription row so that the relay's bookkeeping never
-- touches what users edit.
create table outbox.webhook_health (
    webhook_id           integer primary key references outbox.webhook (id) on delete cascade,
    consecutive_failures integer not null default 0,
    failing_since        timestamptz,
    last_success_at      timestamptz,
    last_failure_at      timestamptz
);

-- The token bucket behind a webhook's rate_limit, shared by every relay: claims take tokens from it
-- while holding the webhook's claim lock, so the limit holds however many relays run.
create table outbox.webhook_rate (
    webhook_id integer primary key references outbox.webhook (id) on delete cascade,
    tokens     double precision not null,
    updated_at timestamptz not null
);

create trigger webhook_before_update before update on outbox.webhook
    for each row execute function outbox.webhook_before_update();

-- One webhook action for one project (or organization) from one committed transaction.
create table outbox.event (
    id              bigint generated always as identity primary key,
    -- the Label Studio transaction; null for events outbox makes itself (PING)
    xid             xid8,
    action          text not null,
    organization_id integer,
    project_id      integer,
    -- the rows the event is about (tasks, annotations, or the project), in capture order
    row_ids         integer[] not null default '{}',
    -- payloads hold at most this many rows; more make several chunks (WEBHOOK_BATCH_SIZE at routing)
    chunk_size      integer not null,
    created_at      timestamptz not null default now()
);
create index event_created_at on outbox.event (created_at);
create index event_project on outbox.event (project_id, created_at);

-- The body of one chunk of an event, built once after the settle delay and sent to every webhook
-- that gets the event, so retries and fan-out send the same bytes.
create table outbox.payload (
    event_id bigint not null references outbox.event (id) on delete cascade,
    chunk    integer not null,
    ready_at timestamptz not null,
    body     bytea,
    built_at timestamptz,
    primary key (event_id, chunk)
);
create index payload_unbuilt on outbox.payload (ready_at) where built_at is null;

-- One event chunk owed to one webhook: the hot queue. Attempts go to outbox.attempt.
create table outbox.delivery (
    id              bigint generated always as identity primary key,
    -- sent as webhook-id: stable across retries, unique across installations
    message_id      uuid not null default gen_random_uuid(),
    event_id        bigint not null references outbox.event (id) on delete cascade,
    chunk           integer not null default 0,
    webhook_id      integer not null references outbox.webhook (id) on delete cascade,
    project_id      integer,
    state           text not null default 'pending'
                    constraint delivery_state_valid check (state in ('pending', 'delivered', 'dead')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_until     timestamptz,
    leased_by       uuid,
    last_status     integer,
    last_error      text,
    created_at      timestamptz not null default now(),
    finished_at     timestamptz
);
-- the claim walks each webhook's due deliveries in order
create index delivery_due on outbox.delivery (webhook_id, next_attempt_at, id) where state = 'pending';
create index delivery_ordered on outbox.delivery (webhook_id, project_id, id) where state = 'pending';
create index delivery_webhook on outbox.delivery (webhook_id, id);
create index delivery_event on outbox.delivery (event_id);
create index delivery_finished on outbox.delivery (finished_at) where state <> 'pending';

-- Append-only log: one row per HTTP request of a delivery.
create table outbox.attempt (
    id              bigint generated always as identity primary key,
    delivery_id     bigint not null references outbox.delivery (id) on delete cascade,
    attempt         integer not null,
    relay_id        uuid,
    started_at      timestamptz not null,
    duration_ms     double precision not null,
    status_code     integer,
    -- null on success; otherwise timeout, connect, tls, http_status, redirect, too_large, blocked, ...
    error_class     text,
    error           text,
    -- the first 4 KiB of the response body
    response_body   text,
    -- what was sent, secret values masked
    request_headers jsonb not null
);
create index attempt_delivery on outbox.attempt (delivery_id, attempt);
create index attempt_started_at on outbox.attempt (started_at);
-- Live leases per webhook, counted at every claim to keep each webhook under its concurrency cap.
create index delivery_leased on outbox.delivery (webhook_id) where state = 'pending' and lease_until is not null;
