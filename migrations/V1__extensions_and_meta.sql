-- onebase base schema.
-- The extensions every data plane relies on: pgvector for embeddings, pg_trgm for fuzzy text
-- matching, btree_gist for exclusion constraints mixing scalars and ranges.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Facts about this installation (one row per key), e.g. when it was created.
CREATE TABLE onebase_meta (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO onebase_meta (key, value)
VALUES ('installation', jsonb_build_object('id', gen_random_uuid(), 'created_at', now()));
