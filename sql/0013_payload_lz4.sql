-- Payload bodies are compressed with lz4 instead of pglz where the server has it. Bodies are JSON of
-- a few KB each (a Label Studio project object alone is ~4 KB), inserted by the thousand while an
-- import is routed: pglz spent 43 ms compressing 1,000 bodies of 4.5 KB here, lz4 11 ms, for about
-- the same size on disk (storing them uncompressed took 30 ms and ten times the space). Values
-- already stored keep their compression; PostgreSQL before 14, or built without lz4, keeps pglz.
do $$
begin
    if current_setting('server_version_num')::integer >= 140000 then
        begin
            execute 'alter table outbox.payload alter column body set compression lz4';
        exception when feature_not_supported then
            null;
        end;
    end if;
end
$$;
