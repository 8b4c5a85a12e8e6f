-- outbox.active_webhooks (Label Studio's get_active_webhooks, sql/0007_actions.sql) predates the
-- opt-in actions of 0011: it listed every send_for_all_actions webhook for TASK_LABELED and
-- PREDICTIONS_CREATED, which the relay never sends them (relay/routing.py). Application code that
-- asks "who would get this" before building something must hear the relay's answer.
create or replace function outbox.active_webhooks(organization_id integer, action text, project_id integer default null)
returns table (webhook_id integer, webhook_project_id integer, url text, send_payload boolean)
language plpgsql stable as $$
declare
    registered outbox.action%rowtype;
begin
    select * into registered from outbox.action a where a.name = active_webhooks.action;
    if not found then
        raise exception 'outbox.active_webhooks: unknown action "%"', left(coalesce(action, 'NULL'), 100)
            using errcode = 'invalid_parameter_value';
    end if;
    return query
        select w.id, w.project_id, w.url, w.send_payload
        from outbox.webhook w
        where w.is_active and w.organization_id = active_webhooks.organization_id
          and (w.project_id is null
               or (w.project_id = active_webhooks.project_id and not registered.organization_only))
          and ((w.send_for_all_actions and not registered.opt_in) or active_webhooks.action = any (w.actions))
        order by w.id;
end
$$;

-- Opt-in is for outbox's own actions, whose routing knows them (relay/actions.py OPT_IN): a custom
-- action marked opt_in would be hidden from /api/webhooks/info/ yet still go to send_for_all_actions
-- webhooks. Custom actions are sent as Label Studio sends its own: to every webhook that takes all.
alter table outbox.action add constraint action_opt_in_built_in check (built_in or not opt_in);
