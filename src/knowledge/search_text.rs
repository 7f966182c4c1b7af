//! The text half of a search: BM25 over a collection's chunks (the query's terms OR-ed, weighed
//! by the collection's statistics, which the chunk table's triggers keep exact). The statement
//! and the weighing serve the searches of messages and memories too (`search_scope`); the
//! fusion with the vector half is in `fusion`.

use deadpool_postgres::Transaction;

use super::collections::Loaded;
use super::search_model::{found, Found, TextReason, CHUNK_COLUMNS};
use crate::error::ApiError;
use crate::filter::{Filter, SqlParams};

/// BM25's term-frequency saturation and length normalization (Lucene's and Elasticsearch's
/// defaults).
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// Query terms scored at most (the heaviest: the rarest, or the most repeated): a query of
/// thousands of words costs what 64 do.
const MAX_TERMS: usize = 64;
/// Chunks a text search means to score, about: the candidates are the chunks that hold one of a
/// few sets of the query's heaviest terms ([`clauses`]), chosen so that their expected number
/// stays under this. Scoring costs 10 to 20 µs a candidate (its row read, its tsvector cut to the
/// query's terms), so this bounds the scoring to about 10 ms whatever the query. Chosen by
/// measurement (docs/benchmarks.md): on CISI it loses nothing against scoring every chunk that
/// holds a term; at a million chunks of common words it keeps the median text search under 20 ms.
const CANDIDATE_CHUNKS: f64 = 500.0;
/// Candidates a text search means to score at least, when the query's terms allow: enough for a
/// page of hits, and for the vector side's candidates to meet them in a hybrid search.
const MIN_CANDIDATES: f64 = 200.0;
/// Candidates read at most: the expectation assumes terms occur independently, and words that go
/// together (a name, a set phrase) can be in many more chunks than it says.
const CANDIDATE_LIMIT: i64 = 4_000;
/// Sets of two or three terms the candidates are read by at most: each is one GIN index scan
/// (2 to 5 ms when the terms are each in 2% of a million chunks).
const MAX_CLAUSES: usize = 4;
/// The heaviest terms the sets of two or three are made of.
const CLAUSE_TERMS: usize = 8;

/// A text query, prepared: [`text_statement`] awaits the statement, so that running it sends the
/// query at once (in order, before anything issued after it). An error: nothing can match, and why.
pub(super) struct TextQuery(Result<(tokio_postgres::Statement, SqlParams), TextReason>);

impl TextQuery {
    /// Why it will find nothing, when it is known before it runs.
    pub(super) fn reason(&self) -> Option<TextReason> {
        self.0.as_ref().err().copied()
    }
}

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
pub(super) struct Weighted {
    lexemes: Vec<String>,
    /// Each term's weight: its inverse document frequency times its count in the query.
    weights: Vec<f64>,
    /// The term sets whose chunks are the candidates, each as a tsquery (`'a' & 'b'`).
    clauses: Vec<String>,
    avg_length: f64,
}

/// Reads the collection's statistics for the query's terms (stemmed and stop words dropped as
/// the stored text was, by `to_tsvector` in the collection's language) and weighs them.
async fn weigh(tx: &Transaction<'_>, loaded: &Loaded, terms: &str) -> Result<Result<Weighted, TextReason>, ApiError> {
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
    weights_from(&rows)
}

