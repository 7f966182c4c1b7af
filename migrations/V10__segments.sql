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

-- The text statistics' trigger takes the collection's text configuration as a second argument:
-- PostgreSQL leaves a generated column NULL in the transition rows of an insert routed to a
-- partition whose columns are laid out unlike the parent's (a segment created after a re-embed
-- dropped a column: measured on 18.6), and the trigger then computes the tsvector from the text.
-- Triggers with one argument (before their collection is converted) read `tsv` as before.
CREATE OR REPLACE FUNCTION onebase_text_stats() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    delta constant text := $q$
        INSERT INTO %1$s (tenant_id, lexeme, chunks, tokens)
        SELECT tenant_id, lexeme, %2$s count(*), 0 FROM %3$s, unnest(tsv) GROUP BY 1, 2
        UNION ALL
        SELECT tenant_id, '', %2$s count(*), %2$s coalesce(sum(length(tsv)), 0) FROM %3$s GROUP BY 1$q$;
    tsv text := 'tsv';
    rows_of constant text := $q$(SELECT tenant_id, document_id, chunk_index, %2$s AS tsv FROM %1$s)$q$;
    changed constant text := $q$(SELECT %1$s.tenant_id, %1$s.tsv FROM %2$s
        JOIN %3$s USING (tenant_id, document_id, chunk_index) WHERE o.tsv IS DISTINCT FROM n.tsv) c$q$;
BEGIN
    IF TG_NARGS > 1 THEN
        tsv := format('coalesce(tsv, to_tsvector(%L::regconfig, text))', TG_ARGV[1]);
    END IF;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(delta, TG_ARGV[0], '', format(rows_of, 'new_rows', tsv) || ' r');
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(delta, TG_ARGV[0], '-', format(rows_of, 'old_rows', tsv) || ' r');
    ELSE
        EXECUTE format(delta, TG_ARGV[0], '-',
            format(changed, 'o', format(rows_of, 'old_rows', tsv) || ' o', format(rows_of, 'new_rows', tsv) || ' n'));
        EXECUTE format(delta, TG_ARGV[0], '',
            format(changed, 'n', format(rows_of, 'old_rows', tsv) || ' o', format(rows_of, 'new_rows', tsv) || ' n'));
    END IF;
    RETURN NULL;
END
$fn$;
