-- Values plain SQL could store in outbox.webhook that no relay or listing can use: a timestamp of
-- 'infinity' (Python's datetime cannot hold it: every listing of every webhook failed), and a
-- retry_schedule that is not a flat list of seconds (a 2-D array, or one with NULL steps, passed
-- the old check; the relay could not use it up, so such a delivery was retried forever).
-- Rows stored before are mended first: an endless grace of a rotated secret becomes the latest
-- date a listing can show, other infinite timestamps become now, a bad schedule the default.

lock table outbox.webhook in share row exclusive mode;

update outbox.webhook set previous_secret_expires_at = '9999-12-31 00:00:00+00'
where previous_secret_expires_at = 'infinity';
update outbox.webhook set previous_secret_expires_at = null
where previous_secret_expires_at = '-infinity';
update outbox.webhook set disabled_at = now() where not isfinite(disabled_at);
update outbox.webhook set created_at = now() where not isfinite(created_at);
update outbox.webhook set updated_at = now() where not isfinite(updated_at);
update outbox.webhook set retry_schedule = null
where retry_schedule is not null
  and (array_ndims(retry_schedule) <> 1 or array_position(retry_schedule, null) is not null);

alter table outbox.webhook
    add constraint webhook_timestamps_finite check (
        isfinite(created_at) and isfinite(updated_at)
        and (previous_secret_expires_at is null or isfinite(previous_secret_expires_at))
        and (disabled_at is null or isfinite(disabled_at))),
    add constraint webhook_retry_schedule_flat check (
        array_ndims(retry_schedule) = 1 and array_position(retry_schedule, null) is null);
