//! The text half of a search: BM25 over a collection's chunks (the query's terms OR-ed, weighed
//! by the collection's statistics, which the chunk table's triggers keep exact), and the fusion
//! of its hits with the vector query's (reciprocal rank, or weighted scores).

use std::collections::HashMap;

use deadpool_postgres::Transaction;

use super::collections::Loaded;
use super::model::Distance;
use super::search_model::{found, Found, CHUNK_COLUMNS};
use super::search_model::{Fusion, Scores};
use crate::error::ApiError;
use crate::filter::{Filter, SqlParams};

/// BM25's term-frequency saturation and length normalization (Lucene's and Elasticsearch's
/// defaults).
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// Query terms scored at most (the rarest): a query of thousands of words costs what 64 do.
const MAX_TERMS: usize = 64;
/// Chunks a text search scores at most, about: candidates come from the query's rarest terms, as
/// many as stay under this many chunks together (at least the rarest one). A chunk that holds
/// only the query's common terms would rank below them anyway (their IDF is low), so the bound
/// costs little relevance and keeps a query of common words from reading the whole collection.
/// Scoring costs about 25 µs a candidate (its tsvector read and cut to the query's terms), so
/// this bounds a text search to about an eighth of a second.
const CANDIDATE_CHUNKS: i64 = 5_000;

/// A text query, prepared: [`text_statement`] awaits the statement, so that running it sends the
/// query at once (in order, before anything issued after it). `None`: no term of the query is in
/// the collection, nothing can match.
pub(super) struct TextQuery(Option<(tokio_postgres::Statement, SqlParams)>);

/// What a query asks for, in the `websearch_to_tsquery` syntax users know: words, of which a
/// chunk needs at least one (OR, ranked by BM25); `"quoted phrases"`, which it must hold; and
/// `-words`, which it must not. A quote that never closes runs to the end.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ParsedQuery {
    /// The words to rank by: the plain words and the phrases' words.
    pub terms: String,
    pub phrases: Vec<String>,
    pub excluded: Vec<String>,
}

pub(super) fn parse_query(query: &str) -> ParsedQuery {
    let mut parsed = ParsedQuery::default();
    let mut words = vec![];
    let mut rest = query;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else { break };
        if first == '"' {
            let inner = &rest[1..];
            let (phrase, after) = inner.split_once('"').unwrap_or((inner, ""));
            if !phrase.trim().is_empty() {
                parsed.phrases.push(phrase.trim().to_string());
                words.push(phrase.trim().to_string());
            }
            rest = after;
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len());
        let word = &rest[..end];
        match word.strip_prefix('-') {
            Some(excluded) if !excluded.is_empty() => parsed.excluded.push(excluded.to_string()),
            _ => words.push(word.to_string()),
        }
        rest = &rest[end..];
    }
    parsed.terms = words.join(" ");
    parsed
}

/// A query's terms with their weight: BM25's inverse document frequency in the collection.
struct Weighted {
    lexemes: Vec<String>,
    idf: Vec<f64>,
    /// The rarest terms, whose chunks are the candidates, as a tsquery (`'a' | 'b'`).
    candidates: String,
    avg_length: f64,
}

/// Reads the collection's statistics for the query's terms (stemmed and stop words dropped as
/// the stored text was, by `to_tsvector` in the collection's language) and weighs them.
async fn weigh(tx: &Transaction<'_>, loaded: &Loaded, terms: &str) -> Result<Option<Weighted>, ApiError> {
    let rows = tx
        .query(
            &format!(
                "SELECT q.lexeme, q.count, coalesce(sum(t.chunks), 0)::int8 AS chunks, \
                   coalesce(sum(t.tokens), 0)::int8 AS tokens \
                 FROM (SELECT lexeme, coalesce(cardinality(positions), 1)::int4 AS count \
                       FROM unnest(to_tsvector($1::text::regconfig, $2)) UNION ALL SELECT '', 1) q \
                 LEFT JOIN {terms} t ON t.tenant_id = $3 AND t.lexeme = q.lexeme GROUP BY q.lexeme, q.count",
                terms = loaded.tables.terms
            ),
            &[&loaded.language(), &terms, &loaded.tenant],
        )
        .await?;
    let mut total = (0_i64, 0_i64);
    let mut found: Vec<(String, i64, i32)> = vec![];
    for row in &rows {
        let lexeme: String = row.try_get("lexeme")?;
        let chunks: i64 = row.try_get("chunks")?;
        if lexeme.is_empty() {
            total = (chunks, row.try_get("tokens")?);
        } else if chunks > 0 {
            found.push((lexeme, chunks, row.try_get("count")?));
        }
    }
    let (n, tokens) = total;
    if found.is_empty() || n <= 0 {
        return Ok(None);
    }
    // Rarest first; ties by lexeme, so that the same query always reads the same candidates.
    found.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    found.truncate(MAX_TERMS);
    let mut budget = 0;
    let mut rare = vec![];
    for (lexeme, df, _) in &found {
        if !rare.is_empty() && budget + df > CANDIDATE_CHUNKS {
            break;
        }
        budget += df;
        rare.push(tsquery_lexeme(lexeme));
    }
    // A term the question repeats counts as often as it is written (as BM25 sums over the query's
    // words in Lucene and rank_bm25): a long question names its subject more than once.
    let idf = found
        .iter()
        .map(|(_, df, count)| f64::from(*count) * (1.0 + (n as f64 - *df as f64 + 0.5) / (*df as f64 + 0.5)).ln())
        .collect();
    Ok(Some(Weighted {
        lexemes: found.into_iter().map(|(l, _, _)| l).collect(),
        idf,
        candidates: rare.join(" | "),
        avg_length: (tokens as f64 / n as f64).max(1.0),
    }))
}

