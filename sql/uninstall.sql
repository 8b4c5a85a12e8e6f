-- Removes everything outbox attached to Label Studio's tables (the triggers of capture.sql and their
-- functions). Subscriptions, events and deliveries stay in schema outbox unless --drop-data is given.
-- It also runs first whenever capture.sql is (re-)applied, in the same transaction.

-- Every lock on Label Studio's tables, first, in one statement: waiting for them (behind a long
-- import, say) is then the one statement that `outbox migrate`/`uninstall` run with a short
-- lock_timeout, retry and report, so Label Studio's own writes never queue behind it for longer.
-- task and task_completion first: long Label Studio transactions hold them, and waiting on the
-- first table of the list holds nothing yet that such a transaction could need at its commit.
lock table public.task, public.task_completion, public.project, public.prediction,
    public.labels_manager_labellink,
    public.io_storages_localfilesimportstorage, public.io_storages_localfilesimportstoragelink,
    public.io_storages_s3importstorage, public.io_storages_s3importstoragelink,
    public.io_storages_gcsimportstorage, public.io_storages_gcsimportstoragelink,
    public.io_storages_azureblobimportstorage, public.io_storages_azureblobimportstoragelink,
    public.io_storages_redisimportstorage, public.io_storages_redisimportstoragelink
    in access exclusive mode;
drop trigger if exists outbox_insert on public.project;
drop trigger if exists outbox_update on public.project;
drop trigger if exists outbox_delete on public.project;
drop trigger if exists outbox_insert on public.task;
drop trigger if exists outbox_delete on public.task;
drop trigger if exists outbox_detach on public.task;
drop trigger if exists outbox_insert on public.task_completion;
drop trigger if exists outbox_update on public.task_completion;
drop trigger if exists outbox_delete on public.task_completion;
drop trigger if exists outbox_labeled on public.task;
drop trigger if exists outbox_insert on public.labels_manager_labellink;
drop trigger if exists outbox_update on public.labels_manager_labellink;
drop trigger if exists outbox_delete on public.labels_manager_labellink;
drop trigger if exists outbox_insert on public.prediction;
drop trigger if exists outbox_insert on public.io_storages_localfilesimportstoragelink;
drop trigger if exists outbox_synced on public.io_storages_localfilesimportstorage;
drop trigger if exists outbox_insert on public.io_storages_s3importstoragelink;
drop trigger if exists outbox_synced on public.io_storages_s3importstorage;
drop trigger if exists outbox_insert on public.io_storages_gcsimportstoragelink;
drop trigger if exists outbox_synced on public.io_storages_gcsimportstorage;
drop trigger if exists outbox_insert on public.io_storages_azureblobimportstoragelink;
drop trigger if exists outbox_synced on public.io_storages_azureblobimportstorage;
drop trigger if exists outbox_insert on public.io_storages_redisimportstoragelink;
drop trigger if exists outbox_synced on public.io_storages_redisimportstorage;
drop function if exists outbox.capture_rows();
drop function if exists outbox.capture_row();
drop function if exists outbox.capture_storage_link();
drop function if exists outbox.capture_storage_synced();
drop function if exists outbox.capture_project();
drop function if exists outbox.capture_task();
drop function if exists outbox.capture_task_detach();
drop function if exists outbox.capture_annotation();
