-- Tenants, API keys, users and the audit log, isolated by row-level security.
--
-- How isolation works (see src/db/scope.rs): a request's transaction sets the tenant with
-- set_config('onebase.tenant_id', <uuid>, true) and then SET LOCAL ROLE onebase_app. That role
-- is neither superuser nor owner of these tables and has no BYPASSRLS, so every policy below
-- applies to it. With no tenant set, current_setting(..., true) is NULL or '' and the policies
-- match no rows: a forgotten tenant yields nothing, never everything.
--
-- Rule for every later migration: a table with a tenant_id column gets
--   tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
--   ENABLE ROW LEVEL SECURITY and a tenant_isolation policy like the ones here.
-- A test (tests/api/tenancy.rs) fails when a table breaks this rule.

-- Roles are cluster-wide: several databases (and concurrent test databases) share them.
DO $$
BEGIN
    CREATE ROLE onebase_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- The connecting user switches to onebase_app per transaction, so it must be a member.
DO $$
BEGIN
    EXECUTE format('GRANT onebase_app TO %I', current_user);
EXCEPTION WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN
    NULL;
END
$$;

-- The current request's tenant, or NULL when none is set.
CREATE FUNCTION onebase_current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('onebase.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    settings          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    max_documents     bigint CHECK (max_documents >= 0),
    max_storage_bytes bigint CHECK (max_storage_bytes >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '' CHECK (char_length(name) <= 200),
    -- The visible part of the key ("ob_<prefix>_..."), for listing and logs.
    prefix       text NOT NULL UNIQUE,
    -- SHA-256 of the whole key; the key itself is shown once and never stored.
    secret_hash  bytea NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('owner', 'writer', 'reader')),
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email         text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'writer', 'reader')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are stored lower-cased; one account per email per tenant.
CREATE UNIQUE INDEX users_tenant_email_key ON users (tenant_id, email);

CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    actor_type    text NOT NULL CHECK (actor_type IN ('api_key', 'user', 'admin', 'system')),
    actor_id      text NOT NULL,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text,
    request_id    text,
    outcome       text NOT NULL DEFAULT 'success',
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, id DESC);

-- Server-wide audit (admin actions that outlive a tenant, such as deleting it). Not tenant-owned:
-- only the server's own role reads it.
CREATE TABLE admin_audit_log (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE admin_audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
ALTER TABLE admin_audit_log ADD PRIMARY KEY (id);
ALTER TABLE admin_audit_log ALTER COLUMN tenant_id DROP NOT NULL;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenants
    USING (id = onebase_current_tenant()) WITH CHECK (id = onebase_current_tenant());
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = onebase_current_tenant()) WITH CHECK (tenant_id = onebase_current_tenant());
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = onebase_current_tenant()) WITH CHECK (tenant_id = onebase_current_tenant());
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = onebase_current_tenant()) WITH CHECK (tenant_id = onebase_current_tenant());

GRANT USAGE ON SCHEMA public TO onebase_app;
GRANT SELECT, UPDATE ON tenants TO onebase_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO onebase_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users TO onebase_app;
GRANT SELECT, INSERT ON audit_log TO onebase_app;
GRANT EXECUTE ON FUNCTION onebase_current_tenant() TO onebase_app;
