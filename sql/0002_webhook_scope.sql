-- A subscription must name a Label Studio organization and, when it is project-level, a project of
-- that organization: a row naming anything else would be accepted and never fire. The admin API
-- and CLI check this in Python; this trigger makes plain SQL refuse such rows as well.
--
-- A trigger, not a foreign key onto Label Studio's tables: Django deletes projects itself and knows
-- nothing of outbox's rows, so a foreign key would make Label Studio's own deletes fail (or, with
-- ON DELETE, drop the subscription and its delivery log behind the relay's back). The check runs on
-- INSERT and on an UPDATE that changes organization_id or project_id, never otherwise: a webhook
-- whose project is deleted later stays editable, pausable and deletable.
--
-- Messages start with "webhook organization" / "webhook project": the admin API maps a refusal to
-- its field by that prefix.

-- Every lock this migration takes, first, so that waiting for it (behind a long transaction) is
-- one statement that `outbox migrate` can time out, retry and report.
lock table outbox.webhook in access exclusive mode;

create function outbox.check_webhook_scope() returns trigger
language plpgsql as $$
declare
    project_organization integer;
begin
    if tg_op = 'UPDATE' and new.organization_id is not distinct from old.organization_id
       and new.project_id is not distinct from old.project_id then
        return new;
    end if;
    if not exists (select from public.organization o where o.id = new.organization_id) then
        raise exception 'webhook organization % does not exist', new.organization_id
            using errcode = 'check_violation',
                  hint = 'organization_id must be the id of a Label Studio organization (public.organization)';
    end if;
    if new.project_id is not null then
        select p.organization_id into project_organization from public.project p where p.id = new.project_id;
        if not found then
            raise exception 'webhook project % does not exist', new.project_id
                using errcode = 'check_violation',
                      hint = 'project_id must be the id of a Label Studio project (public.project), '
                             'or null for an organization-level webhook';
        end if;
        -- A project without an organization (possible in Label Studio's schema) fits any, as in the API.
        if project_organization <> new.organization_id then
            raise exception 'webhook project % belongs to another organization than %',
                new.project_id, new.organization_id
                using errcode = 'check_violation',
                      hint = 'set organization_id to the project''s own (public.project.organization_id)';
        end if;
    end if;
    return new;
end
$$;

create trigger webhook_scope before insert or update of organization_id, project_id on outbox.webhook
    for each row execute function outbox.check_webhook_scope();
