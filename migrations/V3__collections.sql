-- Collections: the registry of a tenant's document collections.
--
-- A collection's documents and chunks live in two tables of their own, created with it in the
-- tenant's schema (tenant_<tenant id, 32 hex>): docs_<collection id> and chunks_<collection id>
-- (see src/knowledge/ddl.rs). One table per collection gives each its typed vector(dim) column,
-- its own HNSW or IVFFlat index and text-search language; one schema per tenant is the unit a
-- later move to Citus' schema-based sharding distributes.
--
-- Citus-ready: tenant_id leads every primary key and unique constraint, ids are UUIDv7.
CREATE TABLE collections (
    tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT uuidv7(),
    name           text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    description    text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    -- The embedding model (onebase embeds text), or NULL for bring-your-own vectors.
    model          text,
    -- NULL until the first write, for bring-your-own collections created without one.
    dimension      int CHECK (dimension BETWEEN 1 AND 2000),
    distance       text NOT NULL CHECK (distance IN ('cosine', 'l2', 'ip')),
    index_config   jsonb NOT NULL,
    text_language  text NOT NULL,
    chunking       jsonb NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    document_count bigint NOT NULL DEFAULT 0,
    chunk_count    bigint NOT NULL DEFAULT 0,
    -- Bytes of document text and metadata, the measure of tenants.max_storage_bytes.
    stored_bytes   bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

ALTER TABLE collections ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON collections
    USING (tenant_id = onebase_current_tenant()) WITH CHECK (tenant_id = onebase_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON collections TO onebase_app;
