-- Background jobs: imports, merges of freshly written vectors into a collection's ANN index,
-- reindexing, re-embedding and the server's periodic sweeps, all on one machinery
-- (src/jobs). Workers claim a job with FOR UPDATE SKIP LOCKED, heartbeat it while they run it,
-- and write its checkpoint in the same transaction as the work the checkpoint covers, so a job
-- whose worker died (its heartbeat went stale) is resumed by another worker from that point.
--
-- tenant_id is NULL only for the server's own periodic work (sweeps), which no tenant sees.
-- That is why it cannot lead the primary key as it does elsewhere; under Citus' schema-based
-- sharding this table stays on the coordinator with the other tables of `public`.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY DEFAULT uuidv7(),
    tenant_id        uuid REFERENCES tenants(id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('import', 'merge', 'reindex', 'reembed', 'sweep')),
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('receiving', 'queued', 'running', 'completed', 'failed', 'cancelled')),
    -- The collection the job works on (no foreign key: a job outlives its collection's deletion
    -- and then fails, or is cancelled with it).
    collection_id    uuid,
    collection_name  text,
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    checkpoint       jsonb NOT NULL DEFAULT '{}'::jsonb,
    done             bigint NOT NULL DEFAULT 0,
    total            bigint,
    -- Per-record problems (an import's skipped lines), at most 100 kept.
    errors           jsonb NOT NULL DEFAULT '[]'::jsonb,
    error_count      bigint NOT NULL DEFAULT 0,
    error            text,
    error_code       text,
    cancel_requested boolean NOT NULL DEFAULT false,
    attempts         int NOT NULL DEFAULT 0,
    worker           text,
    heartbeat_at     timestamptz,
    run_after        timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- What workers look for.
CREATE INDEX jobs_claimable ON jobs (run_after) WHERE state IN ('queued', 'running', 'receiving');
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC, id DESC);
-- At most one queued merge (or sweep) per collection: writers enqueue with ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX jobs_one_queued_merge ON jobs (collection_id, kind) NULLS NOT DISTINCT
    WHERE state = 'queued' AND kind IN ('merge', 'sweep');

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs
    USING (tenant_id = onebase_current_tenant()) WITH CHECK (tenant_id = onebase_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO onebase_app;

-- Collections: the layout of their chunk tables. Layout 2 partitions chunks into `main` (the
-- ANN index) and `pending` (freshly written rows, scanned exactly until a merge job moves them
-- into main). Collections created before this migration are converted at startup.
ALTER TABLE collections ADD COLUMN layout int NOT NULL DEFAULT 1;
ALTER TABLE collections ALTER COLUMN layout SET DEFAULT 2;
