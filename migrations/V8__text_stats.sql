-- BM25 ranks a collection's chunks by the statistics of its text: how many chunks hold each term
-- (document frequency), how many chunks there are, and their total length (in
-- distinct terms: `length(tsv)`, which PostgreSQL reads from the tsvector's header). Each collection keeps
-- them in its own table (`terms_<collection>`, beside its chunks, see src/knowledge/ddl.rs),
-- written by these triggers in the same transaction as the chunk rows, so a search never sees
-- counts that disagree with the rows it reads. They are append-only deltas, one row per term and
-- statement: two concurrent writers never update the same row (a counter row per common term
-- would serialize every write of the collection). Searches sum them; the collection's merge job
-- compacts them.

-- A UUIDv7 (time-ordered) for the statistics' delta rows: PostgreSQL 18 has uuidv7(), but an
-- external PostgreSQL 17 (the compose file's) does not; this builds one from gen_random_uuid()
-- with the millisecond timestamp in its first 48 bits and the version bits set.
CREATE FUNCTION onebase_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN encode(
    set_bit(set_bit(
        overlay(uuid_send(gen_random_uuid())
                placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6),
        52, 1), 53, 1),
    'hex')::uuid;

-- Statement-level, with transition tables (PostgreSQL allows one event per such trigger, so a
-- collection has three). TG_ARGV[0] is the statistics table, a name the server built from UUIDs.
-- An UPDATE counts only rows whose text changed: a merge moving rows between partitions, or a
-- re-embed, changes none.
CREATE FUNCTION onebase_text_stats() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    delta constant text := $q$
        INSERT INTO %1$s (tenant_id, lexeme, chunks, tokens)
        SELECT tenant_id, lexeme, %2$s count(*), 0 FROM %3$s, unnest(tsv) GROUP BY 1, 2
        UNION ALL
        SELECT tenant_id, '', %2$s count(*), %2$s sum(length(tsv)) FROM %3$s GROUP BY 1$q$;
    changed constant text := $q$(SELECT %1$s.tenant_id, %1$s.tsv FROM old_rows o
        JOIN new_rows n USING (tenant_id, document_id, chunk_index) WHERE o.tsv IS DISTINCT FROM n.tsv) c$q$;
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(delta, TG_ARGV[0], '', 'new_rows');
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(delta, TG_ARGV[0], '-', 'old_rows');
    ELSE
        EXECUTE format(delta, TG_ARGV[0], '-', format(changed, 'o'));
        EXECUTE format(delta, TG_ARGV[0], '', format(changed, 'n'));
    END IF;
    RETURN NULL;
END
$fn$;

-- Layout 3: layout 2 with the text statistics table and its triggers (existing collections are
-- converted at startup, src/knowledge/upgrade.rs).
ALTER TABLE collections ALTER COLUMN layout SET DEFAULT 3;
