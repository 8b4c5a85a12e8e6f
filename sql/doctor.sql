-- `outbox doctor` (outbox/doctor.py): one read-only query per check, on an autocommit connection.
-- Thresholds are parameters; the judgement (healthy or not, and what to do) is made in Python.

-- name: server_version
select current_setting('server_version') as version;

-- name: outbox_installed
select to_regclass('outbox.schema_migrations') is not null as installed;

-- name: capture_triggers
-- outbox's triggers on Label Studio's tables, with pg_trigger.tgenabled: O fires (origin and
-- local sessions), D is disabled, R fires only in replica sessions, A always.
select n.nspname as schema, c.relname as table_name, t.tgname as name, t.tgenabled as enabled
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
join pg_namespace n on n.oid = c.relnamespace
where not t.tgisinternal and t.tgname like 'outbox\_%' and n.nspname = 'public';

-- name: relays
select id::text as id, hostname, pid, version,
       extract(epoch from now() - heartbeat_at)::float8 as silent_seconds
from outbox.relay
order by heartbeat_at desc;

-- name: unrouted_changes
-- Captured changes no relay has turned into events yet: how far behind routing is.
select count(*) as count,
       coalesce(extract(epoch from now() - min(captured_at)), 0)::float8 as oldest_seconds
from outbox.change;

-- name: due_deliveries
-- Pending deliveries due now on active webhooks (paused ones wait on purpose): how far behind
-- sending is, by the one due the longest.
select count(*) as count,
       coalesce(extract(epoch from now() - min(d.next_attempt_at)), 0)::float8 as overdue_seconds,
       coalesce(extract(epoch from now() - min(d.created_at)), 0)::float8 as oldest_seconds
from outbox.delivery d
join outbox.webhook w on w.id = d.webhook_id
where d.state = 'pending' and d.next_attempt_at <= now() and w.is_active;

-- name: dead_deliveries
select count(*) as count, count(distinct webhook_id) as webhooks, min(webhook_id) as first_webhook
from outbox.delivery
where state = 'dead';

-- name: disabled_webhooks
-- Webhooks outbox disabled itself (paused ones have no reason and are not a problem).
select id, disabled_reason as reason
from outbox.webhook
where not is_active and disabled_reason is not null
order by id;

-- name: notification_queue
select pg_notification_queue_usage()::float8 as usage;

-- name: long_transactions
-- Sessions of this database whose transaction holds back the xmin horizon (an xid or a snapshot)
-- for longer than the threshold: VACUUM cannot remove what they might still see, outbox's own
-- pruned rows included. Other roles' sessions need pg_read_all_stats to be seen.
select pid, usename as role, application_name, state,
       extract(epoch from now() - xact_start)::float8 as seconds
from pg_stat_activity
where datname = current_database()
  and pid <> pg_backend_pid()
  and xact_start < now() - make_interval(secs => %(seconds)s)
  and (backend_xid is not null or backend_xmin is not null)
order by xact_start
limit 5;

-- name: webhooks_without_project
-- Project webhooks whose project Label Studio deleted: they can never receive anything again.
select w.id, w.project_id
from outbox.webhook w
where w.project_id is not null
  and not exists (select from public.project p where p.id = w.project_id)
order by w.id;
