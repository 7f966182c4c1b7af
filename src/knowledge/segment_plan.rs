//! How big segments grow and which ones a compaction folds together: pure policy, read by
//! the merge ([`super::segments`]) and the compaction ([`super::compaction`]).

use super::catalog::Segment;

/// Rows of the open segment that make a merge seal it at once. Every search scans the open
/// segment exactly (about 1.6 µs a 384-d row: 8 ms for a full one), so it stays small; each
/// seal makes a segment, which compaction folds into bigger ones. 5,000 against 10,000: more
/// rows/s and half the search time during a sustained ingest (docs/benchmarks.md).
pub const SEAL_ROWS: i64 = 5_000;
/// Sealed segments of one size tier compacted into one. A row is rebuilt once per tier, about
/// log4(rows / SEAL_ROWS) times; a search visits at most `FANOUT - 1` segments per tier.
pub const FANOUT: usize = 4;

/// The sealed, indexed segments to compact into one, if a size tier holds [`FANOUT`] of them:
/// the smallest tier first, its `FANOUT` smallest segments.
///
/// When the collection is `quiet` (no chunk waits for a graph) and no tier is full, the sealed
/// segments but the largest are compacted into one (if there are two or more of them), or the two
/// left into one when the smaller holds a quarter of the larger's rows or more: after a burst of
/// writes, searches visit one or two graphs (each costs about as much as one search of the
/// whole), at the price of rebuilding the recent rows once more, never the largest segment for
/// a small one.
pub fn compaction_plan(segments: &[Segment], open: i32, quiet: bool) -> Option<Vec<i32>> {
    let tier = |rows: i64| {
        let mut t = 0u32;
        let mut bound = SEAL_ROWS.saturating_mul(FANOUT as i64 / 2).max(1);
        while rows >= bound && t < 16 {
            t += 1;
            bound = bound.saturating_mul(FANOUT as i64);
        }
        t
    };
    let mut sealed: Vec<&Segment> = segments.iter().filter(|s| s.n != open && s.indexed).collect();
    sealed.sort_by_key(|s| (tier(s.rows), s.rows, s.n));
    let full = sealed
        .chunk_by(|a, b| tier(a.rows) == tier(b.rows))
        .find(|group| group.len() >= FANOUT)
        .map(|group| group.iter().take(FANOUT).map(|s| s.n).collect());
    if full.is_some() || !quiet {
        return full;
    }
    sealed.sort_by_key(|s| (s.rows, s.n));
    match sealed.as_slice() {
        [small, large] if small.rows.saturating_mul(4) >= large.rows => Some(vec![small.n, large.n]),
        [rest @ .., _largest] if rest.len() >= 2 => Some(rest.iter().map(|s| s.n).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(rows: &[i64]) -> Vec<Segment> {
        let mut out: Vec<Segment> = rows
            .iter()
            .enumerate()
            .map(|(i, &rows)| Segment {
                n: i as i32 + 1,
                rows,
                indexed: true,
            })
            .collect();
        out.push(Segment {
            n: rows.len() as i32 + 1,
            rows: 0,
            indexed: false,
        });
        out
    }

    #[test]
    fn a_full_tier_is_compacted_during_writes_and_the_rest_once_they_pause() {
        let open = 6;
        // Four segments of the first tier (under 2 seals' worth): compacted, writes or not.
        let four = segs(&[5_000, 6_000, 7_000, 5_500, 40_000]);
        assert_eq!(compaction_plan(&four, open, false), Some(vec![1, 4, 2, 3]));
        // Three of a tier and one of another: nothing while writes go on.
        let mixed = segs(&[5_000, 6_000, 7_000, 40_000]);
        assert_eq!(compaction_plan(&mixed, 5, false), None);
        // Once they pause, all but the largest.
        assert_eq!(compaction_plan(&mixed, 5, true), Some(vec![1, 2, 3]));
        // Two left: merged only if the smaller is a quarter of the larger or more.
        assert_eq!(compaction_plan(&segs(&[20_000, 70_000]), 3, true), Some(vec![1, 2]));
        assert_eq!(compaction_plan(&segs(&[5_000, 70_000]), 3, true), None);
        assert_eq!(compaction_plan(&segs(&[70_000]), 2, true), None);
        // A segment whose graph is being built is no source.
        let mut building = segs(&[5_000, 6_000, 7_000, 5_500]);
        building[0].indexed = false;
        assert_eq!(compaction_plan(&building, 5, false), None);
    }
}
