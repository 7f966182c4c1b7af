-- Conversations, their messages, per-agent state and resumable workflow state (src/memory).
-- Tenant tables under the scale-out rules: tenant_id leads every key and foreign key, ids are
-- UUIDv7 (or the caller's, for conversations), row-level security confines each request.

CREATE TABLE conversations (
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id            text NOT NULL,
    user_id       text NOT NULL,
    title         text,
    channel       text,
    assistant     text,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Whether new messages are embedded (null: the tenant's setting `embed_messages`).
    embed_messages boolean,
    -- Messages get consecutive numbers under this row's lock, so the order of `seq` is the
    -- order of commits and a reader paging by `seq` sees every message exactly once.
    message_count bigint NOT NULL DEFAULT 0,
    last_seq      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX conversations_user ON conversations (tenant_id, user_id, created_at DESC, id);
CREATE INDEX conversations_updated ON conversations (updated_at);

CREATE TABLE messages (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id text NOT NULL,
    seq             bigint NOT NULL,
    id              uuid NOT NULL DEFAULT uuidv7(),
    user_id         text NOT NULL,
    role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content         text NOT NULL,
    agent_name      text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    token_count     int CHECK (token_count >= 0),
    cost_usd        numeric CHECK (cost_usd >= 0),
    rating          int CHECK (rating BETWEEN -100 AND 100),
    -- The served model's vector of `content` when embedding is on (any dimension: searches
    -- scan one conversation's or one user's messages exactly, by index on those columns).
    embedding       vector,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_id, seq),
    CONSTRAINT messages_id_key UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX messages_user ON messages (tenant_id, user_id, created_at);

CREATE TABLE agent_states (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id text NOT NULL,
    agent_name      text NOT NULL,
    state           jsonb NOT NULL CHECK (jsonb_typeof(state) = 'object'),
    workflow_step   text,
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_id, agent_name),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE workflows (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id text NOT NULL,
    workflow_type   text NOT NULL,
    current_step    text NOT NULL,
    state           jsonb NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE workflow_history (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id text NOT NULL,
    version         bigint NOT NULL,
    workflow_type   text NOT NULL,
    current_step    text NOT NULL,
    state           jsonb NOT NULL,
    saved_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_id, version),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conversations', 'messages', 'agent_states', 'workflows', 'workflow_history'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = onebase_current_tenant()) '
                       'WITH CHECK (tenant_id = onebase_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO onebase_app', t);
    END LOOP;
END $$;

-- Long-term memories, scoped to a user, an agent and/or a run (at least one). A near-duplicate
-- in the same scope updates the memory instead of adding one. Vectors are searched exactly
-- within a scope (the scope's index narrows first), so one user's search does not slow down as
-- other users' memories grow.
CREATE TABLE memories (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT uuidv7(),
    user_id      text,
    agent_id     text,
    run_id       text,
    content      text NOT NULL,
    content_hash bytea NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding    vector NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK (user_id IS NOT NULL OR agent_id IS NOT NULL OR run_id IS NOT NULL)
);
CREATE INDEX memories_user ON memories (tenant_id, user_id, created_at DESC, id DESC) WHERE user_id IS NOT NULL;
CREATE INDEX memories_agent ON memories (tenant_id, agent_id, created_at DESC, id DESC) WHERE agent_id IS NOT NULL;
CREATE INDEX memories_run ON memories (tenant_id, run_id, created_at DESC, id DESC) WHERE run_id IS NOT NULL;
CREATE INDEX memories_expires ON memories (expires_at) WHERE expires_at IS NOT NULL;

-- Every add, update and delete of a memory, with the old and new content. Kept after the
-- memory is deleted (erasure of a user removes it too, by user_id).
CREATE TABLE memory_history (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT uuidv7(),
    memory_id    uuid NOT NULL,
    user_id      text,
    event        text NOT NULL CHECK (event IN ('add', 'update', 'delete')),
    old_content  text,
    new_content  text,
    old_metadata jsonb,
    new_metadata jsonb,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX memory_history_memory ON memory_history (tenant_id, memory_id, created_at);
CREATE INDEX memory_history_user ON memory_history (tenant_id, user_id) WHERE user_id IS NOT NULL;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'memory_history'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = onebase_current_tenant()) '
                       'WITH CHECK (tenant_id = onebase_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO onebase_app', t);
    END LOOP;
END $$;
