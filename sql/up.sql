-- `outbox up` on the embedded server (outbox/up.py), after label_studio_sandbox.sql.

-- name: seed_sandbox
-- The rows every Label Studio database has, on first start only (a user, an organization, a
-- project), so that a first webhook has somewhere to point; later starts find an organization and
-- add nothing (a project deleted since stays deleted). One statement: all of it or none.
with admin as (
    insert into public.htx_user (email, username)
    select 'admin@localhost', 'admin'
    where not exists (select from public.organization)
    returning id
), organization as (
    insert into public.organization (title, created_by_id)
    select 'Sandbox', id from admin
    returning id, created_by_id
)
insert into public.project (title, description, label_config, organization_id, created_by_id)
select 'Sandbox', 'made by outbox up',
       '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
       '<Choice value="yes"/><Choice value="no"/></Choices></View>',
       id, created_by_id
from organization;

-- name: sandbox_project
-- The project the banner's first webhook points at (null when every project was deleted).
select min(id) as id from public.project;
