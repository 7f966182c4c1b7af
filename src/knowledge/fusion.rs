//! Hybrid search's fusion of its two halves' hits (weighted normalized scores, or reciprocal
//! rank), for collections and for messages and memories alike.

use std::collections::HashMap;

use super::model::Distance;
use super::search_model::{Found, Fusion, Scores};

/// Candidates each side of a hybrid search brings to the fusion, at least.
pub(crate) const HYBRID_DEPTH: u32 = 60;

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
    let vector = vector.map(|v| {
        v.into_iter()
            .map(|f| (key(&f), distance.score(f.value), f.value, f))
            .collect()
    });
    let text = text.map(|t| t.into_iter().map(|f| (key(&f), f.value, f)).collect());
    fuse_hits(vector, text, fusion)
}

/// One query's hits in their final order, each `T` with its final score and both sides' scores:
/// one side's as they came, or the two fused by `fusion` ([`fuse_lists`]), a hit both sides
/// found once (the vector side's copy). `vector`: key, score (higher better), raw distance, hit;
/// `text`: key, BM25 score, hit; each best first, `None` for a side that did not run.
pub(super) fn fuse_hits<K: Eq + std::hash::Hash + Ord + Clone, T>(
    vector: Option<Vec<(K, f64, f64, T)>>,
    text: Option<Vec<(K, f64, T)>>,
    fusion: Option<&Fusion>,
) -> Vec<(T, f64, Scores)> {
    let scores = |vector: Option<f64>, distance: Option<f64>, text: Option<f64>| Scores { vector, distance, text };
    match (vector, text) {
        (Some(v), None) => v
            .into_iter()
            .map(|(_, score, distance, hit)| (hit, score, scores(Some(score), Some(distance), None)))
            .collect(),
        (None, Some(t)) => t
            .into_iter()
            .map(|(_, score, hit)| (hit, score, scores(None, None, Some(score))))
            .collect(),
        (Some(v), Some(t)) => {
            let mut found: HashMap<K, (T, Option<f64>)> = HashMap::new();
            let mut vector = vec![];
            for (key, score, distance, hit) in v {
                vector.push((key.clone(), score));
                found.insert(key, (hit, Some(distance)));
            }
            let mut text = vec![];
            for (key, score, hit) in t {
                text.push((key.clone(), score));
                found.entry(key).or_insert((hit, None));
            }
            fuse_lists(vector, text, fusion)
                .into_iter()
                .filter_map(|(key, score, vector, text)| {
                    let (hit, distance) = found.remove(&key)?;
                    Some((hit, score, scores(vector, distance, text)))
                })
                .collect()
        }
        (None, None) => vec![],
    }
}

/// Fuses one query's vector hits and text hits (each best first, keyed by `K`, scored on its own
/// scale, higher better) by `fusion` (default [`DEFAULT_WEIGHTS`]): each key once, with its
/// fused score and each side's, best first (ties by key).
fn fuse_lists<K: Eq + std::hash::Hash + Ord + Clone>(
    vector: Vec<(K, f64)>,
    text: Vec<(K, f64)>,
    fusion: Option<&Fusion>,
) -> Vec<(K, f64, Option<f64>, Option<f64>)> {
    // Per key: each side's score and 1-based rank (0: not on that side).
    let mut merged: HashMap<K, (Option<f64>, Option<f64>, usize, usize)> = HashMap::new();
    for (rank, (key, score)) in vector.into_iter().enumerate() {
        merged.entry(key).or_insert((Some(score), None, rank + 1, 0));
    }
    for (rank, (key, score)) in text.into_iter().enumerate() {
        let entry = merged.entry(key).or_insert((None, None, 0, 0));
        if entry.3 == 0 {
            entry.1 = Some(score);
            entry.3 = rank + 1;
        }
    }
    let vector_norm = Normalized::over(merged.values().filter_map(|e| e.0));
    let text_norm = Normalized::over(merged.values().filter_map(|e| e.1));
    let (vector_weight, text_weight) = match fusion {
        Some(Fusion::Weighted {
            vector_weight,
            text_weight,
        }) => (*vector_weight, *text_weight),
        _ => DEFAULT_WEIGHTS,
    };
    let mut out: Vec<(K, f64, Option<f64>, Option<f64>)> = merged
        .into_iter()
        .map(|(key, (vector, text, vrank, trank))| {
            let score = match fusion {
                Some(Fusion::Rrf { k }) => {
                    let k = f64::from(k.unwrap_or(60));
                    let part = |rank: usize| if rank == 0 { 0.0 } else { 1.0 / (k + rank as f64) };
                    part(vrank) + part(trank)
                }
                _ => {
                    vector_weight * vector.map_or(0.0, |s| vector_norm.apply(s))
                        + text_weight * text.map_or(0.0, |s| text_norm.apply(s))
                }
            };
            (key, score, vector, text)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
