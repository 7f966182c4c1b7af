//! The tables of one collection, in its tenant's schema. Every identifier here is built from
//! UUIDs and validated enums, never from a request's strings.

use uuid::Uuid;

use super::model::{Distance, IndexSpec};

/// Names of a collection's schema and tables, quoted and schema-qualified where used in SQL.
#[derive(Debug, Clone)]
pub struct Tables {
    pub schema: String,
    pub docs: String,
    /// The partitioned chunk table: one partition per segment (see [`create_chunks`]).
    pub chunks: String,
    /// The chunks' text statistics for BM25 (see [`create_text_stats`]).
    pub terms: String,
    chunks_bare: String,
}

impl Tables {
    pub fn new(tenant: Uuid, collection: Uuid) -> Self {
        let schema = schema_name(tenant);
        let c = collection.simple();
        Tables {
            docs: format!("{schema}.docs_{c}"),
            chunks: format!("{schema}.chunks_{c}"),
            terms: format!("{schema}.terms_{c}"),
            chunks_bare: format!("chunks_{c}"),
            schema,
        }
    }

    fn index_name(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.chunks_bare)
    }

    /// Segment `n`'s partition, unqualified.
    pub fn segment_bare(&self, n: i32) -> String {
        format!("{}_s{n}", self.chunks_bare)
    }

    /// Segment `n`'s partition, schema-qualified.
    pub fn segment(&self, n: i32) -> String {
        format!("{}.{}", self.schema, self.segment_bare(n))
    }

    /// The segment number of a partition's unqualified name, if it is one of this collection's.
    pub fn segment_of(&self, relname: &str) -> Option<i32> {
        relname
            .strip_prefix(&self.chunks_bare)?
            .strip_prefix("_s")?
            .parse()
            .ok()
    }

    /// Segment `n`'s ANN index, unqualified (an index lives in its table's schema).
    pub fn vector_index_name(&self, n: i32) -> String {
        format!("{}_embedding_idx", self.segment_bare(n))
    }

    /// The index a reindex or re-embed builds beside segment `n`'s before swapping it in.
    pub fn next_index_name(&self, n: i32) -> String {
        format!("{}_embedding_next", self.segment_bare(n))
    }
}

/// The schema holding a tenant's collection tables (dropped with the tenant).
pub fn schema_name(tenant: Uuid) -> String {
    format!("tenant_{}", tenant.simple())
}

/// Creates the tenant's schema if needed and the collection's tables, with text search in
/// `language` (a validated `regconfig` name) and a GIN index on chunk metadata for filters. The
/// vector index is [`vector_index`]'s.
///
/// Chunks are partitioned by `segment` ([`create_chunks`]). In an HNSW collection the open
/// segment (`collections.open_segment`) takes every write and has no ANN index: it is scanned
/// exactly by every search (the planner merges an ordered scan of each partition). A merge job
/// seals it (a new open segment takes the writes) and builds its HNSW graph in one pass
/// (`CREATE INDEX CONCURRENTLY`): pgvector builds a graph several times faster than it inserts
/// the same rows one by one. A compaction job rebuilds a tier of sealed segments as one, so
/// that a search visits few. Other collections keep every row in their one segment, with its
/// index (IVFFlat inserts are cheap). Every query names the parent table, so a row is found
/// wherever it is.
///
/// No row-level security on these tables, unlike the tables of `public`: PostgreSQL does not
/// use an index for a condition whose operator is not LEAKPROOF (jsonb `@>`, tsvector `@@`) under
/// a row security policy, so with one every filter and every text search read the whole table
/// (measured: `Index Scan using ..._pkey` + `Filter: metadata @> ...` instead of `Bitmap Index
/// Scan on ..._metadata_idx`). Isolation here is structural: the tables live in the tenant's own
/// schema, and the server reaches them only through the collection registry, which row-level
/// security confines to the request's tenant, by names built from that tenant's id.
pub fn create_tables(t: &Tables, dimension: Option<i32>, language: &str) -> String {
    let docs = &t.docs;
    let schema = &t.schema;
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         GRANT USAGE ON SCHEMA {schema} TO onebase_app;
         CREATE TABLE {docs} (
             tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
             id           text NOT NULL,
             text         text NOT NULL,
             metadata     jsonb NOT NULL DEFAULT '{{}}'::jsonb,
             content_hash bytea NOT NULL,
             chunk_count  int NOT NULL,
             bytes        bigint NOT NULL,
             created_at   timestamptz NOT NULL DEFAULT now(),
             updated_at   timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (tenant_id, id)
         );
         GRANT SELECT, INSERT, UPDATE, DELETE ON {docs} TO onebase_app;
         {chunks}
         {stats}",
        chunks = create_chunks(t, dimension, language),
        stats = create_text_stats(t, language),
    )
}

