-- outbox.wake() in PL/pgSQL. The capture triggers call it once per statement of Label Studio's;
-- written in SQL, PostgreSQL before 18 plans it again on every call (measured on 15: 40-50 µs of a
-- single-row INSERT's ~90 µs of trigger time), where PL/pgSQL keeps its plan for the session
-- (~10 µs). Same rule: NOTIFY only while some live relay waits.
create or replace function outbox.wake() returns void
language plpgsql as $$
begin
    if exists (select from outbox.relay
               where waiting and heartbeat_at > now() - interval '1 minute') then
        perform pg_notify('outbox', '');
    end if;
end
$$;
