//! The tables of one collection, in its tenant's schema. Every identifier here is built from
//! UUIDs and validated enums, never from a request's strings.

use uuid::Uuid;

use super::model::{Distance, IndexSpec};

/// Names of a collection's schema and tables, quoted and schema-qualified where used in SQL.
#[derive(Debug, Clone)]
pub struct Tables {
    pub schema: String,
    pub docs: String,
    /// The partitioned chunk table; its two partitions follow.
    pub chunks: String,
    /// Chunks in the ANN index.
    pub chunks_main: String,
    /// Chunks written since the last merge: no ANN index, scanned exactly by every search.
    pub chunks_pending: String,
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
            chunks_main: format!("{schema}.chunks_{c}_main"),
            chunks_pending: format!("{schema}.chunks_{c}_pending"),
            terms: format!("{schema}.terms_{c}"),
            chunks_bare: format!("chunks_{c}"),
            schema,
        }
    }

    fn index_name(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.chunks_bare)
    }

    /// The ANN index's name, unqualified (an index lives in its table's schema).
    pub fn vector_index_name(&self) -> String {
        self.index_name("embedding_idx")
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
/// Chunks are partitioned on `pending`: `_main` holds the ANN index; `_pending` takes fresh
/// writes into an HNSW collection (inserting into a large HNSW graph costs about a millisecond a
/// row), is scanned exactly by every search (the planner merges an ordered scan of each
/// partition), and is emptied into `_main` by a merge job in the background. Every query names
/// the parent table, so a row is found wherever it is, and a merge moves rows between partitions
/// in one transaction.
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
        stats = create_text_stats(t),
    )
}

/// The collection's text statistics (migrations/V8): per term, how many chunks hold it; per
/// collection (the row of the empty lexeme), how many chunks there are and their total length.
/// Append-only deltas written by the chunk table's triggers in the writer's transaction, summed
/// by a text search ([`super::search_text`]), compacted by the merge job ([`compact_text_stats`]).
/// Keyed by tenant first, like every tenant table.
pub fn create_text_stats(t: &Tables) -> String {
    let (chunks, terms, bare) = (&t.chunks, &t.terms, &t.chunks_bare);
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
         CREATE TRIGGER {bare}_stats_insert AFTER INSERT ON {chunks} REFERENCING NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION onebase_text_stats('{terms}');
         CREATE TRIGGER {bare}_stats_delete AFTER DELETE ON {chunks} REFERENCING OLD TABLE AS old_rows
             FOR EACH STATEMENT EXECUTE FUNCTION onebase_text_stats('{terms}');
         CREATE TRIGGER {bare}_stats_update AFTER UPDATE ON {chunks}
             REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION onebase_text_stats('{terms}');"
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

/// The partitioned chunk table and its two partitions (see [`create_tables`]).
pub fn create_chunks(t: &Tables, dimension: Option<i32>, language: &str) -> String {
    let vector = match dimension {
        Some(d) => format!("vector({d})"),
        None => "vector".to_string(),
    };
    let (docs, chunks, main, pending) = (&t.docs, &t.chunks, &t.chunks_main, &t.chunks_pending);
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
             -- True until a merge job moves the row into the ANN index's partition.
             pending     boolean NOT NULL DEFAULT false,
             PRIMARY KEY (tenant_id, document_id, chunk_index, pending),
             FOREIGN KEY (tenant_id, document_id) REFERENCES {docs} (tenant_id, id) ON DELETE CASCADE
         ) PARTITION BY LIST (pending);
         CREATE TABLE {main} PARTITION OF {chunks} FOR VALUES IN (false);
         CREATE TABLE {pending} PARTITION OF {chunks} FOR VALUES IN (true);
         CREATE INDEX {tsv_idx} ON {chunks} USING gin (tsv);
         CREATE INDEX {meta_idx} ON {chunks} USING gin (metadata jsonb_path_ops);
         GRANT SELECT, INSERT, UPDATE, DELETE ON {chunks}, {main}, {pending} TO onebase_app;",
        tsv_idx = t.index_name("tsv_idx"),
        meta_idx = t.index_name("metadata_idx"),
    )
}

/// The ANN index for the chunks' embeddings, or `None` for `index: none` (exact search only).
pub fn vector_index(t: &Tables, distance: Distance, index: &IndexSpec) -> Option<String> {
    vector_index_named(t, &t.vector_index_name(), "embedding", distance, index, false)
}

/// The ANN index under `name`, optionally built `CONCURRENTLY` (beside an existing one, while
/// writes go on). It covers the main partition only: pending rows are scanned exactly.
pub fn vector_index_named(
    t: &Tables,
    name: &str,
    column: &str,
    distance: Distance,
    index: &IndexSpec,
    concurrently: bool,
) -> Option<String> {
    let ops = distance.opclass();
    let chunks = &t.chunks_main;
    let name = if concurrently {
        format!("CONCURRENTLY {name}")
    } else {
        name.to_string()
    };
    match index {
        IndexSpec::None {} => None,
        IndexSpec::Hnsw { m, ef_construction } => Some(format!(
            "CREATE INDEX {name} ON {chunks} USING hnsw ({column} {ops}) WITH (m = {m}, ef_construction = {ef_construction})",
            m = m.unwrap_or(IndexSpec::DEFAULT_M),
            ef_construction = ef_construction.unwrap_or(IndexSpec::DEFAULT_EF_CONSTRUCTION),
        )),
        IndexSpec::Ivfflat { lists } => Some(format!(
            "CREATE INDEX {name} ON {chunks} USING ivfflat ({column} {ops}) WITH (lists = {lists})",
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
