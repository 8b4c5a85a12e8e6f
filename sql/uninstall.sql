-- Removes everything outbox attached to Label Studio's tables (the triggers of capture.sql and their
-- functions). Subscriptions, events and deliveries stay in schema outbox unless --drop-data is given.
drop trigger if exists outbox_insert on public.project;
drop trigger if exists outbox_update on public.project;
drop trigger if exists outbox_delete on public.project;
drop trigger if exists outbox_insert on public.task;
drop trigger if exists outbox_delete on public.task;
drop trigger if exists outbox_detach on public.task;
drop trigger if exists outbox_insert on public.task_completion;
drop trigger if exists outbox_update on public.task_completion;
drop trigger if exists outbox_delete on public.task_completion;
drop function if exists outbox.capture_project();
drop function if exists outbox.capture_task();
drop function if exists outbox.capture_task_detach();
drop function if exists outbox.capture_annotation();
