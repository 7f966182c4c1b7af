-- Citus-ready keys for the two tenant tables of V2 keyed by id alone (checked by
-- tests/api/citus.rs). Their rows belong to one tenant, so Citus would distribute them by
-- tenant_id, and it enforces a primary key only when the key contains that column. tenant_id
-- joins each key in front, as in every table since V3; the ids themselves stay unique (an
-- identity sequence, random uuids), so no existing row conflicts and no lookup changes meaning.
--
-- The global tables of V2 and V4 keep their keys: api_keys (looked up by secret_hash before the
-- tenant is known: a reference table), admin_audit_log and jobs (server-wide, tenant_id NULL
-- for the server's own rows: tables of the coordinator).

-- audit_log: written by INSERT only (no ON CONFLICT), read by the tenant's listing
-- (WHERE tenant_id = <the request's tenant> ORDER BY id DESC, paged by id < cursor) and swept
-- by age. The new key serves the listing read backwards, exactly as audit_log_tenant_idx
-- (tenant_id, id DESC) did, so that index would only be a second copy to write on every
-- audited request: it goes.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey, ADD PRIMARY KEY (tenant_id, id);
DROP INDEX audit_log_tenant_idx;

-- users: looked up by (id, tenant_id) from an access token, by id in the token's tenant
-- transaction (row-level security adds the tenant), and by email at login (users_tenant_email_key,
-- already led by tenant_id). No foreign key references users.
ALTER TABLE users DROP CONSTRAINT users_pkey, ADD PRIMARY KEY (tenant_id, id);