/// The collection's text statistics (migrations/V8): per term, how many chunks hold it; per
/// collection (the row of the empty lexeme), how many chunks there are and their total length.
/// Append-only deltas written by the chunk table's triggers in the writer's transaction, summed
/// by a text search ([`super::search_text`]), compacted by the merge job ([`compact_text_stats`]).
/// Keyed by tenant first, like every tenant table.
pub fn create_text_stats(t: &Tables, language: &str) -> String {
    let terms = &t.terms;
    format!(
        "CREATE TABLE {terms} (
             tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
             lexeme    text NOT NULL,
             chunks    bigint NOT NULL,
             tokens    bigint NOT NULL,
             id        uuid NOT NULL DEFAULT onebase_uuidv7(),
             PRIMARY KEY (tenant_id, lexeme, id)
         );
         GRANT SELECT, INSERT, DELETE ON {terms} TO onebase_app;
         {triggers}",
        triggers = text_stats_triggers(t, language)
    )
}

/// The chunk table's triggers that write the statistics' deltas. Statement triggers of the
/// parent: they fire for writes through it, not for rows a job copies between partitions
/// directly (which the statistics already count). `language` (a validated `regconfig` name) is
/// the text column's: PostgreSQL leaves the generated `tsv` NULL in the transition rows of an
/// insert routed to a partition whose columns are laid out unlike the parent's (a segment
/// created after a re-embed dropped a column), and the trigger computes it then (migrations/V10).
pub fn text_stats_triggers(t: &Tables, language: &str) -> String {
    let (chunks, terms, bare) = (&t.chunks, &t.terms, &t.chunks_bare);
    format!(
        "CREATE TRIGGER {bare}_stats_insert AFTER INSERT ON {chunks} REFERENCING NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION onebase_text_stats('{terms}', '{language}');
         CREATE TRIGGER {bare}_stats_delete AFTER DELETE ON {chunks} REFERENCING OLD TABLE AS old_rows
             FOR EACH STATEMENT EXECUTE FUNCTION onebase_text_stats('{terms}', '{language}');
         CREATE TRIGGER {bare}_stats_update AFTER UPDATE ON {chunks}
             REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION onebase_text_stats('{terms}', '{language}');"
    )
}

/// Sums a collection's statistics deltas into one row per term (and drops terms no chunk holds
/// any more). Deltas committed meanwhile are not visible to the DELETE and stay, so the sums
/// stay exact.
pub fn compact_text_stats(t: &Tables) -> String {
    format!(
        "WITH gone AS (DELETE FROM {terms} WHERE tenant_id = $1 RETURNING lexeme, chunks, tokens) \
         INSERT INTO {terms} (tenant_id, lexeme, chunks, tokens) \
         SELECT $1, lexeme, sum(chunks), sum(tokens) FROM gone GROUP BY lexeme \
         HAVING sum(chunks) <> 0 OR lexeme = ''",
        terms = t.terms
    )
}