/// Weighs a query's terms from their statistics: a row per query term (`lexeme`, its `count`
/// in the query, the `chunks` that hold it) and the totals' row (lexeme `''`: every chunk, and
/// their `tokens`).
pub(super) fn weights_from(rows: &[tokio_postgres::Row]) -> Result<Result<Weighted, TextReason>, ApiError> {
    let mut total = (0_i64, 0_i64);
    let mut found: Vec<(String, i64, i32)> = vec![];
    for row in rows {
        let lexeme: String = row.try_get("lexeme")?;
        let chunks: i64 = row.try_get("chunks")?;
        if lexeme.is_empty() {
            total = (chunks, row.try_get("tokens")?);
        } else if chunks > 0 {
            found.push((lexeme, chunks, row.try_get("count")?));
        }
    }
    let (n, tokens) = total;
    // The totals' row is always there; nothing else: the query has no words but stop words.
    if rows.len() <= 1 {
        return Ok(Err(TextReason::NoWords));
    }
    if found.is_empty() || n <= 0 {
        return Ok(Err(TextReason::NoMatch));
    }
    // A term the question repeats counts as often as it is written (as BM25 sums over the query's
    // words in Lucene and rank_bm25): a long question names its subject more than once.
    let mut terms: Vec<(String, i64, f64)> = found
        .into_iter()
        .map(|(lexeme, df, count)| {
            let idf = (1.0 + (n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln();
            (lexeme, df, f64::from(count) * idf)
        })
        .collect();
    // Heaviest first; ties by lexeme, so that the same query always reads the same candidates.
    terms.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    terms.truncate(MAX_TERMS);
    let sets = clauses(&terms.iter().map(|t| (t.1, t.2)).collect::<Vec<_>>(), n);
    // The single terms are one tsquery, one GIN scan (a union of posting lists); each set of two
    // or three is its own scan, which GIN drives by its rarest term.
    let singles: Vec<String> = sets
        .iter()
        .filter(|s| s.len() == 1)
        .map(|s| tsquery_lexeme(&terms[s[0]].0))
        .collect();
    let mut clauses: Vec<String> = sets
        .iter()
        .filter(|s| s.len() > 1)
        .map(|set| {
            set.iter()
                .map(|&i| tsquery_lexeme(&terms[i].0))
                .collect::<Vec<_>>()
                .join(" & ")
        })
        .collect();
    if !singles.is_empty() {
        clauses.insert(0, singles.join(" | "));
    }
    Ok(Ok(Weighted {
        weights: terms.iter().map(|t| t.2).collect(),
        lexemes: terms.into_iter().map(|t| t.0).collect(),
        clauses,
        avg_length: (tokens as f64 / n as f64).max(1.0),
    }))
}

/// The sets of terms whose chunks are a query's candidates; `terms` are the query's terms'
/// chunk counts and weights, heaviest first (indexes into it). A chunk ranks high when it holds
/// the query's heavy terms, and several of them: single terms are taken first, heaviest first,
/// then pairs, then triples of the [`CLAUSE_TERMS`] heaviest, heaviest sets first, while the
/// chunks they are expected to hold (the collection's size times each term's share, as if terms
/// were independent) stay under [`CANDIDATE_CHUNKS`]. A set that holds one already taken adds
/// nothing and is skipped. With rare terms this is the query's terms OR-ed, as exhaustive BM25
/// reads them; in a large collection of common words it reads the chunks that hold several of
/// the heaviest, in a bounded number of index scans.
fn clauses(terms: &[(i64, f64)], n: i64) -> Vec<Vec<usize>> {
    let n = n.max(1) as f64;
    let expected = |set: &[usize]| set.iter().fold(n, |e, &i| e * (terms[i].0 as f64 / n).min(1.0));
    let weight = |set: &[usize]| set.iter().map(|&i| terms[i].1).sum::<f64>();
    let few = terms.len().min(CLAUSE_TERMS);
    let mut sets: Vec<Vec<usize>> = (0..terms.len()).map(|a| vec![a]).collect();
    for a in 0..few {
        for b in a + 1..few {
            sets.push(vec![a, b]);
            for c in b + 1..few {
                sets.push(vec![a, b, c]);
            }
        }
    }
    // By size, then heaviest first, then by position: a stable order.
    sets.sort_by(|x, y| {
        x.len()
            .cmp(&y.len())
            .then_with(|| weight(y).total_cmp(&weight(x)))
            .then_with(|| x.cmp(y))
    });
    let mut taken: Vec<Vec<usize>> = vec![];
    let mut total = 0.0;
    let scans = |taken: &[Vec<usize>]| taken.iter().filter(|t| t.len() > 1).count();
    let open = |taken: &[Vec<usize>], set: &[usize]| {
        !taken.iter().any(|t| t.iter().all(|i| set.contains(i))) && (set.len() == 1 || scans(taken) < MAX_CLAUSES)
    };
    for set in &sets {
        let e = expected(set);
        if open(&taken, set) && total + e <= CANDIDATE_CHUNKS {
            total += e;
            taken.push(set.clone());
        }
    }
    // Too few to fill a page (every term common, or a rare one just over the budget): the
    // heaviest set expected in at most as many chunks again, in place of the sets it holds (which
    // add nothing beside it), until enough.
    let without = |taken: &[Vec<usize>], set: &[usize]| -> Vec<Vec<usize>> {
        taken
            .iter()
            .filter(|t| !set.iter().all(|i| t.contains(i)))
            .cloned()
            .collect()
    };
    while total < MIN_CANDIDATES {
        let Some(next) = sets
            .iter()
            .filter(|set| !taken.contains(set) && open(&without(&taken, set), set))
            .filter(|set| expected(set) <= CANDIDATE_CHUNKS * 2.0 - total)
            .max_by(|x, y| weight(x).total_cmp(&weight(y)).then_with(|| y.cmp(x)))
        else {
            break;
        };
        taken = without(&taken, next);
        taken.push(next.clone());
        total = taken.iter().map(|t| expected(t)).sum();
    }
    // Every set expected in more chunks than the budget: the one in the fewest (the hard limit on
    // candidates holds).
    if taken.is_empty() {
        taken.extend(sets.iter().min_by(|x, y| expected(x).total_cmp(&expected(y))).cloned());
    }
    taken
}

/// A lexeme as a tsquery operand: quoted, its quotes doubled and backslashes escaped, so that no
/// character of it is read as tsquery syntax (it is already normalized: no stemming again).
fn tsquery_lexeme(lexeme: &str) -> String {
    format!("'{}'", lexeme.replace('\\', "\\\\").replace('\'', "''"))
}

/// A weighed query bound as parameters: the placeholders its ranking reads, and the condition
/// that picks its candidates.
pub(super) struct Bound {
    lexemes: String,
    weights: String,
    avg_length: String,
    /// Each term set its own condition, so that each is its own GIN scan (OR-ed bitmaps): one
    /// tsquery of them all would make GIN test every row that holds any of the terms.
    pub(super) candidates: String,
}

pub(super) fn bind(weighted: Weighted, alias: &str, params: &mut SqlParams) -> Bound {
    let lexemes = params.push(weighted.lexemes);
    let weights = params.push(weighted.weights);
    let avg_length = params.push(weighted.avg_length);
    let any: Vec<String> = weighted
        .clauses
        .into_iter()
        .map(|clause| format!("{alias}.tsv @@ {}::text::tsquery", params.push(clause)))
        .collect();
    Bound {
        lexemes,
        weights,
        avg_length,
        candidates: format!("({})", any.join(" OR ")),
    }
}

/// What a query's phrases (held) and exclusions (not held) ask of a row's `tsv`, parsed in
/// `language` as the row's words were.
pub(super) fn phrase_conditions(
    parsed: ParsedQuery,
    alias: &str,
    language: &str,
    params: &mut SqlParams,
) -> Vec<String> {
    // Bound only when a phrase or an exclusion reads it: a parameter no statement names has no type.
    if parsed.phrases.is_empty() && parsed.excluded.is_empty() {
        return vec![];
    }
    let lang = params.push(language.to_string());
    let mut conditions = vec![];
    for phrase in parsed.phrases {
        let p = params.push(phrase);
        conditions.push(format!("{alias}.tsv @@ phraseto_tsquery({lang}::text::regconfig, {p})"));
    }
    for word in parsed.excluded {
        let w = params.push(word);
        conditions.push(format!(
            "NOT ({alias}.tsv @@ plainto_tsquery({lang}::text::regconfig, {w}))"
        ));
    }
    conditions
}

/// BM25 over the rows of `from` (aliased `alias`, words in `alias.tsv`) that meet `conditions`:
/// the CTEs `candidate` (at most [`CANDIDATE_LIMIT`]) and `scored` (the best `fetch`, their
/// `keys` and `value`, best first). The one ranking every text search runs.
///
/// For each query term a row holds: w * tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)), w the
/// term's idf times its count in the query, tf the term's positions in the row's tsvector, dl
/// the row's distinct terms. The row's tsvector is cut to the query's terms before it is
/// unnested (`setweight` marks them, the C-implemented `ts_filter` keeps the marked): unnesting
/// a whole tsvector per candidate cost five times the rest of the query.
pub(super) fn bm25_ctes(
    from: &str,
    alias: &str,
    keys: &[&str],
    conditions: &[String],
    bound: &Bound,
    fetch: &str,
) -> String {
    let Bound {
        lexemes,
        weights,
        avg_length,
        ..
    } = bound;
    let of = |prefix: &str| {
        keys.iter()
            .map(|key| format!("{prefix}.{key}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let positions = (1..=keys.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    format!(
        "candidate AS MATERIALIZED ( \
           SELECT {row_keys}, \
             ts_filter(setweight({alias}.tsv, 'A', {lexemes}::text[]), '{{a}}') AS hits, \
             ({K1}::float8 * (1 - {B}::float8 + {B}::float8 * length({alias}.tsv) / {avg_length}::float8)) AS norm \
           FROM {from} WHERE {conditions} LIMIT {CANDIDATE_LIMIT}), \
         scored AS ( \
           SELECT {candidate_keys}, \
             sum(({weights}::float8[])[array_position({lexemes}::text[], u.lexeme)] * f.tf * ({K1}::float8 + 1) \
               / (f.tf + k.norm))::float8 AS value \
           FROM candidate k, unnest(k.hits) u, \
             LATERAL (SELECT coalesce(cardinality(u.positions), 1)::float8 AS tf) f \
           GROUP BY {positions} ORDER BY value DESC, {positions} LIMIT {fetch})",
        row_keys = of(alias),
        candidate_keys = of("k"),
        conditions = conditions.join(" AND "),
    )
}

pub(super) async fn text_statement(
    tx: &Transaction<'_>,
    loaded: &Loaded,
    query: &str,
    filter: Option<&Filter>,
    fetch: u32,
    want_embedding: bool,
) -> Result<TextQuery, ApiError> {
    let mut parsed = parse_query(query);
    let weighted = match weigh(tx, loaded, &std::mem::take(&mut parsed.terms)).await? {
        Ok(weighted) => weighted,
        Err(reason) => return Ok(TextQuery(Err(reason))),
    };
    let mut params = SqlParams::new();
    let tenant = params.push(loaded.tenant);
    let bound = bind(weighted, "c", &mut params);
    let mut conditions = vec![bound.candidates.clone()];
    conditions.extend(phrase_conditions(parsed, "c", loaded.language(), &mut params));
    if let Some(f) = filter {
        conditions.push(f.to_sql(&CHUNK_COLUMNS, loaded.language(), &mut params));
    }
    let embedding = if want_embedding { "c.embedding" } else { "NULL::vector" };
    // Only the best `fetch` chunks are read whole.
    let sql = format!(
        "WITH {ctes} \
         SELECT c.document_id, c.chunk_index, c.text, c.metadata, c.start_char, c.end_char, \
           {embedding} AS embedding, s.value \
         FROM scored s JOIN {chunks} c ON c.tenant_id = {tenant} AND c.document_id = s.document_id \
           AND c.chunk_index = s.chunk_index AND c.segment = s.segment \
         ORDER BY s.value DESC, c.document_id, c.chunk_index",
        ctes = bm25_ctes(
            &format!("{} c", loaded.tables.chunks),
            "c",
            &["document_id", "chunk_index", "segment"],
            &conditions,
            &bound,
            &fetch.to_string(),
        ),
        chunks = loaded.tables.chunks,
    );
    // Without the vectors the text is fixed per collection and query shape (how many phrases and
    // exclusions, the filter's shape): prepared once per connection, as the vector query is.
    let statement = if !want_embedding {
        crate::db::pool::prepared(tx, &sql).await?
    } else {
        tx.prepare(&sql).await?
    };
    Ok(TextQuery(Ok((statement, params))))
}

pub(super) async fn text_search(tx: &Transaction<'_>, query: &TextQuery) -> Result<Vec<Found>, ApiError> {
    let Ok((statement, params)) = &query.0 else {
        return Ok(vec![]);
    };
    // The generic plan: the custom one PostgreSQL would otherwise plan anew on every call (the
    // terms' estimates from their values make it look cheaper) is the same plan, and planning it
    // cost 2 ms of a 20 ms search at a million chunks. Sent with the query, in one write.
    let generic = tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan");
    let refs = params.as_refs();
    let (_, rows) = tokio::try_join!(generic, tx.query(statement, &refs))?;
    rows.iter().map(found).collect()
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
    fn rare_terms_are_read_alone_and_together() {
        // Three rare terms in a million chunks: all three, each alone (their chunks fit).
        let rare = [(40, 9.0), (80, 8.0), (120, 7.5)];
        assert_eq!(clauses(&rare, 1_000_000), [vec![0], vec![1], vec![2]]);
        // In a small collection every term fits too: exhaustive, as BM25 over every chunk.
        let small = [(30, 3.0), (50, 2.0), (60, 1.5), (90, 1.0)];
        assert_eq!(clauses(&small, 2_000).len(), 4);
    }

    #[test]
    fn common_terms_are_read_in_sets_within_the_budget() {
        let n = 1_000_000;
        // Each term in 2% to 27% of the chunks: no term alone fits, pairs and triples do.
        let common = [
            (22_000, 3.8),
            (26_000, 3.6),
            (29_000, 3.5),
            (53_000, 2.9),
            (110_000, 2.1),
            (270_000, 1.3),
        ];
        let sets = clauses(&common, n);
        assert!(!sets.is_empty() && sets.len() <= MAX_CLAUSES, "{sets:?}");
        assert!(sets.iter().all(|s| s.len() > 1), "no common term alone: {sets:?}");
        let expected: f64 = sets
            .iter()
            .map(|s| s.iter().fold(n as f64, |e, &i| e * common[i].0 as f64 / n as f64))
            .sum();
        assert!(
            (MIN_CANDIDATES..=2.0 * CANDIDATE_CHUNKS).contains(&expected),
            "{expected}"
        );
        assert!(sets[0].contains(&0), "the heaviest term leads: {sets:?}");
        for (i, a) in sets.iter().enumerate() {
            for b in &sets[i + 1..] {
                assert!(
                    !a.iter().all(|t| b.contains(t)) && !b.iter().all(|t| a.contains(t)),
                    "{sets:?}"
                );
            }
        }
    }

    #[test]
    fn a_query_of_the_commonest_terms_still_reads_one_set() {
        let everywhere = [(900_000, 0.1), (950_000, 0.05)];
        assert_eq!(clauses(&everywhere, 1_000_000), [vec![0, 1]]);
        assert_eq!(clauses(&[(5_000, 1.0)], 5_000), [vec![0]]);
    }
}