/// A lexeme as a tsquery operand: quoted, its quotes doubled and backslashes escaped, so that no
/// character of it is read as tsquery syntax (it is already normalized: no stemming again).
fn tsquery_lexeme(lexeme: &str) -> String {
    format!("'{}'", lexeme.replace('\\', "\\\\").replace('\'', "''"))
}

pub(super) async fn text_statement(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    query: &str,
    filter: Option<&Filter>,
    fetch: u32,
    want_embedding: bool,
) -> Result<TextQuery, ApiError> {
    let parsed = parse_query(query);
    let Some(weighted) = weigh(tx, loaded, &parsed.terms).await? else {
        return Ok(TextQuery(None));
    };
    let mut params = SqlParams::new();
    let tenant = params.push(loaded.tenant);
    let candidates = params.push(weighted.candidates);
    let lexemes = params.push(weighted.lexemes);
    let idf = params.push(weighted.idf);
    let avg_length = params.push(weighted.avg_length);
    let mut conditions = vec![format!("c.tsv @@ {candidates}::text::tsquery")];
    // Bound only when a phrase or an exclusion reads it: a parameter no statement names has no type.
    let lang = if parsed.phrases.is_empty() && parsed.excluded.is_empty() {
        String::new()
    } else {
        params.push(loaded.language().to_string())
    };
    for phrase in parsed.phrases {
        let p = params.push(phrase);
        conditions.push(format!("c.tsv @@ phraseto_tsquery({lang}::text::regconfig, {p})"));
    }
    for word in parsed.excluded {
        let w = params.push(word);
        conditions.push(format!("NOT (c.tsv @@ plainto_tsquery({lang}::text::regconfig, {w}))"));
    }
    if let Some(f) = filter {
        conditions.push(f.to_sql(&CHUNK_COLUMNS, loaded.language(), &mut params));
    }
    let embedding = if want_embedding { "c.embedding" } else { "NULL::vector" };
    // BM25: for each query term a chunk holds, idf * tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)),
    // tf the term's positions in the chunk's tsvector, dl the chunk's distinct terms. The chunk's
    // tsvector is cut to the query's terms before it is unnested (`setweight` marks them, the
    // C-implemented `ts_filter` keeps the marked): unnesting a whole tsvector per candidate cost
    // five times the rest of the query. Only the best `fetch` chunks are then read whole.
    let sql = format!(
        "WITH candidate AS MATERIALIZED ( \
           SELECT c.document_id, c.chunk_index, c.pending, c.tsv FROM {chunks} c WHERE {conditions}), \
         scored AS ( \
           SELECT k.document_id, k.chunk_index, k.pending, \
             sum(({idf}::float8[])[array_position({lexemes}::text[], u.lexeme)] * (f.tf * ({K1} + 1)) \
               / (f.tf + {K1} * (1 - {B} + {B} * length(k.tsv) / {avg_length}::float8)))::float8 AS value \
           FROM candidate k, unnest(ts_filter(setweight(k.tsv, 'A', {lexemes}::text[]), '{{a}}')) u, \
             LATERAL (SELECT coalesce(cardinality(u.positions), 1)::float8 AS tf) f \
           GROUP BY 1, 2, 3 ORDER BY value DESC, 1, 2 LIMIT {fetch}) \
         SELECT c.document_id, c.chunk_index, c.text, c.metadata, c.start_char, c.end_char, \
           {embedding} AS embedding, s.value \
         FROM scored s JOIN {chunks} c ON c.tenant_id = {tenant} AND c.document_id = s.document_id \
           AND c.chunk_index = s.chunk_index AND c.pending = s.pending \
         ORDER BY s.value DESC, c.document_id, c.chunk_index",
        chunks = loaded.tables.chunks,
        conditions = conditions.join(" AND "),
    );
    // Without the vectors the text is fixed per collection and query shape (how many phrases and
    // exclusions, the filter's shape): prepared once per connection, as the vector query is.
    let statement = if !want_embedding {
        crate::db::pool::prepared(tx, &sql).await?
    } else {
        tx.prepare(&sql).await?
    };
    Ok(TextQuery(Some((statement, params))))
}

