//! The text half of a search: the full-text query on a collection's chunks, and the fusion of
//! its hits with the vector query's (reciprocal rank, or weighted scores).

use std::collections::HashMap;

use deadpool_postgres::Transaction;

use super::collections::Loaded;
use super::model::Distance;
use super::search_model::{found, Found, CHUNK_COLUMNS};
use super::search_model::{Fusion, Scores};
use crate::error::ApiError;
use crate::filter::{Filter, SqlParams};

/// A text query, prepared: [`text_statement`] awaits the statement, so that running it sends the
/// query at once (in order, before anything issued after it).
pub(super) struct TextQuery {
    statement: tokio_postgres::Statement,
    params: SqlParams,
}

pub(super) async fn text_statement(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    query: &str,
    filter: Option<&Filter>,
    fetch: u32,
    want_embedding: bool,
) -> Result<TextQuery, ApiError> {
    let mut params = SqlParams::new();
    let lang = params.push(loaded.language().to_string());
    let q = params.push(query.to_string());
    let condition = match filter {
        Some(f) => f.to_sql(&CHUNK_COLUMNS, loaded.language(), &mut params),
        None => "true".into(),
    };
    let embedding = if want_embedding { "c.embedding" } else { "NULL::vector" };
    let sql = format!(
        "SELECT c.document_id, c.chunk_index, c.text, c.metadata, c.start_char, c.end_char, \
           {embedding} AS embedding, ts_rank_cd(c.tsv, tq.query)::float8 AS value \
         FROM {chunks} c, (SELECT websearch_to_tsquery({lang}::text::regconfig, {q}) AS query) tq \
         WHERE c.tsv @@ tq.query AND {condition} \
         ORDER BY value DESC, c.document_id, c.chunk_index LIMIT {fetch}",
        chunks = loaded.tables.chunks
    );
    // Without the vectors the text is fixed per collection and filter shape: prepared once per
    // connection, as the vector query is.
    let statement = if !want_embedding {
        crate::db::pool::prepared(tx, &sql).await?
    } else {
        tx.prepare(&sql).await?
    };
    Ok(TextQuery { statement, params })
}

pub(super) async fn text_search(tx: &Transaction<'_>, query: &TextQuery) -> Result<Vec<Found>, ApiError> {
    let rows = tx.query(&query.statement, &query.params.as_refs()).await?;
    rows.iter().map(found).collect()
}

/// Orders the hits by their final score: the vector score, the text rank, or both fused.
pub(super) fn fuse(
    distance: Distance,
    vector: Option<Vec<Found>>,
    text: Option<Vec<Found>>,
    fusion: Option<&Fusion>,
) -> Vec<(Found, f64, Scores)> {
    let key = |f: &Found| (f.document_id.clone(), f.chunk_index);
    match (vector, text) {
        (Some(v), None) => v
            .into_iter()
            .map(|f| {
                let score = distance.score(f.value);
                let scores = Scores {
                    vector: Some(score),
                    distance: Some(f.value),
                    text: None,
                };
                (f, score, scores)
            })
            .collect(),
        (None, Some(t)) => t
            .into_iter()
            .map(|f| {
                let scores = Scores {
                    vector: None,
                    distance: None,
                    text: Some(f.value),
                };
                let score = f.value;
                (f, score, scores)
            })
            .collect(),
        (Some(v), Some(t)) => {
            let mut merged: HashMap<(String, i32), (Found, Scores, usize, usize)> = HashMap::new();
            for (rank, f) in v.into_iter().enumerate() {
                let scores = Scores {
                    vector: Some(distance.score(f.value)),
                    distance: Some(f.value),
                    text: None,
                };
                merged.insert(key(&f), (f, scores, rank + 1, 0));
            }
            for (rank, f) in t.into_iter().enumerate() {
                let entry = merged.entry(key(&f)).or_insert_with(|| {
                    (
                        f.clone(),
                        Scores {
                            vector: None,
                            distance: None,
                            text: None,
                        },
                        0,
                        0,
                    )
                });
                entry.1.text = Some(f.value);
                entry.3 = rank + 1;
            }
            let best_rank = merged.values().filter_map(|e| e.1.text).fold(0.0_f64, f64::max);
            let mut out: Vec<(Found, f64, Scores)> = merged
                .into_values()
                .map(|(f, scores, vrank, trank)| {
                    let rrf = |k: u32| {
                        let part = |rank: usize| {
                            if rank == 0 {
                                0.0
                            } else {
                                1.0 / (f64::from(k) + rank as f64)
                            }
                        };
                        part(vrank) + part(trank)
                    };
                    let score = match fusion {
                        Some(Fusion::Weighted {
                            vector_weight,
                            text_weight,
                        }) => {
                            let text = if best_rank > 0.0 {
                                scores.text.unwrap_or(0.0) / best_rank
                            } else {
                                0.0
                            };
                            vector_weight * scores.vector.unwrap_or(0.0) + text_weight * text
                        }
                        Some(Fusion::Rrf { k }) => rrf(k.unwrap_or(60)),
                        None => rrf(60),
                    };
                    (f, score, scores)
                })
                .collect();
            out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.document_id.cmp(&b.0.document_id)));
            out
        }
        (None, None) => vec![],
    }
}
