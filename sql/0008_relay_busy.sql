-- Other relays' requests in flight, for max_concurrency, are read from what each relay publishes
-- with its claims (outbox.relay.busy, per webhook), no longer counted from the leased deliveries:
-- that count walked the partial index delivery_leased, where every delivered row leaves a dead
-- entry until vacuum (4.9 ms of a 6 ms claim in the middle of a 20,000-event drain). Without that
-- index no index covers lease_until or leased_by, so a claim's UPDATE of a delivery can be a HOT
-- update (the fillfactor leaves room for it on the page): no new entry in the other indexes.
alter table outbox.relay
    add column busy jsonb not null default '{}',
    -- when busy was published: it counts as long as a lease taken then would
    add column busy_at timestamptz;
drop index outbox.delivery_leased;
alter table outbox.delivery set (fillfactor = 80);
