-- Chunks bounded by bytes as well as rows: each payload row now says which of its event's rows it
-- holds, how big its body is estimated to be, and, when the body would be refused for its size,
-- why it is not built (its deliveries are then dead at once, the other chunks still go out).
-- Until now a chunk was rows [chunk * chunk_size, (chunk + 1) * chunk_size) of its event: one
-- 20 MB task made its whole 5,000-task chunk too large, and a 1 GB chunk could not even be stored.

alter table outbox.payload
    -- rows [row_start, row_end) of the event's row_ids (0-based)
    add column row_start     integer,
    add column row_end       integer,
    -- bytes the body is estimated to take (relay/chunks.py), so bodies are built in bounded memory
    add column size_estimate bigint,
    -- set instead of a body when the body would be over OUTBOX_MAX_BODY_BYTES
    add column error         text;

update outbox.payload p
set row_start = p.chunk * e.chunk_size,
    row_end = least((p.chunk + 1) * e.chunk_size, greatest(cardinality(e.row_ids), 1))
from outbox.event e
where e.id = p.event_id;

alter table outbox.payload
    alter column row_start set not null,
    alter column row_end set not null,
    add constraint payload_rows_valid check (0 <= row_start and row_start <= row_end);