pub(super) async fn text_search(tx: &Transaction<'_>, query: &TextQuery) -> Result<Vec<Found>, ApiError> {
    let Some((statement, params)) = &query.0 else {
        return Ok(vec![]);
    };
    let rows = tx.query(statement, &params.as_refs()).await?;
    rows.iter().map(found).collect()
}

/// Hybrid's default: weighted, 0.7 on the vector side. Chosen on CISI (`make bench-retrieval`,
/// docs/benchmarks.md): among RRF (k 10 to 60) and weighted sums with min-max or
/// distribution-based normalization, weights 0.5 to 0.9 and 20 to 100 candidates a side, this
/// was the steadiest near the top (within a point across candidate depths); RRF stayed below
/// vector-only.
const DEFAULT_WEIGHTS: (f64, f64) = (0.7, 0.3);

/// One side's scores mapped to [0, 1] by their distribution over this query's candidates:
/// mean - 3 sd to 0, mean + 3 sd to 1, clipped (Qdrant's distribution-based score fusion). A
/// BM25 score and a cosine similarity are on unrelated scales; this puts both on one without
/// letting the single best or worst candidate set it, as min-max would.
struct Normalized {
    low: f64,
    span: f64,
}

impl Normalized {
    fn over(scores: impl Iterator<Item = f64>) -> Normalized {
        let scores: Vec<f64> = scores.filter(|s| s.is_finite()).collect();
        if scores.is_empty() {
            return Normalized { low: 0.0, span: 1.0 };
        }
        let n = scores.len() as f64;
        let mean = scores.iter().sum::<f64>() / n;
        let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
        if sd > 0.0 {
            Normalized {
                low: mean - 3.0 * sd,
                span: 6.0 * sd,
            }
        } else {
            // One candidate, or all equal: each counts fully.
            Normalized {
                low: mean - 1.0,
                span: 1.0,
            }
        }
    }

    fn apply(&self, score: f64) -> f64 {
        ((score - self.low) / self.span).clamp(0.0, 1.0)
    }
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
            let vector_norm = Normalized::over(merged.values().filter_map(|e| e.1.vector));
            let text_norm = Normalized::over(merged.values().filter_map(|e| e.1.text));
            let (vector_weight, text_weight) = match fusion {
                Some(Fusion::Weighted {
                    vector_weight,
                    text_weight,
                }) => (*vector_weight, *text_weight),
                _ => DEFAULT_WEIGHTS,
            };
            let mut out: Vec<(Found, f64, Scores)> = merged
                .into_values()
                .map(|(f, scores, vrank, trank)| {
                    let score = match fusion {
                        Some(Fusion::Rrf { k }) => {
                            let k = f64::from(k.unwrap_or(60));
                            let part = |rank: usize| if rank == 0 { 0.0 } else { 1.0 / (k + rank as f64) };
                            part(vrank) + part(trank)
                        }
                        _ => {
                            vector_weight * scores.vector.map_or(0.0, |s| vector_norm.apply(s))
                                + text_weight * scores.text.map_or(0.0, |s| text_norm.apply(s))
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_splits_into_words_phrases_and_exclusions() {
        let parsed = parse_query(r#"pizza "new york" -chicago  crust "never closed"#);
        assert_eq!(parsed.terms, "pizza new york crust never closed");
        assert_eq!(parsed.phrases, ["new york", "never closed"]);
        assert_eq!(parsed.excluded, ["chicago"]);
        assert_eq!(parse_query("   "), ParsedQuery::default());
        assert_eq!(
            parse_query("- a-b \"\"").terms,
            "- a-b",
            "a lone dash and inner dashes are words"
        );
    }

    #[test]
    fn a_lexeme_cannot_be_read_as_tsquery_syntax() {
        assert_eq!(tsquery_lexeme("o'neil"), "'o''neil'");
        assert_eq!(tsquery_lexeme(r"a\b"), r"'a\\b'");
        assert_eq!(tsquery_lexeme("x & !y"), "'x & !y'");
    }

    #[test]
    fn scores_normalize_by_their_spread_and_clip() {
        let n = Normalized::over([1.0, 2.0, 3.0].into_iter());
        assert!((n.apply(2.0) - 0.5).abs() < 1e-9, "the mean maps to the middle");
        assert!(n.apply(3.0) < 1.0 && n.apply(3.0) > 0.5);
        assert_eq!(n.apply(100.0), 1.0);
        assert_eq!(n.apply(-100.0), 0.0);
        let one = Normalized::over([0.42].into_iter());
        assert_eq!(one.apply(0.42), 1.0, "a lone candidate counts fully");
    }
}
