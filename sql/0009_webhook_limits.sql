-- The limits the admin API and the CLI hold a webhook to (outbox/admin/models.py), held by the
-- database too, so a webhook written with plain SQL cannot be one the API would refuse:
-- tests/integration/test_rules_agree.py runs one table of cases through both. Rows stored before
-- are brought within the limits first.

lock table outbox.webhook in share row exclusive mode;

update outbox.webhook set timeout = 0.1 where timeout < 0.1;
update outbox.webhook set rate_limit = least(greatest(rate_limit, 0.01), 10000)
where rate_limit < 0.01 or rate_limit > 10000;
update outbox.webhook
set retry_schedule = array(select least(s, 2592000) from unnest(retry_schedule) with ordinality as u(s, n)
                           order by n)
where 2592000 < any (retry_schedule);

alter table outbox.webhook
    add constraint webhook_timeout_at_least_100ms check (timeout >= 0.1),
    add constraint webhook_rate_limit_range check (rate_limit between 0.01 and 10000),
    -- 30 days: the longest a single retry may wait
    add constraint webhook_retry_delays_at_most_30_days check (2592000 >= all (retry_schedule));
