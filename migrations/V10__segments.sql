-- Layout 4: a collection's chunks are partitioned by `segment` (see src/knowledge/ddl.rs). New
-- rows go to the open segment, which has no HNSW index and is scanned exactly; a merge job seals
-- it (a new open segment takes the writes) and builds its index in one pass, which costs a
-- fraction of inserting the rows into an existing graph one by one; a compaction job rebuilds a
-- tier of sealed segments as one so that a search visits few. Collections of layout 3 are
-- converted at startup (src/knowledge/upgrade.rs).
ALTER TABLE collections ADD COLUMN open_segment int NOT NULL DEFAULT 1;
-- The highest segment number given out (by seals and compactions), so that none is reused.
ALTER TABLE collections ADD COLUMN last_segment int NOT NULL DEFAULT 1;
ALTER TABLE collections ALTER COLUMN layout SET DEFAULT 4;

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('import', 'merge', 'reindex', 'reembed', 'sweep', 'compact'));
DROP INDEX jobs_one_queued_merge;
CREATE UNIQUE INDEX jobs_one_queued_merge ON jobs (collection_id, kind) NULLS NOT DISTINCT
    WHERE state = 'queued' AND kind IN ('merge', 'sweep', 'compact');
