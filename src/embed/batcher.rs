//! Request coalescing for the inference threads.
//!
//! Callers on the async executor push chunks of texts into a bounded queue and await oneshot
//! replies; dedicated OS threads pull batches out of it. The queue is a plain
//! `Mutex<VecDeque>` + `Condvar` rather than an async channel because the consumers are blocking
//! threads that need "wait until at least one item, then wait a little longer for more" with a
//! deadline, and because admission must be all-or-nothing across the chunks of one request (a
//! request is either fully queued or rejected with `Overloaded`, never half-queued).
//!
//! The mutex is only ever held for queue bookkeeping (never during tokenization or inference), so
//! taking it from an async task is fine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{EmbedError, Embedded};

/// A slice of one caller's request, at most `max_batch` texts, so that a batch can always take at
/// least one whole chunk and a large request is spread over consecutive batches in order.
pub(crate) struct Chunk {
    pub texts: Vec<String>,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Embedded, EmbedError>>,
}

struct State {
    queue: VecDeque<Chunk>,
    /// Texts waiting in `queue` (not yet taken by a worker); this is what `capacity` bounds.
    queued_texts: usize,
    shutdown: bool,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    available: Condvar,
    /// Only one worker gathers a batch at a time. Without this, two idle workers would split a
    /// burst between them into two half-empty batches instead of one full one; inference itself
    /// still runs in parallel because the lock is released before the batch is run.
    gather: Mutex<()>,
    capacity: usize,
    max_batch: usize,
    max_wait: Duration,
    workers: usize,
    /// Exponentially weighted seconds of inference per text (f64 bits), used to tell rejected
    /// callers how long the current backlog will take to drain. 0 until the first batch.
    secs_per_text: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected state is a queue and counters that are never left half-updated across a
    // panic point, so a poisoned lock is still consistent; refusing service forever would be
    // worse than continuing.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    pub fn new(capacity: usize, max_batch: usize, max_wait: Duration, workers: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_texts: 0,
                shutdown: false,
            }),
            available: Condvar::new(),
            gather: Mutex::new(()),
            capacity,
            max_batch,
            max_wait,
            workers,
            secs_per_text: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn queued_texts(&self) -> usize {
        lock(&self.state).queued_texts
    }

    /// Queue all chunks of one request, or none of them.
    pub fn submit(&self, chunks: Vec<Chunk>) -> Result<(), EmbedError> {
        let total: usize = chunks.iter().map(|c| c.texts.len()).sum();
        let mut st = lock(&self.state);
        if st.shutdown {
            return Err(EmbedError::ShuttingDown);
        }
        if st.queued_texts + total > self.capacity {
            let backlog = st.queued_texts + total;
            drop(st);
            return Err(EmbedError::Overloaded {
                retry_after_secs: self.retry_after_secs(backlog),
            });
        }
        st.queued_texts += total;
        st.queue.extend(chunks);
        drop(st);
        // Wake every waiter: the gathering worker (if any) to top up its batch, and idle workers
        // so one of them can start gathering if nobody is.
        self.available.notify_all();
        Ok(())
    }

    /// Block until a batch is ready; `None` once the queue is shut down.
    ///
    /// A batch starts with the oldest chunk and takes following chunks while they fit in
    /// `max_batch`. If it is not full, the worker waits for more until `max_wait` after the first
    /// chunk was *enqueued* (not taken): a backlog that built up while all workers were busy has
    /// already waited, so it is run at once instead of paying `max_wait` again.
    pub fn next_batch(&self) -> Option<Vec<Chunk>> {
        let _gathering = lock(&self.gather);
        let mut st = lock(&self.state);
        let first = loop {
            if st.shutdown {
                return None;
            }
            match pop_live(&mut st) {
                Some(chunk) => break chunk,
                None => st = self.available.wait(st).unwrap_or_else(PoisonError::into_inner),
            }
        };
        let deadline = first.enqueued + self.max_wait;
        let mut taken = first.texts.len();
        let mut batch = vec![first];
        while taken < self.max_batch {
            drop_abandoned_front(&mut st);
            match st.queue.front() {
                Some(next) if taken + next.texts.len() <= self.max_batch => {
                    if let Some(chunk) = st.queue.pop_front() {
                        st.queued_texts -= chunk.texts.len();
                        taken += chunk.texts.len();
                        batch.push(chunk);
                    }
                }
                // The next chunk does not fit: run what we have now rather than reorder chunks,
                // which would break the in-order completion of a split request.
                Some(_) => break,
                None => {
                    let now = Instant::now();
                    if now >= deadline || st.shutdown {
                        break;
                    }
                    st = self
                        .available
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        Some(batch)
    }

    /// Feed the drain-time estimate with one finished batch.
    pub fn record(&self, texts: usize, elapsed: Duration) {
        if texts == 0 {
            return;
        }
        let sample = elapsed.as_secs_f64() / texts as f64;
        let old = f64::from_bits(self.secs_per_text.load(Ordering::Relaxed));
        let new = if old == 0.0 { sample } else { 0.8 * old + 0.2 * sample };
        // A lost update between workers only skews an estimate; no need for a CAS loop.
        self.secs_per_text.store(new.to_bits(), Ordering::Relaxed);
    }

    fn retry_after_secs(&self, backlog: usize) -> u64 {
        let per_text = f64::from_bits(self.secs_per_text.load(Ordering::Relaxed));
        let drain = backlog as f64 * per_text / self.workers.max(1) as f64;
        // Clamp: at least 1 s (Retry-After has whole-second granularity and 0 invites a hot retry
        // loop), at most a minute so a bad estimate cannot park clients for long.
        (drain.ceil() as u64).clamp(1, 60)
    }

    pub fn shutdown(&self) {
        let mut st = lock(&self.state);
        st.shutdown = true;
        // Dropping the queued chunks drops their reply senders, which wakes their callers with
        // `ShuttingDown` instead of leaving them waiting forever.
        st.queue.clear();
        st.queued_texts = 0;
        drop(st);
        self.available.notify_all();
    }
}

/// Discard chunks at the front whose caller gave up (e.g. the HTTP client disconnected and the
/// request future was dropped), so their texts cost no inference.
fn drop_abandoned_front(st: &mut State) {
    while st.queue.front().is_some_and(|c| c.reply.is_closed()) {
        if let Some(chunk) = st.queue.pop_front() {
            st.queued_texts -= chunk.texts.len();
        }
    }
}

/// Pop the oldest chunk whose caller is still waiting.
fn pop_live(st: &mut State) -> Option<Chunk> {
    drop_abandoned_front(st);
    let chunk = st.queue.pop_front()?;
    st.queued_texts -= chunk.texts.len();
    Some(chunk)
}

/// Split a batch into groups of similar token length, to cut the work spent on padding.
///
/// A model call pads every text to the longest one in it, so a 10-token query that shares a call
/// with a 250-token passage costs as much as another passage. Coalescing unrelated requests
/// makes such mixes common. Each extra call has a fixed cost too, so rather than one call per
/// length this picks the split of the length-sorted batch that minimizes
/// `sum(group_len * longest_in_group) + calls * call_overhead_tokens` (exact O(n^2) dynamic
/// programme; n is at most `max_batch`).
///
/// Returns groups of indices into `lengths`; every index appears exactly once.
pub(crate) fn plan_groups(lengths: &[usize], call_overhead_tokens: usize) -> Vec<Vec<usize>> {
    let n = lengths.len();
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| lengths[i]);
    // best[j]: minimal cost of the first j sorted texts; cut[j]: start of the last group.
    let mut best = vec![usize::MAX; n + 1];
    let mut cut = vec![0; n + 1];
    best[0] = 0;
    for j in 1..=n {
        let longest = lengths[order[j - 1]];
        for i in 0..j {
            let cost = best[i]
                .saturating_add((j - i) * longest)
                .saturating_add(call_overhead_tokens);
            if cost < best[j] {
                best[j] = cost;
                cut[j] = i;
            }
        }
    }
    let mut groups = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = cut[j];
        groups.push(order[i..j].to_vec());
        j = i;
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_groups_covers_every_index_once() {
        let lengths = [12, 250, 9, 240, 14, 11, 255, 30];
        let groups = plan_groups(&lengths, 32);
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        // Short and long texts must not share a call here.
        assert!(groups.len() >= 2, "{groups:?}");
        for g in &groups {
            let max = g.iter().map(|&i| lengths[i]).max().unwrap();
            let min = g.iter().map(|&i| lengths[i]).min().unwrap();
            assert!(max < 100 || min > 100, "mixed group {g:?}");
        }
    }

    #[test]
    fn plan_groups_keeps_uniform_batches_whole() {
        let lengths = [20, 21, 19, 22, 20, 20];
        assert_eq!(plan_groups(&lengths, 32).len(), 1);
        assert_eq!(plan_groups(&[], 32), vec![Vec::<usize>::new()]);
        assert_eq!(plan_groups(&[7], 32), vec![vec![0]]);
    }

    type Reply = oneshot::Receiver<Result<Embedded, EmbedError>>;

    fn chunk(n: usize) -> (Chunk, Reply) {
        let (tx, rx) = oneshot::channel();
        let texts = (0..n).map(|i| i.to_string()).collect();
        let chunk = Chunk {
            texts,
            enqueued: Instant::now(),
            reply: tx,
        };
        (chunk, rx)
    }

    fn sizes(batch: &[Chunk]) -> Vec<usize> {
        batch.iter().map(|c| c.texts.len()).collect()
    }

    #[test]
    fn queue_rejects_beyond_capacity_and_batches_in_order() {
        let q = Queue::new(5, 4, Duration::ZERO, 1);
        let ((a, _ra), (b, _rb), (c, _rc)) = (chunk(3), chunk(2), chunk(1));
        q.submit(vec![a]).unwrap();
        q.submit(vec![b]).unwrap();
        assert!(matches!(
            q.submit(vec![c]),
            Err(EmbedError::Overloaded { retry_after_secs: 1 })
        ));
        // 3 + 2 > max_batch 4: the second chunk waits for the next batch.
        assert_eq!(sizes(&q.next_batch().unwrap()), [3]);
        assert_eq!(sizes(&q.next_batch().unwrap()), [2]);
        assert_eq!(q.queued_texts(), 0);
        q.shutdown();
        assert!(q.next_batch().is_none());
    }

    #[test]
    fn abandoned_chunks_are_skipped() {
        let q = Queue::new(16, 4, Duration::ZERO, 1);
        let ((d, rd), (e, re), (f, rf)) = (chunk(1), chunk(4), chunk(1));
        let ((g, _rg), (h, _rh)) = (chunk(3), chunk(2));
        q.submit(vec![d, e, f]).unwrap();
        q.submit(vec![g, h]).unwrap();
        drop((rd, re, rf));
        // Skipping d, e and f must not let the batch exceed max_batch: g alone, h next time.
        assert_eq!(sizes(&q.next_batch().unwrap()), [3]);
        assert_eq!(q.queued_texts(), 2);
        assert_eq!(sizes(&q.next_batch().unwrap()), [2]);
        assert_eq!(q.queued_texts(), 0);
    }
}
