-- Which of Label Studio's own webhooks (its table public.webhook) `outbox webhooks adopt` copied
-- into outbox.webhook. Kept when the copy is deleted (webhook_id becomes null), so adopting again
-- never brings back a webhook someone removed on purpose; no foreign key to Label Studio's table,
-- which Label Studio deletes from freely.
create table outbox.adopted_webhook (
    label_studio_webhook_id integer primary key,
    webhook_id              integer unique references outbox.webhook (id) on delete set null,
    adopted_at              timestamptz not null default now()
);
