-- Agent runs with their steps, artifacts and LLM calls (src/runs), and the tool-result cache
-- with its change history (src/cache). Every table is a tenant table under the scale-out rules:
-- tenant_id leads every primary key, unique constraint and foreign key, ids are UUIDv7, and
-- row-level security confines each request to its tenant.

CREATE TABLE runs (
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id               uuid NOT NULL DEFAULT uuidv7(),
    actor            text NOT NULL,
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    request_payload  jsonb NOT NULL,
    autonomy_level   jsonb CHECK (autonomy_level IS NULL OR jsonb_typeof(autonomy_level) IN ('string', 'number')),
    trace_id         text,
    idempotency_key  text,
    -- SHA-256 of the canonical creating request: a replay under the same idempotency key must
    -- carry the same request to be answered with the original run.
    request_hash     bytea NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    error_message    text,
    -- The collection the request payload was indexed into (its document id is the run id).
    indexed_in       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT runs_trace_id_key UNIQUE (tenant_id, trace_id),
    CONSTRAINT runs_idempotency_key_key UNIQUE (tenant_id, idempotency_key)
);
-- The listings: newest first, optionally by actor or status.
CREATE INDEX runs_created ON runs (tenant_id, created_at DESC, id DESC);
CREATE INDEX runs_actor_created ON runs (tenant_id, actor, created_at DESC, id DESC);
CREATE INDEX runs_status_created ON runs (tenant_id, status, created_at DESC, id DESC);

CREATE TABLE llm_calls (
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id                uuid NOT NULL DEFAULT uuidv7(),
    run_id            uuid NOT NULL,
    step_id           uuid,
    -- The run's actor (immutable), kept here so usage by actor needs no join.
    actor             text NOT NULL,
    model             text NOT NULL,
    provider          text NOT NULL,
    prompt_tokens     bigint NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens bigint NOT NULL CHECK (completion_tokens >= 0),
    total_tokens      bigint NOT NULL CHECK (total_tokens >= 0),
    -- Money is exact: NUMERIC, never a float.
    cost_usd          numeric NOT NULL CHECK (cost_usd >= 0),
    latency_ms        bigint NOT NULL CHECK (latency_ms >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    -- What a step's llm_call_id references: a call of the same run.
    CONSTRAINT llm_calls_run_id_key UNIQUE (tenant_id, run_id, id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX llm_calls_created ON llm_calls (tenant_id, created_at);

CREATE TABLE run_steps (
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT uuidv7(),
    run_id        uuid NOT NULL,
    step_number   int NOT NULL CHECK (step_number >= 0),
    node_name     text NOT NULL,
    input_data    jsonb,
    output_data   jsonb,
    status        text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
    started_at    timestamptz,
    completed_at  timestamptz,
    llm_call_id   uuid,
    error_message text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT run_steps_step_number_key UNIQUE (tenant_id, run_id, step_number),
    CONSTRAINT run_steps_run_id_key UNIQUE (tenant_id, run_id, id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT run_steps_llm_call_fkey FOREIGN KEY (tenant_id, run_id, llm_call_id)
        REFERENCES llm_calls (tenant_id, run_id, id) ON DELETE SET NULL (llm_call_id)
);

ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_step_fkey FOREIGN KEY (tenant_id, run_id, step_id)
    REFERENCES run_steps (tenant_id, run_id, id) ON DELETE SET NULL (step_id);

CREATE TABLE run_artifacts (
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT uuidv7(),
    run_id        uuid NOT NULL,
    artifact_type text NOT NULL,
    url           text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX run_artifacts_run ON run_artifacts (tenant_id, run_id, created_at);

-- The tool-result cache: one current entry per (namespace, key).
CREATE TABLE cache_entries (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    namespace    text NOT NULL,
    key          text NOT NULL,
    data         jsonb NOT NULL,
    -- SHA-256 of the canonical JSON of `data` (sorted keys, no whitespace).
    content_hash bytea NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    version      int NOT NULL DEFAULT 1,
    fetched_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    -- When the content last changed (the first store counts as a change).
    changed_at   timestamptz NOT NULL,
    -- Where the entry's text is indexed ({collection, text_field}; its document id is
    -- "<namespace>:<key>"); a later store re-indexes changed data there.
    index_target jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, namespace, key)
);
CREATE INDEX cache_entries_changed ON cache_entries (tenant_id, namespace, changed_at, key);
-- The retention sweep's scan, across tenants.
CREATE INDEX cache_entries_expires ON cache_entries (expires_at);

-- Earlier versions of an entry, appended when its content changes.
CREATE TABLE cache_history (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT uuidv7(),
    namespace    text NOT NULL,
    key          text NOT NULL,
    version      int NOT NULL,
    data         jsonb NOT NULL,
    content_hash bytea NOT NULL,
    metadata     jsonb NOT NULL,
    fetched_at   timestamptz NOT NULL,
    replaced_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX cache_history_key ON cache_history (tenant_id, namespace, key, version DESC);
CREATE INDEX cache_history_replaced ON cache_history (replaced_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['runs', 'llm_calls', 'run_steps', 'run_artifacts', 'cache_entries', 'cache_history'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = onebase_current_tenant()) '
                       'WITH CHECK (tenant_id = onebase_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO onebase_app', t);
    END LOOP;
END $$;
