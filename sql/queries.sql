-- The statements of the relay (relay/) and the migrations runner (outbox/migrations.py), one named
-- block each (`-- name: <name>`), loaded once by outbox/sql.py. The admin side (outbox/admin/: the
-- API and the CLI's webhooks/deliveries/events/adopt commands) builds its statements with
-- SQLAlchemy Core over outbox/tables.py instead; migrations, capture triggers, preflight, uninstall
-- and the Label Studio sandbox are files of their own in sql/. Parameters are always bound (%(name)s), never formatted into the text; large
-- arrays go in binary (%(name)b): as text, psycopg spent a tenth of the relay's time writing them.

-- ---------------------------------------------------------------------------------------------
-- migrations (outbox/migrations.py)

-- name: lock_migrations
select pg_advisory_lock(%(key)s);

-- name: unlock_migrations
select pg_advisory_unlock(%(key)s);

-- name: migrations_table_exists
select to_regclass('outbox.schema_migrations') is not null as exists;

-- name: applied_migrations
select name, kind, checksum, applied_at from outbox.schema_migrations order by name;

-- name: record_migration
insert into outbox.schema_migrations (name, kind, checksum)
values (%(name)s, %(kind)s, %(checksum)s)
on conflict (name) do update set checksum = excluded.checksum, applied_at = now();

-- name: forget_migrations
delete from outbox.schema_migrations where name = any(%(names)s);

-- name: drop_schema
drop schema if exists outbox cascade;

-- name: set_lock_timeout
select set_config('lock_timeout', %(timeout)s, true);

-- name: lock_holders
-- The sessions holding a lock on the given tables (any lock conflicts with ACCESS EXCLUSIVE),
-- oldest transaction first. Never their query text: it may carry Label Studio's data.
select format('%%I.%%I', n.nspname, c.relname) as relation, l.pid,
       string_agg(l.mode, ', ' order by l.mode) as modes,
       a.state, a.application_name,
       extract(epoch from clock_timestamp() - a.xact_start)::float8 as transaction_seconds
from pg_locks l
join pg_class c on c.oid = l.relation
join pg_namespace n on n.oid = c.relnamespace
left join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
  and l.database = (select oid from pg_database where datname = current_database())
  and l.relation in (select to_regclass(r) from unnest(%(relations)s::text[]) r)
group by n.nspname, c.relname, l.pid, a.state, a.application_name, a.xact_start
order by a.xact_start nulls last, l.pid, relation;

-- ---------------------------------------------------------------------------------------------
-- relay: presence and wake-ups (relay/presence.py)

-- name: commit_without_flush
set local synchronous_commit = off;

-- name: register_relay
insert into outbox.relay (id, hostname, pid, version)
values (%(relay_id)s, %(hostname)s, %(pid)s, %(version)s)
on conflict (id) do update set heartbeat_at = now(), waiting = false;

-- name: heartbeat
update outbox.relay set heartbeat_at = now() where id = %(relay_id)s;

-- name: unregister_relay
delete from outbox.relay where id = %(relay_id)s;

-- name: set_waiting
-- Declares this relay waiting and listening, so the capture triggers start notifying, and in the
-- same statement looks once more for work that committed before the flag was visible.
with flag as (
    update outbox.relay set waiting = true, heartbeat_at = now() where id = %(relay_id)s
)
-- (a held Data Manager delete is no reason to stay awake: its last transaction will notify)
select exists (select 1 from outbox.change where detach_xid is null) as has_changes,
       (select min(ready_at) from outbox.payload where built_at is null) as next_build,
       (select min(d.next_attempt_at)
          from outbox.delivery d
          join outbox.webhook w on w.id = d.webhook_id and w.is_active
         where d.state = 'pending' and d.next_attempt_at > now()) as next_attempt,
       now() as now;

-- name: clear_waiting
update outbox.relay set waiting = false where id = %(relay_id)s and waiting;

-- ---------------------------------------------------------------------------------------------
-- relay: routing changes into events and deliveries

-- name: lock_routing
-- One relay routes at a time: a transaction's changes must be grouped together. The lock is taken
-- in a statement of its own so that the next one's snapshot sees everything the previous holder
-- committed (a snapshot taken before the lock could route the same changes twice).
select set_config('outbox.routing', pg_try_advisory_xact_lock(%(lock)s)::text, true);

-- name: take_changes
-- Whole transactions only: the first changes decide which transactions are taken, and every change
-- of those transactions comes along (grouping needs them all), as does every change of the Data
-- Manager deletes they belong to. Such a delete is `held` while its detached tasks are not all
-- deleted yet (Label Studio deletes them 500 per transaction, then sends one TASKS_DELETED), unless
-- it made no progress for %(detach_wait)s (Label Studio died half-way). Nothing comes back unless
-- the statement before took the routing lock. Inserts do not record their organization (the
-- trigger stays cheap): it is read from the project here; when the project is gone by now, from its
-- deletion, which is still queued (changes are routed in order, and a project's deletion comes
-- after every change made in it), else from a webhook of that project. A committed change becomes
-- its events whatever happened to its rows since.
-- While some active webhook wants payloads, the rows' estimated JSON sizes come along, so that
-- routing can cut chunks by bytes without another round trip (relay/chunks.py adds a fixed
-- allowance per object): the text of the large columns, and a task's comment authors (its body
-- lists their ids). task_bytes: the tasks of the change (a task change's rows, an annotation
-- change's tasks); own_bytes: an annotation's or a project's own; project_bytes: its project.
-- Storage syncs: Label Studio creates each synced task in a transaction of its own, with a link
-- row (captured with its `storage`), and updates the storage row when the sync ends (the marker:
-- a change of that storage with op UPDATE). A sync's transactions are left out until its marker
-- comes, unless it made no progress for %(sync_wait)s or began %(sync_max)s ago (a crashed or
-- endless sync); then all of them come at once and `sync_end` (the marker's id, null on a time-out)
-- tells the router which tasks make one TASKS_CREATED.
with links as (
    select c.id, c.xid, c.storage, c.captured_at,
           (select min(m.id) from outbox.change m
             where m.storage = c.storage and m.op = 'UPDATE' and m.id > c.id) as sync_end
    from outbox.change c
    where c.storage is not null and c.op = 'INSERT'
      and current_setting('outbox.routing', true) = 'true'
),
open_syncs as (
    select storage from links
    where sync_end is null
    group by storage
    having max(captured_at) > now() - %(sync_wait)s and min(captured_at) > now() - %(sync_max)s
),
held_syncs as (
    select distinct xid from links where sync_end is null and storage in (select storage from open_syncs)
),
head as (
    select xid, detach_xid from outbox.change
    where current_setting('outbox.routing', true) = 'true'
      and xid <> all (array(select xid from held_syncs))
    order by id limit %(limit)s
),
open_batches as (
    select b.detach_xid
    from (select distinct detach_xid from head where detach_xid is not null) b
    where exists (select 1 from outbox.detached_task d where d.detach_xid = b.detach_xid)
      and (select max(c.captured_at) from outbox.change c where c.detach_xid = b.detach_xid)
          > now() - %(detach_wait)s
),
sizing as (
    select exists (select 1 from outbox.webhook w where w.is_active and w.send_payload) as wanted,
           exists (select 1 from outbox.webhook w
                    where w.is_active and w.send_payload and w.delete_payload = 'rows') as wanted_rows
),
taken as (
    -- `in (subquery)` is hashed; `= any (array(...))` compared every change with every xid taken
    select c.* from outbox.change c
    where c.xid in (select xid from head)
       or c.detach_xid in (select detach_xid from head where detach_xid is not null)
       -- every transaction of the syncs the head's belong to (none of them is held: see head)
       or c.xid in (select l.xid from links l
                    where l.storage in (select h.storage from links h where h.xid in (select xid from head))
                      and l.xid <> all (array(select xid from held_syncs)))
),
project_sizes as materialized (
    -- once per project, not once per change (materialized: inlined, the size would be computed
    -- for every change joined to it): a project's JSON is the costliest size to estimate
    select r.id, octet_length(to_jsonb(r)::text)::bigint as bytes
    from public.project r
    where r.id in (select project_id from taken) and (select wanted from sizing)
)
select c.id, c.xid::text as xid, c.table_name, c.op, c.project_id,
       coalesce(c.organization_id, p.organization_id,
                (select d.organization_id from outbox.change d
                  where d.table_name = 'project' and d.op = 'DELETE' and d.project_id = c.project_id
                    and d.organization_id is not null
                  order by d.id limit 1),
                (select w.organization_id from outbox.webhook w
                  where w.project_id = c.project_id order by w.id limit 1)) as organization_id,
       c.row_ids, c.task_ids, c.detach_xid::text as detach_xid, c.captured_at, c.storage,
       (select l.sync_end from links l where l.id = c.id) as sync_end,
       -- the deleted rows, for webhooks that want them in delete events
       case when (select wanted_rows from sizing) then c.old_rows end as old_rows,
       coalesce(c.detach_xid in (select detach_xid from open_batches), false) as held,
       sized.task_bytes, sized.own_bytes, ps.bytes as project_bytes
from taken c
left join public.project p on c.organization_id is null and p.id = c.project_id
left join project_sizes ps on ps.id = c.project_id
left join lateral (
    select
        array(select coalesce((select octet_length(t.data::text)::bigint
                                      + coalesce(octet_length(t.meta::text), 0)
                                      + 11 * (select count(*) from public.task_comment_authors ca
                                              where ca.task_id = t.id)
                               from public.task t where t.id = u.id), 0)
              from unnest(case c.table_name when 'task' then c.row_ids else c.task_ids end)
                   with ordinality as u(id, n)
              where c.op <> 'DELETE'
              order by u.n) as task_bytes,
        array(select coalesce(case c.table_name
                  when 'task_completion' then
                      (select coalesce(octet_length(a.result::text), 0)::bigint
                              + coalesce(octet_length(a.prediction::text), 0)
                       from public.task_completion a where a.id = u.id)
                  when 'project' then
                      (select octet_length(to_jsonb(r)::text)::bigint from public.project r where r.id = u.id)
              end, 0)
              from unnest(c.row_ids) with ordinality as u(id, n)
              where c.table_name <> 'task' and c.op <> 'DELETE'
              order by u.n) as own_bytes
    where (select wanted from sizing)
) sized on true
order by c.id;

-- name: delete_changes
delete from outbox.change where id = any(%(ids)b::bigint[]);

-- name: routable_webhooks
-- A change captured before the webhook was created, or during its last pause (paused_from until
-- paused_until), is not sent to it (docs/decisions.md, "Matching").
select id, organization_id, project_id, is_active, send_for_all_actions, actions, send_payload,
       created_at, case when activated_at is not null then coalesce(paused_at, created_at) end
           as paused_from,
       activated_at as paused_until, delete_payload
from outbox.webhook
where is_active;

-- name: insert_events
-- Events, their payload chunks and their deliveries, in one statement. Event ids are taken in
-- routing order so that ordered webhooks see commit order. Bodies built already (no settle delay)
-- come in %(bodies)b, keyed by the event's position and chunk; the others are built later.
-- The changes routed (%(done)b) are forgotten in the same statement (one fewer per cycle).
-- Returns each event's id by its position.
with input as (
    select nextval(pg_get_serial_sequence('outbox.event', 'id')) as event_id, e.ord, x.*
    from jsonb_array_elements(%(events)s::jsonb) with ordinality as e(doc, ord)
    cross join jsonb_to_record(e.doc) as x(
        xid text, action text, organization_id integer, project_id integer, row_ids integer[],
        chunk_size integer, chunk_starts integer[], chunk_ends integer[], chunk_bytes bigint[],
        chunk_errors text[], webhook_ids integer[], needs_payload boolean)
    order by e.ord
),
-- the chunks relay/chunks.py cut (rows and bytes): chunk n holds rows [start, end) of row_ids
chunks as (
    select i.event_id, i.ord, i.project_id, i.webhook_ids, i.needs_payload, c.n - 1 as chunk,
           c.row_start, c.row_end, c.size_estimate, c.error
    from input i
    cross join unnest(i.chunk_starts, i.chunk_ends, i.chunk_bytes, i.chunk_errors)
        with ordinality as c(row_start, row_end, size_estimate, error, n)
),
built as (
    select * from unnest(%(body_ords)b::bigint[], %(body_chunks)b::integer[], %(bodies)b::bytea[])
        as b(ord, chunk, body)
),
events as (
    insert into outbox.event (id, xid, action, organization_id, project_id, row_ids, chunk_size)
    overriding system value
    select event_id, xid::xid8, action, organization_id, project_id, row_ids, chunk_size
    from input
),
payloads as (
    -- a chunk too large to send is never built: it carries its error instead of a body
    insert into outbox.payload (event_id, chunk, ready_at, body, built_at, row_start, row_end,
                                size_estimate, error)
    select c.event_id, c.chunk, now() + %(settle)s, b.body,
           case when b.body is not null or c.error is not null then now() end,
           c.row_start, c.row_end, c.size_estimate, c.error
    from chunks c
    left join built b on b.ord = c.ord and b.chunk = c.chunk
    where c.needs_payload
),
deliveries as (
    insert into outbox.delivery (event_id, chunk, webhook_id, project_id, next_attempt_at)
    select c.event_id, c.chunk, w.webhook_id, c.project_id, now() + %(settle)s
    from chunks c
    cross join unnest(c.webhook_ids) with ordinality as w(webhook_id, n)
    order by c.event_id, c.chunk, w.n
),
forgotten as (
    delete from outbox.change where id = any(%(done)b::bigint[])
)
select ord, event_id from input;

-- ---------------------------------------------------------------------------------------------
-- relay: building payloads

-- name: claim_payloads
-- Payloads due to be built, small ones first: an annotation committed after a 1 GB import is built
-- in the next cycle, not after the import's bodies (those are built %(large)s bytes a cycle).
-- Due means the settle delay is over, or the rows settled before it: Label Studio updates a task's
-- counters after the annotation's own transaction, then its updated_at and updated_by, and a
-- payload showing tasks is settled once every such task's counters agree with its annotations
-- (is_labeled as Label Studio's default rule has it: finished annotations >= overlap) and, for an
-- annotation event, the task was written after the annotation. Rows that never settle so (a
-- project that counts skipped annotations, rows written by hand) only mean waiting the whole
-- delay, as before.
select p.event_id, p.chunk, e.action, e.project_id, p.size_estimate,
       e.row_ids[p.row_start + 1 : p.row_end] as row_ids
from outbox.payload p
join outbox.event e on e.id = p.event_id
where p.built_at is null
  and (p.ready_at <= now()
       or (e.action in ('TASKS_CREATED', 'ANNOTATION_CREATED', 'ANNOTATIONS_CREATED',
                        'ANNOTATION_UPDATED')
           and not exists (
               select
               from public.task t
               cross join lateral (
                   select count(*) filter (where not a.was_cancelled) as total,
                          count(*) filter (where a.was_cancelled) as cancelled,
                          count(*) filter (where not a.was_cancelled and a.result is not null)
                              as finished
                   from public.task_completion a
                   where a.task_id = t.id
               ) c
               -- the tasks as one array: `= any` of an array is an index scan, where a CASE or
               -- an OR around `in (select ...)` read the whole task table for every payload
               where t.id = any (case when e.action = 'TASKS_CREATED'
                                      then e.row_ids[p.row_start + 1 : p.row_end]
                                      else array(select a.task_id from public.task_completion a
                                                 where a.id = any(e.row_ids[p.row_start + 1 : p.row_end]))
                                 end)
                 and (t.total_annotations <> c.total or t.cancelled_annotations <> c.cancelled
                      or t.is_labeled <> (c.finished >= t.overlap)
                      -- and, for annotation events, Label Studio's last write of the task: its
                      -- updated_at and updated_by (Annotation.update_task), after the annotation's
                      or (e.action <> 'TASKS_CREATED' and exists (
                              select from public.task_completion a
                              where a.id = any(e.row_ids[p.row_start + 1 : p.row_end])
                                and a.task_id = t.id and a.updated_at > t.updated_at))
                      -- an edit (AnnotationAPI.update) writes the task once more, ~10 ms after:
                      -- the task must have been quiet for a moment (its updated_at is Label
                      -- Studio's clock; a clock ahead of the database's only means waiting longer)
                      or (e.action = 'ANNOTATION_UPDATED'
                          and t.updated_at > now() - interval '50 milliseconds'))
           )))
order by coalesce(p.size_estimate, 0) >= %(large)s, p.ready_at, p.event_id, p.chunk
limit %(limit)s
for update of p skip locked;

-- name: fetch_projects
select p.* from public.project p where p.id = any(%(ids)s);

-- name: clock
-- The database's clock, before the project counts of a snapshot (each statement of a pipeline runs
-- after the one before: a count's time is its clock minus the clock before it).
select extract(epoch from clock_timestamp())::float8 as at;

-- name: count_projects
-- The eight counters Label Studio adds to its project object, counted through the project's tasks
-- as Label Studio does, and the clock once they are counted (relay/counters.py reuses a slow
-- project's counters for a while). One project a statement, so that each count is timed alone.
select p.id, c.*, extract(epoch from clock_timestamp())::float8 as counted_at
from public.project p
cross join lateral (
    select
        (select count(*) from public.task t where t.project_id = p.id) as task_number,
        (select count(*) from public.task t where t.project_id = p.id and t.is_labeled)
            as finished_task_number,
        (select count(*) from public.prediction r join public.task t on t.id = r.task_id
          where t.project_id = p.id) as total_predictions_number,
        a.*
    from (
        select count(*) filter (where not a.was_cancelled) as total_annotations_number,
               count(distinct a.task_id) filter (
                   where not a.ground_truth and not a.was_cancelled and a.result is not null
               ) as num_tasks_with_annotations,
               count(*) filter (
                   where not a.was_cancelled and not a.ground_truth and a.result is not null
               ) as useful_annotation_number,
               count(*) filter (where a.ground_truth) as ground_truth_number,
               count(*) filter (where a.was_cancelled) as skipped_annotations_number
        from public.task_completion a
        join public.task t on t.id = a.task_id
        where t.project_id = p.id
    ) a
) c
where p.id = any(%(ids)s);

-- name: fetch_tasks
-- The tasks asked for, and those of the annotations asked for (nested in annotation events).
select t.*,
       array(select c.user_id from public.task_comment_authors c
              where c.task_id = t.id order by c.id) as comment_authors
from public.task t
-- one array, so that the task table is read by its index (an OR with `in (select ...)` read all of
-- it: 155 ms for 1,000 tasks of 21,000)
where t.id = any (%(ids)s::integer[]
                  || array(select a.task_id from public.task_completion a
                           where a.id = any(%(annotation_ids)s::integer[])));

-- name: fetch_annotations
select a.* from public.task_completion a where a.id = any(%(ids)s);

-- name: fetch_label_links
select k.* from public.labels_manager_labellink k where k.id = any(%(ids)s);

-- name: fetch_labels
-- The labels of the label links asked for, with the ids of all their links and of the projects
-- those are in (Label Studio's label object lists both).
select l.*,
       array(select k.id from public.labels_manager_labellink k where k.label_id = l.id order by k.id)
           as links,
       array(select distinct k.project_id from public.labels_manager_labellink k
              where k.label_id = l.id order by k.project_id) as projects
from public.labels_manager_label l
where l.id in (select k.label_id from public.labels_manager_labellink k where k.id = any(%(link_ids)s));

-- name: fetch_predictions
select r.* from public.prediction r where r.id = any(%(ids)s);

-- name: store_payloads
-- A payload built before its settle delay was over (its rows settled) makes its deliveries due now.
with stored as (
    update outbox.payload p
    set body = v.body, built_at = now()
    from unnest(%(event_ids)b::bigint[], %(chunks)b::integer[], %(bodies)b::bytea[])
         as v(event_id, chunk, body)
    where p.event_id = v.event_id and p.chunk = v.chunk
    returning p.event_id, p.chunk, p.ready_at
)
update outbox.delivery d
set next_attempt_at = now()
from stored s
where s.ready_at > now()
  and d.event_id = s.event_id and d.chunk = s.chunk
  and d.state = 'pending' and d.attempts = 0 and d.next_attempt_at > now();

-- ---------------------------------------------------------------------------------------------
-- relay: claiming and recording deliveries

-- name: lock_claimable_webhooks
-- First statement of a claim: take an advisory lock on every webhook with due work (skipping the
-- ones another relay is claiming for right now) and remember them for the claim itself. The claim
-- runs as the next statement, so its snapshot sees every lease and every rate token committed by
-- whoever held a lock before: concurrency caps and rate limits hold across all relays.
-- The first due delivery is found by a scan of delivery_due that stops at it: written as EXISTS,
-- the planner took a bitmap scan reading every due row first (2 ms a claim with 9,000 queued).
with due as materialized (
    select w.id
    from outbox.webhook w
    where w.is_active
      and (select d.next_attempt_at from outbox.delivery d
           where d.webhook_id = w.id and d.state = 'pending' and d.next_attempt_at <= now()
           order by d.next_attempt_at
           limit 1) is not null
)
select set_config('outbox.claimable', coalesce(string_agg(id::text, ','), ''), true) as claimable
from due
where pg_try_advisory_xact_lock(%(lock_space)s::integer, id);

-- name: claim_deliveries
-- Due deliveries of the webhooks locked above, at most each webhook's free concurrency (this
-- relay's requests in flight, %(busy)s, plus other relays' live leases) and its rate tokens, so
-- that a slow or failing webhook never takes the places of healthy ones. An ordered webhook gets a
-- project's next delivery only once the earlier ones succeeded or died. The lease is committed
-- before any request is made: no transaction stays open across HTTP.
with webhooks as (
    select w.id, w.max_concurrency, w.send_payload, w.ordered, w.timeout,
           -- a token bucket: rate_limit tokens a second, at most max(1, rate_limit) saved up
           case when w.rate_limit is not null then
               least(greatest(1, x.rate),
                     coalesce(r.tokens + extract(epoch from now() - r.updated_at) * x.rate,
                              greatest(1, x.rate)))
           end as tokens
    from outbox.webhook w
    -- the schema takes any positive rate_limit; beyond 1e9 a second it is unlimited in effect, and
    -- read as 1e9 it never overflows a float here nor the integer the tokens become below
    cross join lateral (select least(w.rate_limit, 1e9::float8) as rate) x
    left join outbox.webhook_rate r on r.webhook_id = w.id
    where w.id = any (string_to_array(nullif(current_setting('outbox.claimable', true), ''), ',')::integer[])
),
claimable as (
    select d.id, w.id as webhook_id, w.tokens
    from webhooks w
    cross join lateral (
        select d.id, d.next_attempt_at
        from outbox.delivery d
        where d.webhook_id = w.id
          and d.state = 'pending'
          and d.next_attempt_at <= now()
          and (d.lease_until is null or d.lease_until < now())
          -- a scalar subquery, so the payload is looked up by key for the few rows read; an event
          -- routed while the webhook had send_payload off has no payload to wait for (the
          -- attempt is then dead as payload_missing, instead of pending forever)
          and (not w.send_payload or coalesce((
                select p.built_at is not null from outbox.payload p
                where p.event_id = d.event_id and p.chunk = d.chunk), true))
          and (not w.ordered or not exists (
                select 1 from outbox.delivery e
                where e.webhook_id = d.webhook_id and e.state = 'pending' and e.id < d.id
                  and (e.project_id = d.project_id or (e.project_id is null and d.project_id is null))))
        order by d.next_attempt_at, d.id
        limit greatest(0, least(
            w.max_concurrency
              - coalesce((%(busy)s::jsonb ->> w.id::text)::integer, 0)
              -- other relays' requests in flight, as each published them with its last claim,
              -- for as long as a lease taken by that claim lasts
              - coalesce((select sum((r.busy ->> w.id::text)::integer) from outbox.relay r
                          where r.id <> %(relay_id)s
                            and r.busy_at > now() - make_interval(
                                    secs => coalesce(w.timeout, %(timeout)s) + %(lease_margin)s)), 0),
            coalesce(floor(w.tokens)::integer, w.max_concurrency)))
        for update of d skip locked
    ) d
    order by d.next_attempt_at, d.id
    limit %(limit)s
),
-- what this relay has in flight once these are sent, for the other relays' claims (the same
-- transaction holds the webhooks' advisory locks: whoever locks them next reads it)
published as (
    update outbox.relay
    set busy = (select coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
                from (select k, sum(n)::integer as n
                      from (select key as k, value::integer as n
                            from jsonb_each_text(%(busy)s::jsonb)
                            union all
                            select webhook_id::text, 1 from claimable) x
                      group by k) y),
        busy_at = now()
    where id = %(relay_id)s
),
spent as (
    insert into outbox.webhook_rate as r (webhook_id, tokens, updated_at)
    select webhook_id, min(tokens) - count(*), now()
    from claimable
    where tokens is not null
    group by webhook_id
    on conflict (webhook_id) do update set tokens = excluded.tokens, updated_at = excluded.updated_at
)
update outbox.delivery d
set lease_until = now() + make_interval(secs => coalesce(w.timeout, %(timeout)s) + %(lease_margin)s),
    leased_by = %(relay_id)s
from outbox.webhook w, outbox.event e
where d.id = any (array(select id from claimable)) and w.id = d.webhook_id and e.id = d.event_id
returning d.id, d.message_id, d.event_id, d.chunk, d.webhook_id, d.attempts, e.action,
          w.url, w.headers, w.secret,
          case when w.previous_secret_expires_at > now() then w.previous_secret end as previous_secret,
          w.send_payload, w.timeout, w.retry_schedule;

-- name: fetch_bodies
select p.event_id, p.chunk, p.body, p.error
from outbox.payload p
join unnest(%(event_ids)b::bigint[], %(chunks)b::integer[]) as k(event_id, chunk)
  on p.event_id = k.event_id and p.chunk = k.chunk;

-- name: record_results
-- A batch of attempts, in one statement (the recorder's connection commits without waiting for
-- the WAL flush: a result lost in a database crash means that delivery is sent again, with the
-- same webhook-id):
-- * the hot queue row is updated and the attempt appended to the log. Only the relay holding the
--   lease updates the delivery (an expired lease may have passed the delivery to another relay);
--   the attempt is logged either way, since it happened.
-- * A webhook that answers 2xx again (`back`) after failing: its deliveries waiting for a retry
--   because the receiver was unreachable or unavailable become due now, instead of each waiting
--   out its backoff step; the claim still holds them to max_concurrency and rate_limit. Failures
--   that name the payload (other 4xx, 500) keep their schedule, so a payload the receiver rejects
--   is not retried at the pace of the others' successes. A webhook failed before if its health
--   (as this statement's snapshot shows it, before the update below) still counts failures, or
--   `recovered` says this batch had a failure before its success. The batch's own deliveries were
--   just decided and keep their times.
-- * Per webhook: whether the batch had a success, and the failures after the last success.
-- Returns how many waiting deliveries became due at once.
with r as (
    select *
    from unnest(%(delivery_ids)b::bigint[], %(attempts)b::integer[], %(states)b::text[],
                %(delays)b::double precision[], %(started_at)b::timestamptz[],
                %(durations)b::double precision[], %(statuses)b::integer[], %(error_classes)b::text[],
                %(errors)b::text[], %(bodies)b::text[], %(headers)b::jsonb[])
         as r(delivery_id, attempt, state, delay, started_at, duration_ms, status_code,
              error_class, error, response_body, request_headers)
),
updated as (
    update outbox.delivery d
    set state = r.state,
        attempts = r.attempt,
        next_attempt_at = case when r.state = 'pending'
                               then now() + make_interval(secs => r.delay)
                               else d.next_attempt_at end,
        finished_at = case when r.state = 'pending' then null else now() end,
        lease_until = null,
        leased_by = null,
        last_status = r.status_code,
        last_error = r.error
    from r
    where d.id = r.delivery_id and d.leased_by = %(relay_id)s
),
logged as (
    insert into outbox.attempt (delivery_id, attempt, relay_id, started_at, duration_ms, status_code,
                                error_class, error, response_body, request_headers)
    select r.delivery_id, r.attempt, %(relay_id)s, r.started_at, r.duration_ms, r.status_code,
           r.error_class, r.error, r.response_body, r.request_headers
    from r
    join outbox.delivery d on d.id = r.delivery_id
),
back as (
    select v.id
    from unnest(%(back)b::integer[]) as v(id)
    where v.id = any(%(recovered)b::integer[])
       or exists (select 1 from outbox.webhook_health h
                  where h.webhook_id = v.id and h.consecutive_failures > 0)
),
hastened as (
    update outbox.delivery d
    set next_attempt_at = now()
    from back
    where d.webhook_id = back.id
      and d.state = 'pending'
      and d.attempts > 0
      and d.next_attempt_at > now()
      and (d.last_status is null or d.last_status in (408, 429, 502, 503, 504))
      and d.id <> all(%(delivery_ids)b::bigint[])
    returning d.id
),
health as (
    insert into outbox.webhook_health as h
           (webhook_id, consecutive_failures, failing_since, last_success_at, last_failure_at)
    select v.webhook_id, v.failures,
           case when v.failures > 0 then now() end,
           case when v.succeeded then now() end,
           case when v.failures > 0 then now() end
    from unnest(%(webhook_ids)b::integer[], %(succeeded)b::boolean[], %(failures)b::integer[])
         as v(webhook_id, succeeded, failures)
    join outbox.webhook w on w.id = v.webhook_id
    on conflict (webhook_id) do update set
        consecutive_failures = case when excluded.last_success_at is not null
                                    then excluded.consecutive_failures
                                    else h.consecutive_failures + excluded.consecutive_failures end,
        failing_since = case when excluded.consecutive_failures = 0 then null
                             when excluded.last_success_at is not null then now()
                             else coalesce(h.failing_since, now()) end,
        last_success_at = coalesce(excluded.last_success_at, h.last_success_at),
        last_failure_at = coalesce(excluded.last_failure_at, h.last_failure_at)
)
select count(*) as hastened from hastened;

-- name: disable_webhooks
update outbox.webhook w
set is_active = false, disabled_reason = v.reason, disabled_at = now()
from unnest(%(webhook_ids)s::integer[], %(reasons)s::text[]) as v(id, reason)
where w.id = v.id and w.is_active
returning w.id, w.disabled_reason;

-- name: disable_failing_webhooks
update outbox.webhook w
set is_active = false,
    disabled_at = now(),
    disabled_reason = format('failing continuously since %%s (%%s consecutive failed attempts)',
                             to_char(h.failing_since at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'),
                             h.consecutive_failures)
from outbox.webhook_health h
where h.webhook_id = w.id and w.is_active and w.id = any(%(webhook_ids)s)
  and h.consecutive_failures >= %(min_attempts)s
  and h.failing_since <= now() - %(min_duration)s
returning w.id, w.disabled_reason;

-- name: release_leases
update outbox.delivery
set lease_until = null, leased_by = null
where id = any(%(delivery_ids)s) and leased_by = %(relay_id)s and state = 'pending';

-- ---------------------------------------------------------------------------------------------
-- retention (relay housekeeping and `outbox prune`): small batches, each its own transaction

-- name: prune_deliveries
-- Finished deliveries past retention (dead ones are kept longer); their attempts go with them.
with doomed as (
    select id from outbox.delivery
    where (state = 'delivered' and finished_at < now() - %(retention)s)
       or (state = 'dead' and finished_at < now() - %(dead_retention)s)
    order by finished_at
    limit %(batch)s
)
delete from outbox.delivery d using doomed where d.id = doomed.id;

-- name: prune_events
-- Events past retention that no delivery refers to any more; their payloads go with them.
with doomed as (
    select e.id from outbox.event e
    where e.created_at < now() - %(retention)s
      and not exists (select 1 from outbox.delivery d where d.event_id = e.id)
    order by e.created_at
    limit %(batch)s
)
delete from outbox.event e using doomed where e.id = doomed.id;

-- name: prune_detached_tasks
-- Tasks the Data Manager detached but never deleted.
delete from outbox.detached_task where detached_at < now() - %(retention)s;

-- name: prune_relays
-- Relays that stopped without saying goodbye (killed, or their host died).
delete from outbox.relay where heartbeat_at < now() - interval '10 minutes';

-- ---------------------------------------------------------------------------------------------
-- relay: emitted events (relay/emitted.py; outbox.emit and outbox.run_webhook, sql/0007_actions.sql)

-- name: take_emitted
-- The events emitted by the transactions whose markers routing took, with what sizing their
-- bodies needs: the payload's size (measured by the emitting transaction) and the project's.
select x.event_id, x.xid::text as xid, e.action, e.organization_id, e.project_id, x.webhook_id, x.size,
       (select octet_length(to_jsonb(r)::text)::bigint from public.project r where r.id = e.project_id)
           as project_bytes
from outbox.emitted x
join outbox.event e on e.id = x.event_id
where x.xid = any (%(xids)s::text[]::xid8[])
order by x.event_id;

-- name: route_emitted
-- Emitted events, routed: one payload row each for those some webhook wants the body of (one
-- too large to send carries its error instead, and is never built), deliveries to the webhooks
-- they matched, and the events no webhook gets are forgotten, like changes nobody subscribed to.
with input as (
    select *
    from unnest(%(event_ids)s::bigint[], %(needs_payload)s::boolean[], %(sizes)s::bigint[],
                %(errors)s::text[]) as i(event_id, needs_payload, size_estimate, error)
),
targets as (
    select * from unnest(%(target_events)s::bigint[], %(target_webhooks)s::integer[])
        with ordinality as t(event_id, webhook_id, n)
),
payloads as (
    insert into outbox.payload (event_id, chunk, ready_at, built_at, row_start, row_end, size_estimate, error)
    select i.event_id, 0, now() + %(settle)s, case when i.error is not null then now() end, 0, 0,
           i.size_estimate, i.error
    from input i
    where i.needs_payload
),
deliveries as (
    insert into outbox.delivery (event_id, chunk, webhook_id, project_id, next_attempt_at)
    select t.event_id, 0, t.webhook_id, e.project_id, now() + %(settle)s
    from targets t
    join outbox.event e on e.id = t.event_id
    order by t.n
)
delete from outbox.event e
where e.id = any (%(event_ids)s::bigint[]) and e.id <> all (%(target_events)s::bigint[]);

-- name: fetch_emitted
-- The stored payloads of emitted events about to be built, as JSON text (passed into the body
-- unparsed).
select event_id, payload_key, payload::text as payload
from outbox.emitted
where event_id = any (%(event_ids)s::bigint[]);

-- ---------------------------------------------------------------------------------------------
-- application code: outbox.emit and friends on the caller's connection (outbox/emit.py). Plain
-- positional parameters, the one style psycopg, psycopg2 and Django's cursors all take.

-- name: emit
select outbox.emit(%s, %s, %s, %s::jsonb);

-- name: run_webhook
select outbox.run_webhook(%s, %s, %s::jsonb, %s);

-- name: active_webhooks
select webhook_id, webhook_project_id, url, send_payload from outbox.active_webhooks(%s, %s, %s);

-- name: emit_for
select outbox.emit_for(%s, %s::integer[], %s);

-- ---------------------------------------------------------------------------------------------
-- backfill (outbox/admin/backfill.py): existing rows sent to one webhook, chunked like imports

-- name: backfill_tasks
-- A project's tasks created since a time (all without one), in id order, with the size estimate
-- take_changes computes for a task of an import (keep the two alike), and the project's.
select t.id,
       octet_length(t.data::text)::bigint + coalesce(octet_length(t.meta::text), 0)
           + 11 * (select count(*) from public.task_comment_authors ca where ca.task_id = t.id) as bytes,
       (select octet_length(to_jsonb(r)::text)::bigint from public.project r where r.id = %(project_id)s)
           as project_bytes
from public.task t
where t.project_id = %(project_id)s
  and (%(since)s::timestamptz is null or t.created_at >= %(since)s::timestamptz)
order by t.id;