/// The partitioned chunk table and its first segment, open (see [`create_tables`]).
pub fn create_chunks(t: &Tables, dimension: Option<i32>, language: &str) -> String {
    let vector = match dimension {
        Some(d) => format!("vector({d})"),
        None => "vector".to_string(),
    };
    let (docs, chunks) = (&t.docs, &t.chunks);
    format!(
        "CREATE TABLE {chunks} (
             tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
             document_id text NOT NULL,
             chunk_index int NOT NULL,
             text        text NOT NULL,
             start_char  int NOT NULL,
             end_char    int NOT NULL,
             -- The document's metadata and times, repeated so that a filtered vector search
             -- reads one table.
             metadata    jsonb NOT NULL,
             created_at  timestamptz NOT NULL,
             updated_at  timestamptz NOT NULL,
             embedding   {vector} NOT NULL,
             tsv         tsvector GENERATED ALWAYS AS (to_tsvector('{language}'::regconfig, text)) STORED,
             -- The segment (partition) holding the row: the open one when written.
             segment     int NOT NULL,
             PRIMARY KEY (tenant_id, document_id, chunk_index, segment),
             FOREIGN KEY (tenant_id, document_id) REFERENCES {docs} (tenant_id, id) ON DELETE CASCADE
         ) PARTITION BY LIST (segment);
         CREATE INDEX {tsv_idx} ON {chunks} USING gin (tsv);
         CREATE INDEX {meta_idx} ON {chunks} USING gin (metadata jsonb_path_ops);
         GRANT SELECT, INSERT, UPDATE, DELETE ON {chunks} TO onebase_app;
         {first}",
        tsv_idx = t.index_name("tsv_idx"),
        meta_idx = t.index_name("metadata_idx"),
        first = create_segment(t, 1),
    )
}

/// Segment `n`'s partition, with the parent's btree and GIN indexes (empty: a new open segment).
pub fn create_segment(t: &Tables, n: i32) -> String {
    format!(
        "CREATE TABLE {seg} PARTITION OF {chunks} FOR VALUES IN ({n});
         GRANT SELECT, INSERT, UPDATE, DELETE ON {seg} TO onebase_app;",
        seg = t.segment(n),
        chunks = t.chunks,
    )
}

/// Segment `n`'s ANN index, or `None` for `index: none` (exact search only).
pub fn vector_index(t: &Tables, n: i32, distance: Distance, index: &IndexSpec) -> Option<String> {
    vector_index_named(t, n, &t.vector_index_name(n), "embedding", distance, index, false)
}

/// An ANN index on segment `n` under `name`, optionally built `CONCURRENTLY` (while writes and
/// searches go on).
pub fn vector_index_named(
    t: &Tables,
    n: i32,
    name: &str,
    column: &str,
    distance: Distance,
    index: &IndexSpec,
    concurrently: bool,
) -> Option<String> {
    let ops = distance.opclass();
    let table = t.segment(n);
    let name = if concurrently {
        format!("CONCURRENTLY {name}")
    } else {
        name.to_string()
    };
    match index {
        IndexSpec::None {} => None,
        IndexSpec::Hnsw { m, ef_construction } => Some(format!(
            "CREATE INDEX {name} ON {table} USING hnsw ({column} {ops}) WITH (m = {m}, ef_construction = {ef_construction})",
            m = m.unwrap_or(IndexSpec::DEFAULT_M),
            ef_construction = ef_construction.unwrap_or(IndexSpec::DEFAULT_EF_CONSTRUCTION),
        )),
        IndexSpec::Ivfflat { lists } => Some(format!(
            "CREATE INDEX {name} ON {table} USING ivfflat ({column} {ops}) WITH (lists = {lists})",
            lists = lists.unwrap_or(IndexSpec::DEFAULT_LISTS),
        )),
    }
}

/// Fixes the vector column's dimension (a bring-your-own collection's first write).
pub fn set_dimension(t: &Tables, dimension: i32) -> String {
    format!(
        "ALTER TABLE {} ALTER COLUMN embedding TYPE vector({dimension})",
        t.chunks
    )
}

pub fn drop_tables(t: &Tables) -> String {
    format!("DROP TABLE IF EXISTS {}, {}, {}", t.chunks, t.terms, t.docs)
}
