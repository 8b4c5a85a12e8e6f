-- Runs before any migration: outbox attaches to Label Studio's tables, reads two more for payloads
-- and checks subscriptions against organization, so a database without them is refused before
-- anything is changed.
do $$
declare
    missing text;
begin
    select string_agg(t, ', ') into missing
    from unnest(array['project', 'task', 'task_completion', 'prediction', 'task_comment_authors',
                      'organization', 'labels_manager_label', 'labels_manager_labellink',
                      'io_storages_localfilesimportstorage', 'io_storages_localfilesimportstoragelink',
                      'io_storages_s3importstorage', 'io_storages_s3importstoragelink',
                      'io_storages_gcsimportstorage', 'io_storages_gcsimportstoragelink',
                      'io_storages_azureblobimportstorage', 'io_storages_azureblobimportstoragelink',
                      'io_storages_redisimportstorage', 'io_storages_redisimportstoragelink']) t
    where to_regclass('public.' || t) is null;
    if missing is not null then
        raise exception 'outbox: Label Studio table(s) not found in schema public: %', missing
            using hint = 'Point DATABASE_URL at the Label Studio database (after its own migrations ran).';
    end if;
end
$$;
